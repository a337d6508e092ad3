"""Hostile and careless input (issue 21): every numbered failure of the issue as a test, on servers on 127.0.0.x.

Each test names its item. The data-loss cases (1-6, 10) assert that nothing is lost or mislabelled: the
address guard stays on, a refused crawl touches nothing, ids cannot drift, images are stored as they
look, a resource fault stops the crawl resumably, paths stay inside their folder.
"""
import errno
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from fault_server import FaultServer, Route, image_bytes
from ltkit import cli
from ltkit.artifacts.layout import CLASSES
from ltkit.artifacts.manifest import ManifestBusy, ManifestWriter, crawl_lock, read_manifest, resume_state
from ltkit.config import ConfigError, load_config
from ltkit.crawl import store
from ltkit.crawl.download import DownloadSettings, Job
from ltkit.crawl.image_search import Hit
from ltkit.crawl.policy import Failure, address_allowed, check_url, parse_ip, retry_after
from ltkit.crawl.retrieve import crawl_classes, read_url_list, run_crawl
from ltkit.crawl.store import store_image
from ltkit.errors import UserError

# no test here waits for a timeout: these are far above what a local answer takes even on a loaded machine
FAST = dict(allow_loopback=True, connect_timeout=10.0, read_timeout=10.0, total_timeout=20.0, retries=0,
            host_interval=0.0)


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    """`python -m ltkit ARGV` in-process: (status, stderr lines that are not log lines)."""
    rc = cli.main(argv)
    err = capsys.readouterr().err
    return rc, [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("ltkit.")]


def url_list(path, urls_by_class) -> str:
    lines = ["aux_name,url,caption"] + [f"{name},{u},a {name}" for name, urls in urls_by_class.items() for u in urls]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# --- 1. a typo never turns the address guard off ----------------------------------------------------


@pytest.mark.parametrize("value", ["fasle", "disabled", "-1", "1", "'false'", "yes please"])
def test_1_allow_loopback_must_be_a_boolean(value):
    with pytest.raises(ConfigError, match=r"crawl\.allow_loopback"):
        load_config(None, [f"crawl.allow_loopback={value}"])


def test_1_yaml_string_false_is_refused_and_the_crawl_fetches_nothing(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text('crawl:\n  allow_loopback: "false"\n')
    with pytest.raises(ConfigError, match=r"c\.yaml: crawl\.allow_loopback='false': expected true or false"):
        load_config(tmp_path / "c.yaml")
    with FaultServer("127.0.0.2") as srv:
        srv.routes["/a.jpg"] = Route(image_bytes())
        urls = url_list(tmp_path / "u.csv", {"kite": [srv.url("/a.jpg")]})
        rc, err = run_cli(["crawl", "--urls", urls, "--out", str(tmp_path / "out"), "crawl.allow_loopback=fasle"],
                          capsys)
        assert rc == 2 and len(err) == 1 and "crawl.allow_loopback" in err[0], err
        assert srv.requests == [] and not (tmp_path / "out").exists()
    # the policy answers a bool, and only True admits loopback
    for flag in ("false", "no", 1, "True"):
        assert address_allowed("127.0.0.1", flag) is False
    assert address_allowed("127.0.0.1", True) is True and address_allowed("8.8.8.8") is True


# --- 2. a refused second crawl touches nothing --------------------------------------------------------


def test_2_a_refused_second_crawl_deletes_no_file_of_the_running_one(tmp_path):
    partial = tmp_path / "images" / "00000" / ".abc.jpg.1234.tmp"  # an image the running crawl is writing
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half an image")
    with ManifestWriter(tmp_path / "manifest.jsonl"):  # what a running crawl holds while it downloads
        with pytest.raises(ManifestBusy):
            run_crawl(tmp_path, [], [0], DownloadSettings(**FAST), progress=False)
    assert partial.read_bytes() == b"half an image"
    with crawl_lock(tmp_path):  # and the folder lock, taken before anything is touched
        with pytest.raises(ManifestBusy, match="nothing was touched"):
            run_crawl(tmp_path, [], [0], DownloadSettings(**FAST), progress=False)
        with pytest.raises(ManifestBusy):
            run_crawl(tmp_path, [], [0], DownloadSettings(**FAST), shard=(0, 2), progress=False)
    assert partial.exists()
    with crawl_lock(tmp_path, (0, 2)), crawl_lock(tmp_path, (1, 2)):  # two shards share the folder
        with pytest.raises(ManifestBusy):
            run_crawl(tmp_path, [], [0], DownloadSettings(**FAST), shard=(1, 2), progress=False)  # not one twice


# --- 3. class ids cannot drift --------------------------------------------------------------------------


class ServerEngine:
    """A search engine whose every query has two hits on a fault server (one image per class name)."""

    name = "test"

    def __init__(self, srv: FaultServer) -> None:
        self.srv = srv

    def params(self) -> dict:
        return {}

    def search(self, query: str, max_results: int) -> list[Hit]:
        slug = query.replace(" ", "-")
        for j in range(2):
            self.srv.routes[f"/{slug}/{j}.jpg"] = Route(image_bytes(seed=hash((slug, j)) % 1000))
        return [Hit(self.srv.url(f"/{slug}/{j}.jpg"), query, engine="test") for j in range(2)]


def test_3_a_folder_crawled_for_k3_refuses_the_k2_map(tmp_path):
    targets = ["red kite", "blue kite"]
    k3 = (["a1", "a2", "a3", "b1", "b2", "b3"], [0, 0, 0, 1, 1, 1])  # the map at k=3, in row order
    k2 = (["a1", "a2", "b1", "b2"], [0, 0, 1, 1])                    # k=2: b1 would take id 2 of a3
    s = DownloadSettings(**FAST)
    with FaultServer("127.0.0.2") as srv:
        engine = ServerEngine(srv)
        crawl_classes(*k3, targets, engine, tmp_path, s, per_class=2, progress=False)
        before = (tmp_path / "manifest.jsonl").read_bytes()
        with pytest.raises(UserError, match=r"auxiliary id 2 was crawled as 'a3' \(target 0\).*'b1' \(target 1\)"):
            crawl_classes(*k2, targets, engine, tmp_path, s, per_class=2, progress=False)
        assert (tmp_path / "manifest.jsonl").read_bytes() == before
        again = crawl_classes(*k3, targets, engine, tmp_path, s, per_class=2, progress=False)  # the same map resumes
        assert again.skipped == 12 and again.fetched == 0
        (tmp_path / CLASSES).unlink()  # a folder crawled before the record existed: checked against its rows
        with pytest.raises(UserError, match="auxiliary id 2"):
            crawl_classes(*k2, targets, engine, tmp_path, s, per_class=2, progress=False)
    rows = read_manifest(tmp_path)
    assert {(r["aux_id"], r["aux_name"]) for r in rows} == set(enumerate(k3[0]))


def test_3_a_url_list_that_reorders_its_classes_is_refused(tmp_path, capsys):
    with FaultServer("127.0.0.2") as srv:
        for j in range(2):
            srv.routes[f"/{j}.jpg"] = Route(image_bytes(seed=j))
        first = url_list(tmp_path / "1.csv", {"kite": [srv.url("/0.jpg")], "owl": [srv.url("/1.jpg")]})
        second = url_list(tmp_path / "2.csv", {"owl": [srv.url("/1.jpg")], "kite": [srv.url("/0.jpg")]})
        argv = ["--out", str(tmp_path / "out"), "--no-progress", "crawl.allow_loopback=true"]
        assert run_cli(["crawl", "--urls", first, *argv], capsys)[0] == 0
        rc, err = run_cli(["crawl", "--urls", second, *argv], capsys)
    assert rc == 2 and len(err) == 1 and "auxiliary id 0 was crawled as 'kite'" in err[0], err


# --- 4. images stored as they look ------------------------------------------------------------------------


def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def stored_pixels(tmp_path, body: bytes) -> np.ndarray:
    s = store_image(body, tmp_path, 0, 10_000_000)
    with Image.open(tmp_path / s.path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_4_sixteen_bit_images_are_scaled_not_clipped_white(tmp_path, fmt):
    ramp = np.repeat(np.linspace(0, 65535, 64).astype(np.uint16)[None], 16, 0)  # black to white, 16 bits
    px = stored_pixels(tmp_path, encoded(Image.fromarray(ramp), fmt))
    want = np.repeat(np.linspace(0, 255, 64)[None], 16, 0)
    assert np.abs(px[..., 0] - want).mean() < 3  # JPEG error only; clipped, the mean error is ~120


def test_4_float_images_in_0_1_are_scaled_not_black(tmp_path):
    ramp = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None], 16, 0)
    px = stored_pixels(tmp_path, encoded(Image.fromarray(ramp, "F"), "TIFF"))
    assert np.abs(px[..., 0] - ramp * 255).mean() < 3
    bad = ramp.copy()
    bad[0, 0] = np.nan
    with pytest.raises(Failure, match="non_finite_pixels"):
        store_image(encoded(Image.fromarray(bad, "F"), "TIFF"), tmp_path, 0, 10_000_000)


def test_4_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue: after a 90 degree turn it is the top or bottom half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    px = stored_pixels(tmp_path, encoded(im, "JPEG", exif=exif, quality=95))
    assert px.shape[:2] == (40, 20)  # upright: portrait
    top, bottom = px[:20].mean((0, 1)), px[20:].mean((0, 1))
    assert top[2] > 200 and top[0] < 60 and bottom[0] > 200 and bottom[2] < 60


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_4_colour_keyed_transparency_is_composited_like_palette_transparency(tmp_path, mode):
    key = (10, 200, 30) if mode == "RGB" else 90
    im = Image.new(mode, (16, 16), key)
    im.paste((200, 20, 20) if mode == "RGB" else 200, (0, 0, 8, 16))
    keyed = stored_pixels(tmp_path, encoded(im, "PNG", transparency=key))
    pal = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)  # exact colours, no dithering
    palette_index = pal.getpixel((15, 15))
    paletted = stored_pixels(tmp_path, encoded(pal, "PNG", transparency=palette_index))
    assert keyed[:, 10:].min() > 245 and keyed[:, :6, 0].min() > 150  # transparent: white (JPEG rings at the edge)
    assert np.abs(keyed - paletted).max() < 3


# --- 5. is in tests/test_filter.py (test_5_filter_save_is_all_or_nothing: it uses the filter's toy crawl) ----


# --- 6. full disk and read-only folders ----------------------------------------------------------------------


def crawl_of(srv: FaultServer, tmp_path, n: int) -> list[str]:
    """The `crawl --urls` command line of n images on `srv`, one at a time, into tmp_path/out."""
    for j in range(n):
        srv.routes[f"/{j}.jpg"] = Route(image_bytes(seed=j))
    urls = url_list(tmp_path / "u.csv", {"kite": [srv.url(f"/{j}.jpg") for j in range(n)]})
    return ["crawl", "--urls", urls, "--out", str(tmp_path / "out"), "--no-progress", "crawl.allow_loopback=true",
            "crawl.host_interval=0", "crawl.per_host=1"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_6_a_full_disk_stops_the_crawl_with_one_line_and_the_next_run_fetches_the_rest(tmp_path, capsys, monkeypatch,
                                                                                      code):
    real, calls = store.atomic_write_bytes, []

    def fills_up(path, data):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(code, os.strerror(code))
        real(path, data)

    with FaultServer("127.0.0.2") as srv:
        argv = crawl_of(srv, tmp_path, 8)
        monkeypatch.setattr(store, "atomic_write_bytes", fills_up)
        rc, err = run_cli(argv, capsys)
        assert rc == 2 and len(err) == 1 and os.strerror(code) in err[0], err
        rows = read_manifest(tmp_path / "out")
        assert all(r["status"] == "ok" for r in rows) and len(rows) == 2  # no URL marked failed by the fault
        monkeypatch.setattr(store, "atomic_write_bytes", real)
        rc, _ = run_cli(argv, capsys)  # a plain re-run, no --retry-failed
    rows = read_manifest(tmp_path / "out")
    assert rc == 0 and len(rows) == 8 and all(r["status"] == "ok" for r in rows)


class FullFile:
    """A manifest file whose writes fail once `budget` rows went in (the rest of the file behaves)."""

    def __init__(self, f, budget: int) -> None:
        self._f, self.budget = f, budget

    def write(self, data):
        self.budget -= 1
        if self.budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_6_a_manifest_that_cannot_grow_is_one_error_line(tmp_path, capsys, monkeypatch):
    import ltkit.artifacts.manifest as manifest

    def opener(path, *args, **kw):
        f = open(path, *args, **kw)
        return FullFile(f, 3) if str(path).endswith("manifest.jsonl") else f

    monkeypatch.setattr(manifest, "open", opener, raising=False)
    with FaultServer("127.0.0.2") as srv:
        argv = crawl_of(srv, tmp_path, 6)
        rc, err = run_cli(argv, capsys)
        assert rc == 2 and len(err) == 1 and "No space left on device" in err[0] and "manifest" in err[0], err
        monkeypatch.undo()
        assert run_cli(argv, capsys)[0] == 0
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)


# --- 7. numeric IPv4 forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host,ip", [("2130706433", "127.0.0.1"), ("127.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
                                     ("0x7f.0.0.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("127.0.1", "127.0.0.1"),
                                     ("0", "0.0.0.0"), ("127.0.0.1.", "127.0.0.1"), ("3232235521", "192.168.0.1"),
                                     ("0xa.1", "10.0.0.1"), ("134744072", "8.8.8.8")])
def test_7_numeric_ipv4_forms_are_addresses_to_ltkits_policy(host, ip):
    assert str(parse_ip(host)) == ip
    if ip == "8.8.8.8":
        assert check_url(f"http://{host}/x.jpg").host == host  # a public address in another spelling passes
        return
    with pytest.raises(Failure, match="disallowed_address"):
        check_url(f"http://{host}/x.jpg")


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1.16777216", "0x1g"])
def test_7_names_are_not_addresses(host):
    assert parse_ip(host) is None


# --- 8. settings no one validated ------------------------------------------------------------------------------


@pytest.mark.parametrize("override,key", [
    ("crawl.max_bytes=.nan", "crawl.max_bytes"), ("crawl.max_pixels=.inf", "crawl.max_pixels"),
    ("crawl.host_interval=.inf", "crawl.host_interval"), ("crawl.rate_limit=1e-6", "crawl.rate_limit"),
    ("filter.leak_hamming=-1", "filter.leak_hamming"), ("filter.leak_cos=.nan", "filter.leak_cos"),
    ("filter.leak_cos=2", "filter.leak_cos"), ("epochs=0", "epochs"), ("k=0", "k"), ("lr=-1", "lr"),
    ("crawl.total_timeout=0", "crawl.total_timeout"), ("pilot.ratios=[0.1,.nan]", r"pilot\.ratios\[1\]"),
])
def test_8_out_of_range_settings_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}="):
        load_config(None, [override])


def test_8_downloader_settings_and_retry_after_are_checked():
    for bad in (dict(max_bytes=float("nan")), dict(max_pixels=float("inf")), dict(rate_limit=1e-6),
                dict(host_interval=float("inf")), dict(allow_loopback="false")):
        with pytest.raises(ConfigError):
            DownloadSettings(**bad).check()
    assert retry_after("²") is None and retry_after("7") == 7.0  # '²'.isdigit() is True


# --- 9. bad inputs: one error line -----------------------------------------------------------------------------


@pytest.mark.parametrize("argv,says", [
    (["train", "epochs", "1"], "'epochs'"), (["compare", "epochs", "1"], "'epochs'"),
    (["neighbours", "epochs", "1"], "'epochs'"), (["crawl", "epochs", "1"], "'epochs'"),
    (["filter", "epochs", "1"], "'epochs'"), (["pilot", "epochs", "1"], "'epochs'"),
    (["train", "epochs=abc"], "epochs='abc'"), (["crawl", "crawl.per_host=1.5"], "crawl.per_host=1.5"),
    (["pilot", "pilot.num_classes=abc"], "pilot.num_classes"), (["train", "betas=[0.9]"], "betas"),
    (["filter", "filter.leak_splits=val"], "filter.leak_splits"), (["train", "augment=maybe"], "augment"),
])
def test_9_bad_arguments_are_one_error_line(argv, says, capsys):
    rc, err = run_cli(argv, capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_9_bom_files_read_and_other_encodings_are_named(tmp_path):
    (tmp_path / "bom.yaml").write_bytes("\ufeffk: 3\n".encode("utf-8"))
    assert load_config(tmp_path / "bom.yaml").k == 3
    (tmp_path / "latin.yaml").write_bytes("k: 3\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin\.yaml: line 2: not UTF-8"):
        load_config(tmp_path / "latin.yaml")
    (tmp_path / "bom.csv").write_bytes("\ufeffaux_name,url\nkite,http://127.0.0.2/a.jpg\n".encode("utf-8"))
    classes, batches = read_url_list(tmp_path / "bom.csv")
    assert classes == [("kite", None)] and batches[0][0].url == "http://127.0.0.2/a.jpg"
    (tmp_path / "latin.csv").write_bytes("aux_name,url\ncaf\xe9,http://127.0.0.2/a.jpg\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin\.csv: line 2: not UTF-8"):
        read_url_list(tmp_path / "latin.csv")


def test_9_an_empty_crawl_and_a_corrupt_image_in_the_filter_are_named(tmp_path):
    from ltkit.curate.filter import read_crawl
    from ltkit.data import FileImages

    (tmp_path / "manifest.jsonl").write_text(json.dumps({"key": "a", "status": "failed", "reason": "http_404"}) + "\n")
    with pytest.raises(UserError, match="no downloaded image to filter"):
        read_crawl(tmp_path)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match=r"bad\.jpg: image 0 cannot be decoded"):
        FileImages(tmp_path, ["bad.jpg"], [0]).load(0)


def test_9_unknown_models_and_devices_are_named():
    from ltkit.models import create_model
    from ltkit.train import checked_device

    with pytest.raises(UserError, match="model='resnet_nosuch'"):
        create_model("resnet_nosuch", 3)
    with pytest.raises(UserError, match=r"device='cuda:99'"):
        checked_device("cuda:99")
    with pytest.raises(UserError, match="device='gpu'"):
        checked_device("gpu")


# --- 10. smaller holes ---------------------------------------------------------------------------------------------


def test_10_manifest_and_accepted_paths_stay_inside_their_folder(tmp_path):
    from ltkit.artifacts.accepted import ACCEPTED_COLUMNS, load_accepted

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (tmp_path / "secret.jpg").write_bytes(image_bytes())
    row = {"key": "a", "aux_id": 0, "status": "ok", "path": "../secret.jpg", "sha256": "x", "finished": 1}
    (crawl / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    assert "a" not in resume_state(crawl).done  # not done: it is fetched again into the folder
    (crawl / "accepted.csv").write_text(",".join(ACCEPTED_COLUMNS) + "\n../secret.jpg,2,kite,0,x,0.5\n")
    with pytest.raises(UserError, match=r"accepted\.csv: line 2: field path: '\.\./secret\.jpg' leaves"):
        load_accepted(crawl / "accepted.csv", ["kite"], 2)


def test_10_merge_of_a_missing_folder_creates_nothing(tmp_path, capsys):
    rc, err = run_cli(["crawl", "--merge", "--out", str(tmp_path / "typo")], capsys)
    assert rc == 2 and len(err) == 1 and "typo" in err[0] and not (tmp_path / "typo").exists()


def test_10_a_lost_image_keeps_its_duplicate(tmp_path):
    same = image_bytes(seed=5)
    s = DownloadSettings(**FAST, per_host=1)  # one at a time: a is kept, b is its duplicate
    with FaultServer("127.0.0.2") as srv:
        srv.routes["/a.jpg"] = Route(same)
        srv.routes["/b.jpg"] = Route(same)
        batches = lambda: [[Job(srv.url("/a.jpg"), 0, {"aux_name": "kite"}),  # noqa: E731
                            Job(srv.url("/b.jpg"), 0, {"aux_name": "kite"})]]
        run_crawl(tmp_path, batches(), [0], s, progress=False)
        rows = {r["url"]: r for r in read_manifest(tmp_path)}
        assert rows[srv.url("/b.jpg")]["status"] == "duplicate"
        (tmp_path / rows[srv.url("/a.jpg")]["path"]).unlink()  # the kept file is deleted ...
        srv.routes["/a.jpg"] = Route(b"", status=404)           # ... and its URL is gone
        run_crawl(tmp_path, batches(), [0], s, progress=False)
    rows = {r["url"]: r for r in read_manifest(tmp_path)}
    assert rows[srv.url("/b.jpg")]["status"] == "ok" and (tmp_path / rows[srv.url("/b.jpg")]["path"]).is_file()


def test_10_a_url_list_with_targets_gives_the_filter_its_parents(tmp_path):
    from ltkit.curate.filter import read_crawl

    (tmp_path / "u.csv").write_text("aux_name,url,target\nsedan,http://127.0.0.2/a.jpg,Sports Cars\n"
                                    "owl,http://127.0.0.2/b.jpg,tabby cat\n")
    classes, batches = read_url_list(tmp_path / "u.csv", lambda: ["tabby cat", "sports car"])
    assert classes == [("sedan", 1), ("owl", 0)] and batches[0][0].row["target_name"] == "sports car"
    with pytest.raises(UserError, match=r"u\.csv: line 2: field target: 'Sports Cars' is no class"):
        read_url_list(tmp_path / "u.csv", lambda: ["tabby cat"])
    row = {"key": "a", "aux_id": 0, "aux_name": "sedan", "target_id": None, "target_name": None, "caption": "",
           "engine": "urls", "status": "ok", "path": "images/00000/x.jpg", "sha256": "x"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match="target column"):
        read_crawl(tmp_path)


# --- 11. names that are a target class in another spelling ------------------------------------------------------

SAME = [("Sport Car", "sports car"), ("SportsCar", "sports car"), ("sports-cars", "sports car"),
        ("sportscar", "sports car"), ("Sports_Cars", "sports car"), ("SPORTS CAR", "sports car"),
        ("TabbyCats", "tabby cat"), ("teal striped hexagons", "Teal Striped Hexagon"), ("wolves", "wolf"),
        ("Boxes", "box"), ("sea-lions", "sea lion"), ("SeaLion", "sealions")]
DIFFERENT = [("sports cart", "sports car"), ("race car", "sports car"), ("car", "sports car"),
             ("sedan", "sports car"), ("tabby", "tabby cat"), ("sea", "sea lion")]


@pytest.mark.parametrize("a,b", SAME)
def test_11_spellings_of_a_class_are_the_same_label(a, b):
    from ltkit.words import same_label

    assert same_label(a, b) and same_label(b, a)


@pytest.mark.parametrize("a,b", DIFFERENT)
def test_11_other_names_are_other_labels(a, b):
    from ltkit.words import same_label

    assert not same_label(a, b)


def test_11_the_neighbour_search_drops_every_spelling_of_a_target():
    from ltkit.neighbours import filter_proposals

    rows = filter_proposals([["Sport Car", "SportsCar", "sports-cars", "coupe"], ["Sport Cars", "tiger cat"]],
                            ["sports car", "tabby cat"], [4, 4])
    assert [(r.aux_name, r.reason) for r in rows] == [
        ("Sport Car", "in_label_set"), ("SportsCar", "in_label_set"), ("sports-cars", "in_label_set"), ("coupe", ""),
        ("Sport Cars", "in_label_set"), ("tiger cat", "")]

