"""The downloader against misbehaving servers on 127.0.0.x: every URL ends in the manifest with the right
reason, nothing partial is left, per-host limits hold at the server, and a kill -9 resumes cleanly."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from fault_server import FaultServer, Route, bomb_png, drip, fail_then, free_port_nobody_listens, hang, image_bytes
from ltkit.artifacts.manifest import ManifestBusy, ManifestWriter, hit_key, manifest_files, merge_manifests, read_manifest, resume_state
from ltkit.crawl.download import DownloadSettings, Downloader, Job
from ltkit.crawl.policy import Failure, address_allowed, retry_after, robots_forbid
from ltkit.crawl.retrieve import read_url_list, run_crawl
from ltkit.crawl.store import store_image

# Timeouts far above what a local answer takes even on a loaded machine: only the hanging and dripping routes
# of test_every_fault_ends_with_its_reason may time out (that test sets its own, shorter ones).
FAST = dict(allow_loopback=True, connect_timeout=10.0, read_timeout=10.0, total_timeout=20.0, retries=1, backoff=0.05,
            host_interval=0.0, max_bytes=100_000, max_pixels=10_000_000)


def jobs_for(urls, aux_id=0):
    return [Job(u, aux_id, {"aux_name": f"class {aux_id}"}) for u in urls]


def crawl(out, urls_by_class, **settings):
    """Run the downloader over {aux_id: [urls]} into `out` (resuming); returns rows by URL."""
    batches = [jobs_for(urls, a) for a, urls in urls_by_class.items()]
    retry_failed = settings.pop("retry_failed", False)
    s = DownloadSettings(**{**FAST, **settings})
    Downloader(out, s).run(batches, out / "manifest.jsonl", resume_state(out, retry_failed), progress=False)
    return {r["url"]: r for r in read_manifest(out)}


def assert_clean_folder(out, rows):
    """Files on disk are exactly the ok rows' paths: no partial, temporary or orphan file."""
    on_disk = {str(p.relative_to(out)) for p in (out / "images").rglob("*") if p.is_file()} if (out / "images").exists() else set()
    assert on_disk == {r["path"] for r in rows if r["status"] == "ok"}
    for rel in on_disk:
        with Image.open(out / rel) as im:
            assert im.format == "JPEG" and im.mode == "RGB"


def test_every_fault_ends_with_its_reason(tmp_path):
    jpg = image_bytes("JPEG", seed=1)
    big = b"\xff" * 150_000  # over max_bytes (100 KB)
    with FaultServer("127.0.0.2") as a, FaultServer("127.0.0.3") as b:
        b.routes["/other.jpg"] = Route(image_bytes(seed=9))
        expect = {  # path -> (status, reason)
            "/good.jpg": ("ok", ""), "/good.png": ("ok", ""), "/good.webp": ("ok", ""),
            "/rgba.png": ("ok", ""),
            "/404": ("failed", "http_404"), "/500": ("failed", "http_500"), "/429": ("ok", ""),
            "/hang": ("failed", "timeout"), "/drip": ("failed", "timeout"),
            "/truncated.jpg": ("failed", "truncated_image"), "/html.jpg": ("failed", "not_an_image"),
            "/bomb.png": ("failed", "decompression_bomb"),
            "/big": ("failed", "too_large"), "/big-no-length": ("failed", "too_large"),
            "/to-private": ("refused", "disallowed_address"), "/to-file": ("refused", "bad_scheme"),
            "/to-ftp": ("refused", "bad_scheme"), "/loop1": ("failed", "redirect_loop"),
            "/chain/0": ("failed", "too_many_redirects"), "/noai": ("refused", "x_robots_tag"),
            "/other-bot-noai": ("ok", ""), "/copy.jpg": ("duplicate", None), "/to-b": ("ok", ""),
        }
        rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
        import io
        buf = io.BytesIO()
        rgba.save(buf, "PNG")
        a.routes.update({
            "/good.jpg": Route(jpg), "/copy.jpg": Route(jpg),
            "/good.png": Route(image_bytes("PNG", seed=2), ctype="image/png"),
            "/good.webp": Route(image_bytes("WEBP", seed=3), ctype="image/webp"),
            "/rgba.png": Route(buf.getvalue(), ctype="image/png"),
            "/404": Route(b"gone", status=404), "/500": Route(b"oops", status=500),
            "/429": Route(handler=fail_then(Route(status=429, headers={"Retry-After": "1"}), Route(image_bytes(seed=4)))),
            "/hang": Route(handler=hang), "/drip": Route(handler=drip),
            "/truncated.jpg": Route(image_bytes("JPEG", size=64, seed=5)[:-100]),
            "/html.jpg": Route(b"<!doctype html><html><body>not an image</body></html>"),
            "/bomb.png": Route(bomb_png(6000), ctype="image/png"),
            "/big": Route(big), "/big-no-length": Route(big, length=False),
            "/to-private": Route(status=302, headers={"Location": "http://10.0.0.1/x.jpg"}),
            "/to-file": Route(status=302, headers={"Location": "file:///etc/passwd"}),
            "/to-ftp": Route(status=301, headers={"Location": "ftp://127.0.0.2/x.jpg"}),
            "/loop1": Route(status=302, headers={"Location": "/loop2"}),
            "/loop2": Route(status=302, headers={"Location": "/loop1"}),
            **{f"/chain/{i}": Route(status=307, headers={"Location": f"/chain/{i + 1}"}) for i in range(10)},
            "/noai": Route(image_bytes(seed=6), headers={"X-Robots-Tag": "noindex, noai"}),
            "/other-bot-noai": Route(image_bytes(seed=8), headers={"X-Robots-Tag": "otherbot: noai"}),
            "/to-b": Route(status=301, headers={"Location": b.url("/other.jpg")}),
        })
        refused = f"http://127.0.0.9:{free_port_nobody_listens()}/x.jpg"
        urls = [a.url(p) for p in expect] + [refused]
        # /hang ends at the read timeout, /drip at the total one; both well above a good answer's time under load
        rows = crawl(tmp_path, {0: urls}, read_timeout=3.0, total_timeout=5.0)
        assert a.count("/500") == 2 and a.count("/429") == 2  # retried once each
        assert a.count("/chain/5") == 1 and a.count("/chain/6") == 0  # max_redirects=5: 6 hops at most
    assert set(rows) == set(urls) and all(r["key"] == hit_key(0, u) for u, r in rows.items())
    for path, (status, reason) in expect.items():
        r = rows[a.url(path)]
        assert r["status"] == status, (path, r)
        if reason is not None:
            assert r["reason"] == reason, (path, r)
    assert (rows[refused]["reason"], rows[refused]["attempts"]) == ("connection_error", 2)
    assert rows[a.url("/copy.jpg")]["reason"] == "same_image_as:" + rows[a.url("/good.jpg")]["key"]
    assert rows[a.url("/to-b")]["final_url"] == b.url("/other.jpg")
    with Image.open(tmp_path / rows[a.url("/rgba.png")]["path"]) as im:
        assert im.getpixel((3, 3)) == (255, 255, 255)  # transparent pixels on white
    assert_clean_folder(tmp_path, rows.values())
    json.dumps(list(rows.values()))  # the manifest is plain JSON


def test_forbidden_addresses_are_refused_before_any_connection(tmp_path):
    with FaultServer("127.0.0.2", {"/x.jpg": Route(image_bytes())}) as a:
        port = a.server_address[1]
        urls = [a.url("/x.jpg"), f"http://localhost:{port}/x.jpg", "http://evil.test/x.jpg", "http://[::1]/x.jpg",
                "http://169.254.169.254/latest/meta-data", "http://224.0.0.1/x.jpg", "javascript:alert(1)"]
        rows = crawl(tmp_path, {0: urls}, allow_loopback=False, resolve={"evil.test": "10.0.0.7:80"})
        assert a.requests == []
    assert {u: (rows[u]["status"], rows[u]["reason"]) for u in urls[:-1]} == {
        u: ("refused", "disallowed_address") for u in urls[:-1]}
    assert rows[urls[-1]]["reason"] == "bad_scheme"


def test_broken_urls_get_a_row_too(tmp_path):
    urls = ["http://[bad", "http://", "http:///x.jpg"]
    rows = crawl(tmp_path, {0: urls})
    assert [(rows[u]["status"], rows[u]["reason"]) for u in urls] == [("failed", "bad_url")] * 3


def test_store_resizes_down_only_and_names_files_by_content(tmp_path):
    big, small = image_bytes("PNG", size=48, seed=1), image_bytes("PNG", size=12, seed=2)
    a = store_image(big, tmp_path, 3, max_pixels=10_000, resize=32)
    b = store_image(small, tmp_path, 3, max_pixels=10_000, resize=32)
    assert (a.width, a.height, b.width, b.height) == (32, 32, 12, 12)
    assert a.path == f"images/00003/{a.sha256}.jpg" and hashlib.sha256((tmp_path / a.path).read_bytes()).hexdigest() == a.sha256
    with pytest.raises(Failure, match="decompression_bomb"):
        store_image(big, tmp_path, 3, max_pixels=48 * 48 - 1)


def test_address_policy():
    assert address_allowed("93.184.216.34") and address_allowed("2606:4700::1111")
    for ip in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "100.64.0.1",
               "fe80::1", "fc00::1", "ff02::1", "::ffff:192.168.0.1"):
        assert not address_allowed(ip, allow_loopback=True), ip
    assert not address_allowed("127.0.0.5") and address_allowed("127.0.0.5", allow_loopback=True)
    assert not address_allowed("::ffff:127.0.0.1") and address_allowed("::1", allow_loopback=True)
    # IPv6 that carries a private IPv4 (NAT64, 6to4, IPv4-compatible), local-use NAT64, site-local
    for ip in ("64:ff9b::a00:1", "2002:c0a8:1::1", "::10.0.0.1", "64:ff9b:1::5db8:d822", "fec0::1", "::"):
        assert not address_allowed(ip, allow_loopback=True), ip
    assert address_allowed("64:ff9b::5db8:d822") and address_allowed("2002:5db8:d822::1")
    assert not address_allowed("::127.0.0.1") and address_allowed("::127.0.0.1", allow_loopback=True)


def test_header_parsing():
    assert robots_forbid(["noai"], ("noai", "noimageai")) and robots_forbid(["noindex, NoImageAI"], ("noai", "noimageai"))
    assert robots_forbid(["ltkit: noai"], ("noai",)) and not robots_forbid(["otherbot: noai"], ("noai",))
    assert not robots_forbid(["noindex", "nofollow"], ("noai", "noimageai"))
    assert retry_after("7") == 7.0 and retry_after(None) is None and retry_after("soon") is None
    assert 55 < retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now=1445412480.0) < 65


@pytest.fixture
def pacer_starts(monkeypatch):
    """{pacer: [monotonic time of each start it granted]}, recorded in the client where the start is claimed.

    Spacing measured at the test servers mixes in their threads' scheduling on a busy machine (a
    request received 0.07 s late makes the next gap look like 0); the client's claims are what the
    limits govern, and every request passes one before it is sent.
    """
    from ltkit.crawl import download

    starts: dict = {}
    wait, claim = download._Pacer.wait, download._Pacer.claim

    async def recorded_wait(self):
        await wait(self)
        starts.setdefault(self, []).append(time.monotonic())

    def recorded_claim(self):
        granted = claim(self)
        if granted:
            starts.setdefault(self, []).append(time.monotonic())
        return granted

    monkeypatch.setattr(download._Pacer, "wait", recorded_wait)
    monkeypatch.setattr(download._Pacer, "claim", recorded_claim)
    return starts


def test_per_host_limits_hold(tmp_path, pacer_starts):
    with FaultServer("127.0.0.2") as a, FaultServer("127.0.0.3") as b:
        urls = {}
        for i, srv in enumerate((a, b)):
            for j in range(12):
                srv.routes[f"/{j}.jpg"] = Route(image_bytes(seed=100 * i + j), delay=0.2)
            urls[i] = [srv.url(f"/{j}.jpg") for j in range(12)]
        rows = crawl(tmp_path, urls, per_host=2, host_interval=0.08, concurrency=64)
        for srv in (a, b):
            assert srv.max_connections == 2  # the limit, reached but never exceeded, counted at the server
        served = {srv: sorted(t for _, t, _ in srv.requests) for srv in (a, b)}
    assert sum(r["status"] == "ok" for r in rows.values()) == 24
    hosts = [times for pacer, times in pacer_starts.items() if pacer.interval == 0.08]
    assert sorted(len(t) for t in hosts) == [12, 12]  # one pacer per host, every request through it
    for times in hosts:
        assert np.diff(times).min() >= 0.08 - 1e-3, np.diff(times)
    assert served[a][0] < served[b][-1] and served[b][0] < served[a][-1]  # side by side, not one after the other


def test_global_rate_limit_spaces_requests_across_hosts(tmp_path, pacer_starts):
    with FaultServer("127.0.0.2") as a, FaultServer("127.0.0.3") as b:
        for srv in (a, b):
            for j in range(6):
                srv.routes[f"/{j}.jpg"] = Route(image_bytes(seed=j + 10 * (srv is b)))
        crawl(tmp_path, {0: [a.url(f"/{j}.jpg") for j in range(6)], 1: [b.url(f"/{j}.jpg") for j in range(6)]},
              rate_limit=25.0, per_host=4, host_interval=0.0)
        assert len(a.requests) == len(b.requests) == 6
    (times,) = [t for pacer, t in pacer_starts.items() if pacer.interval == 1 / 25]
    assert len(times) == 12 and np.diff(times).min() >= 1 / 25 - 1e-3, np.diff(times)


def test_a_host_told_to_wait_leaves_the_global_slots_to_the_others(tmp_path):
    """While one host's Retry-After runs, its queued URLs hold no global slot: another host goes on."""
    with FaultServer("127.0.0.2") as a, FaultServer("127.0.0.3") as b:
        a.routes["/0.jpg"] = Route(handler=fail_then(Route(status=429, headers={"Retry-After": "3"}),
                                                     Route(image_bytes(seed=0))))
        for j in range(1, 4):  # the other worker of host a goes on to these and must wait out the 3 s
            a.routes[f"/{j}.jpg"] = Route(image_bytes(seed=j))
        for j in range(4):
            b.routes[f"/{j}.jpg"] = Route(image_bytes(seed=10 + j), delay=0.05)
        rows = crawl(tmp_path, {0: [a.url(f"/{j}.jpg") for j in range(4)], 1: [b.url(f"/{j}.jpg") for j in range(4)]},
                     concurrency=1, per_host=2)
        told = min(t for p, t, _ in a.requests if p == "/0.jpg")
        asked_again = min(t for _, t, _ in a.requests if t > told)  # 3 s later: the Retry-After
        b_done = max(t1 for _, _, t1 in b.requests)
    assert all(r["status"] == "ok" for r in rows.values())
    assert b_done < asked_again  # host b was done before host a was asked anything again


def test_resume_fetches_nothing_twice_and_retry_failed_retries(tmp_path):
    with FaultServer("127.0.0.2") as a:
        for j in range(6):
            a.routes[f"/{j}.jpg"] = Route(image_bytes(seed=j))
        a.routes["/flaky.jpg"] = Route(b"", status=503)
        urls = [a.url(f"/{j}.jpg") for j in range(6)] + [a.url("/flaky.jpg")]
        first = crawl(tmp_path, {0: urls}, retries=0)
        assert first[a.url("/flaky.jpg")]["reason"] == "http_503"
        n = len(a.requests)
        again = crawl(tmp_path, {0: urls})
        assert len(a.requests) == n and again == first  # nothing fetched, nothing written
        a.routes["/flaky.jpg"] = Route(image_bytes(seed=99))
        os.remove(tmp_path / first[a.url("/0.jpg")]["path"])  # a deleted image is fetched again
        final = crawl(tmp_path, {0: urls}, retry_failed=True)
        assert sorted(p for p, _, _ in a.requests[n:]) == ["/0.jpg", "/flaky.jpg"]
    assert all(r["status"] == "ok" for r in final.values())
    assert_clean_folder(tmp_path, final.values())


def test_shards_and_merge_give_the_unsharded_result(tmp_path):
    with FaultServer("127.0.0.2") as a:
        for j in range(12):
            a.routes[f"/{j}.jpg"] = Route(image_bytes(seed=10 * (j % 4) + (j // 4) % 2))  # one duplicate per class
        by_class = {c: [a.url(f"/{j}.jpg") for j in range(12) if j % 4 == c] for c in range(4)}
        s = DownloadSettings(**FAST)
        whole = run_crawl(tmp_path / "whole", [jobs_for(u, c) for c, u in by_class.items()], list(by_class), s,
                          progress=False)
        for i in range(2):
            ids = [c for c in by_class if c % 2 == i]
            run_crawl(tmp_path / "sharded", [jobs_for(by_class[c], c) for c in ids], ids, s, shard=(i, 2),
                      progress=False)
    with ManifestWriter(tmp_path / "sharded" / "manifest.shard-1-of-2.jsonl"):  # shard 1 still crawling
        with pytest.raises(ManifestBusy, match="shard-1-of-2"):
            merge_manifests(tmp_path / "sharded")
    assert [p.name for p in manifest_files(tmp_path / "sharded")] == [
        "manifest.shard-0-of-2.jsonl", "manifest.shard-1-of-2.jsonl"]
    merged = merge_manifests(tmp_path / "sharded")
    assert merged["shards_merged"] == 2 and merged["missing_shards"] == [] and merged["rows"] == 12
    assert [p.name for p in manifest_files(tmp_path / "sharded")] == ["manifest.jsonl"]
    key = lambda rows: sorted((r["aux_id"], r["sha256"], r["status"] == "ok") for r in rows)  # noqa: E731
    assert key(read_manifest(tmp_path / "sharded")) == key(read_manifest(tmp_path / "whole"))
    assert whole.status == {"ok": 8, "duplicate": 4}


def test_manifest_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"key": "a", "status": "ok", "finished": 1}) + "\n" + '{"key": "b", "sta')
    assert [r["key"] for r in read_manifest(tmp_path)] == ["a"]
    with ManifestWriter(path) as w:
        w.write({"key": "c", "status": "failed", "finished": 2})
        with pytest.raises(RuntimeError, match="another crawl"):
            ManifestWriter(path)
    assert [r["key"] for r in read_manifest(tmp_path)] == ["a", "c"]


def test_a_row_cut_inside_a_non_ascii_caption_is_a_torn_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    with ManifestWriter(path) as w:
        for key in "ab":
            w.write({"key": key, "caption": "東京 Zürich", "status": "ok", "finished": 1})
    data = path.read_bytes()
    path.write_bytes(data[:data.rindex(b'"caption"') + len('"caption": "') + 1])  # a kill one byte into the caption
    assert [(r["key"], r["caption"]) for r in read_manifest(tmp_path)] == [("a", "東京 Zürich")]


class Gate:
    """One host's routes: its first `n` requests are answered at once, later ones only after `open()`."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.lock, self.opened = n, 0, threading.Lock(), threading.Event()

    def route(self, body: bytes) -> Route:
        def handler(req) -> None:
            with self.lock:
                self.seen += 1
                held = self.seen > self.n
            if held:
                self.opened.wait()
            req._send(200, body, "image/jpeg", {}, True)
        return Route(handler=handler)

    def open(self) -> None:
        self.opened.set()


def test_kill_9_mid_crawl_then_rerun(tmp_path):
    """A real crawl process killed with SIGKILL; the re-run completes it and fetches nothing it had finished."""
    hosts = [FaultServer(f"127.0.0.{i}") for i in (2, 3, 4)]
    gates = [Gate(15) for _ in hosts]  # at most 45 answers before the kill: the crawl cannot finish first
    try:
        lines = ["aux_name,url,caption"]
        for h, (srv, gate) in enumerate(zip(hosts, gates)):
            for j in range(60):
                srv.routes[f"/{j}.jpg"] = gate.route(image_bytes(seed=1000 * h + j))
                lines.append(f"class {j % 5},{srv.url(f'/{j}.jpg')},img {j}")
        (tmp_path / "urls.csv").write_text("\n".join(lines) + "\n")
        out = tmp_path / "crawl"
        # timeouts far above the wait at the gates (the test kills the crawl as soon as 40 rows are written)
        cmd = [sys.executable, "-m", "ltkit", "crawl", "--urls", str(tmp_path / "urls.csv"), "--out", str(out),
               "--no-progress", "crawl.allow_loopback=true", "crawl.per_host=2", "crawl.host_interval=0",
               "crawl.read_timeout=300", "crawl.total_timeout=300"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        manifest = out / "manifest.jsonl"
        deadline = time.monotonic() + 300  # only bounds a hung crawl: under load the start-up alone takes a while
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= 40:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for gate in gates:
            gate.open()
        done = {r["url"] for r in read_manifest(out)}
        assert 40 <= len(done) <= 45
        before = {id(s): len(s.requests) for s in hosts}
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "kept" in res.stdout
        refetched = {s.url(p) for s in hosts for p, _, _ in s.requests[before[id(s)]:]}
        assert not refetched & done  # nothing finished before the kill was requested again
        names, batches = read_url_list(tmp_path / "urls.csv")  # the same crawl, never interrupted
        run_crawl(tmp_path / "ref", batches, list(range(len(names))), DownloadSettings(**FAST), progress=False)
    finally:
        for s in hosts:
            s.close()
    rows = read_manifest(out)
    assert len(rows) == 180 and all(r["status"] == "ok" for r in rows)
    assert_clean_folder(out, rows)
    assert {r["aux_id"] for r in rows} == set(range(5))
    final = lambda rows: sorted((r["url"], r["aux_id"], r["status"], r["path"]) for r in rows)  # noqa: E731
    assert final(rows) == final(read_manifest(tmp_path / "ref"))
