"""Image search: ddgs through an injected fake (nothing reaches the internet), the local pool (the world's and
a folder's), the search cache, and a pool crawl through the real downloader and the pool server."""
import urllib.error
import urllib.request

import numpy as np
import pytest
from ddgs.exceptions import DDGSException, TimeoutException
from PIL import Image

from ltkit.artifacts.manifest import read_manifest
from ltkit.crawl.download import DownloadSettings
from ltkit.crawl.image_search import (POOL_HOST, DDGSEngine, Hit, PoolEngine, SearchCache, SearchError,
                                      caption_mentions)
from ltkit.crawl.pool_server import PoolServer
from ltkit.crawl.retrieve import crawl_classes, crawl_neighbours, search_jobs
from ltkit.errors import UserError
from ltkit.world import NOISE_KINDS


def fake_ddgs(answers):
    """A DDGS stand-in that plays `answers` (result lists or exceptions) in order and records each call."""
    calls = []

    class FakeDDGS:
        def __init__(self, proxy=None, timeout=5, verify=True):
            self.init = {"proxy": proxy, "timeout": timeout}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def images(self, query, **kwargs):
            calls.append((query, kwargs, self.init))
            answer = answers[min(len(calls), len(answers)) - 1]
            if isinstance(answer, Exception):
                raise answer
            return answer

    return FakeDDGS, calls


ROWS = [{"title": "A Teal Hexagon", "image": "https://img.example/a.jpg", "thumbnail": "t", "url": "https://page/a",
         "height": "480", "width": "640", "source": "Bing"},
        {"title": "no image url", "image": "", "url": "https://page/b"},
        {"title": "hexagon 2", "image": "https://img.example/b.png", "url": "https://page/c", "height": 10, "width": 20}]


def test_ddgs_hits_and_options_passed_through():
    factory, calls = fake_ddgs([ROWS])
    engine = DDGSEngine(region="de-de", safesearch="off", license_image="Public", timeout=7, ddgs_factory=factory,
                        interval=0)
    hits = engine.search("teal hexagon", 5)
    assert hits == [Hit("https://img.example/a.jpg", "A Teal Hexagon", "https://page/a", 640, 480, "ddgs:duckduckgo"),
                    Hit("https://img.example/b.png", "hexagon 2", "https://page/c", 20, 10, "ddgs:duckduckgo")]
    (query, kwargs, init), = calls
    assert query == "teal hexagon" and init["timeout"] == 7
    assert kwargs == {"region": "de-de", "safesearch": "off", "max_results": 5, "backend": "duckduckgo",
                      "license_image": "Public"}


def test_ddgs_no_results_is_an_empty_answer_not_an_error():
    factory, calls = fake_ddgs([DDGSException("No results found.")])
    assert DDGSEngine(ddgs_factory=factory, interval=0).search("zzz", 5) == [] and len(calls) == 1


def test_ddgs_backs_off_on_errors_then_succeeds():
    factory, calls = fake_ddgs([DDGSException("https://duckduckgo.com/i.js 403 Ratelimit"),
                                TimeoutException("timed out"), ROWS])
    sleeps = []
    engine = DDGSEngine(ddgs_factory=factory, backoff=2.0, interval=0, sleep=sleeps.append)
    assert len(engine.search("cat", 10)) == 2 and len(calls) == 3
    assert 1.5 <= sleeps[0] <= 2.5 and 3.0 <= sleeps[1] <= 5.0  # exponential, jittered


def test_ddgs_gives_up_with_advice():
    factory, calls = fake_ddgs([DDGSException("DNSError: no route")])
    engine = DDGSEngine(ddgs_factory=factory, retries=2, interval=0, sleep=lambda s: None)
    with pytest.raises(SearchError, match="DDGS_PROXY") as err:
        engine.search("cat", 10)
    assert len(calls) == 3 and "re-run" in str(err.value) and "'cat'" in str(err.value)


def test_ddgs_paces_requests():
    factory, _ = fake_ddgs([ROWS])
    sleeps = []
    engine = DDGSEngine(ddgs_factory=factory, interval=1.5, sleep=sleeps.append)
    engine.search("a", 1)
    engine.search("b", 1)
    assert len(sleeps) == 1 and 1.0 < sleeps[0] <= 1.5


class CountingEngine:
    name = "counting"

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def params(self):
        return {"v": 1}

    def search(self, query, max_results):
        self.calls.append(query)
        if query in self.fail:
            raise SearchError(f"{query} failed")
        return [Hit(f"http://h/{query}/{i}.jpg", f"{query} {i}") for i in range(max_results)]


def test_search_cache_searches_nothing_twice(tmp_path):
    engine = CountingEngine()
    assert len(SearchCache(tmp_path / "c.jsonl").search(engine, "cat", 3)) == 3
    cache = SearchCache(tmp_path / "c.jsonl")  # a new process
    assert cache.search(engine, "cat", 3) == [Hit(f"http://h/cat/{i}.jpg", f"cat {i}") for i in range(3)]
    cache.search(engine, "cat", 4)  # another question
    assert engine.calls == ["cat", "cat"] and (cache.searched, cache.cached) == (1, 1)


def test_failed_searches_are_recorded_and_a_blocked_engine_stops_the_search(tmp_path):
    names = ["a", "b", "c", "d", "e", "f"]
    engine, failures = CountingEngine(fail={"b photo", "d photo", "e photo", "f photo"}), []
    batches = list(search_jobs(names, [0] * 6, ["t"], engine, SearchCache(tmp_path / "c.jsonl"), range(6), 2,
                               "{name} photo", failures, give_up_after=3))
    assert [b[0].row["aux_name"] for b in batches] == ["a", "c"]
    assert engine.calls == ["a photo", "b photo", "c photo", "d photo", "e photo", "f photo"]
    assert len(failures) == 5 and "stopped searching" in failures[-1]
    assert batches[1][1].row == {"aux_name": "c", "target_id": 0, "target_name": "t", "query": "c photo",
                                 "engine": "", "rank": 1, "caption": "c photo 1", "source_page": ""}


def test_caption_mentions_uses_the_filter_normalisation():
    from ltkit.curate.filter import caption_match  # the pool search must find what the caption filter keeps

    cases = [("Teal_Striped Hexagons - stock", "teal striped hexagon"), ("teal hexagon striped", "teal striped hexagon"),
             ("anything", ""), ("Red-Kites!", "red kite"), ("a kite, red", "red kite")]
    want = [True, False, False, True, False]
    assert [caption_mentions(c, n) for c, n in cases] == [caption_match(c, n, "phrase") for c, n in cases] == want


def test_world_pool_search(tiny_world):
    engine = PoolEngine.from_world(tiny_world)
    q = 5
    hits = engine.search(tiny_world.all_names[q].upper() + "S", 100)  # name_key: case and plural
    items = np.flatnonzero(tiny_world.pool_query == q)
    assert len(hits) == len(items) == tiny_world.config.pool_per_class
    assert [h.caption for h in hits] == [tiny_world.pool_captions[j] for j in items]
    assert [h.truth for h in hits] == [tiny_world.pool_noise[j] for j in items]
    assert all(h.url.startswith(f"http://{POOL_HOST}/pool/") and h.engine == "pool" for h in hits)
    assert engine.search("no such class", 10) == [] and len(engine.search(tiny_world.all_names[q], 3)) == 3


def test_folder_pool_search_and_server(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i, colour in enumerate(("red", "blue", "red")):
        Image.new("RGB", (8, 8), colour).save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "captions.csv").write_text("path,caption\nimgs/0.png,a red kite\nimgs/1.png,Blue Kites\n"
                                           "imgs/2.png,kite red\n")
    engine = PoolEngine.from_folder(tmp_path)
    assert [h.caption for h in engine.search("blue kite", 5)] == ["Blue Kites"]
    assert [h.url.rsplit("/", 1)[1] for h in engine.search("red kite", 5)] == ["0.png"]
    (tmp_path / "labels.csv").write_text("path,caption,label\nimgs/0.png,nothing,red kite\n")
    assert len(PoolEngine.from_folder(tmp_path, tmp_path / "labels.csv").search("Red Kites", 5)) == 1
    (tmp_path / "nocap.csv").write_text("path,label\nimgs/0.png,red kite\n")
    with pytest.raises(UserError, match="nocap.csv: line 1: missing column"):
        PoolEngine.from_folder(tmp_path, tmp_path / "nocap.csv")
    (tmp_path / "bad.csv").write_text("path,caption\nimgs/0.png,ok\n../secret.png,x\n")
    with pytest.raises(UserError, match="bad.csv: line 3: field path"):
        PoolEngine.from_folder(tmp_path, tmp_path / "bad.csv")
    (tmp_path.parent / "secret.txt").write_text("secret")
    with PoolServer(folder=tmp_path) as server:
        base = f"http://{server.address}"
        assert urllib.request.urlopen(f"{base}/files/imgs/1.png").read()[:4] == b"\x89PNG"
        for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/pool/0.png", "/files/nothing.png"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(base + path)


def test_pool_crawl_through_the_real_downloader(tiny_world, tmp_path):
    names = [tiny_world.all_names[i] for i in (1, 2, 50, 51)]  # auxiliary classes queried from targets 0, 0, 1, 1
    engine = PoolEngine.from_world(tiny_world)
    with PoolServer(tiny_world) as server:
        s = DownloadSettings(allow_loopback=True, resolve=server.resolve, per_host=8, host_interval=0)
        report = crawl_classes(names, [0, 0, 1, 1], ["t0", "t1"], engine, tmp_path, s, per_class=100, progress=False)
        n = 4 * tiny_world.config.pool_per_class
        assert report.total == n and report.status.get("ok", 0) + report.status.get("duplicate", 0) == n
        again = crawl_classes(names, [0, 0, 1, 1], ["t0", "t1"], engine, tmp_path, s, per_class=100, progress=False)
    assert (again.fetched, again.skipped, again.searches) == (0, n, {"new": 0, "cached": 4})
    rows = read_manifest(tmp_path)
    assert {r["truth"] for r in rows} <= set(NOISE_KINDS) and {r["aux_name"] for r in rows} == set(names)
    for r in rows:
        j = int(r["url"].rsplit("/", 1)[1].split(".")[0])
        assert r["caption"] == tiny_world.pool_captions[j] and r["target_name"] == f"t{r['target_id']}"
        if r["status"] == "ok":
            with Image.open(tmp_path / r["path"]) as im:
                assert im.size == (32, 32) and r["path"] == f"images/{r['aux_id']:05d}/{r['sha256']}.jpg"


def test_crawl_neighbours_on_builtin_tiny_through_the_pool_server(tiny_world, tmp_path):
    """The crawl stage in one call on a searched neighbour map: the world's pool over HTTP, then a resume doing nothing."""
    from ltkit.artifacts.neighbour_map import load_neighbour_map
    from ltkit.config import CrawlConfig
    from ltkit.neighbours import TaxonomyBackend, search_neighbours

    names = tiny_world.class_names
    search_neighbours(TaxonomyBackend(tiny_world.search_taxonomy, seed=0), names, tiny_world.train_counts, tmp_path, k=1)
    nmap = load_neighbour_map(tmp_path / "neighbours.csv", len(names))
    c = CrawlConfig(per_class=3)
    report = crawl_neighbours(nmap, names, tmp_path, c, tiny_world, progress=False)
    n = 3 * nmap.num_aux
    assert nmap.num_aux > 1 and report.total == report.fetched == n
    assert report.status.get("ok", 0) + report.status.get("duplicate", 0) == n and report.kept > 0
    assert report.searches == {"new": nmap.num_aux, "cached": 0}
    rows = read_manifest(tmp_path)
    assert {r["aux_id"] for r in rows} == set(range(nmap.num_aux))
    assert all(r["target_name"] == names[nmap.aux_parent[r["aux_id"]]] for r in rows)
    assert all(r["url"].startswith(f"http://{POOL_HOST}/") for r in rows)  # the pool's name, not the server's port
    again = crawl_neighbours(nmap, names, tmp_path, c, tiny_world, progress=False)
    assert (again.fetched, again.kept, again.skipped) == (0, 0, n)
    assert again.searches == {"new": 0, "cached": nmap.num_aux} and read_manifest(tmp_path) == rows
    with pytest.raises(UserError, match="crawl.pool_dir=FOLDER"):  # a pool needs a world or a folder
        crawl_neighbours(nmap, names, tmp_path / "none", c)
    assert not (tmp_path / "none").exists()


def test_crawl_command_on_builtin_tiny(tiny_world, tmp_path, capsys):
    """`python -m ltkit neighbours` then `python -m ltkit crawl` with the same config: the map's classes, crawled."""
    from pathlib import Path

    from ltkit.cli import main
    from ltkit.artifacts.neighbour_map import load_neighbour_map

    config = str(Path(__file__).resolve().parents[1] / "configs" / "builtin-tiny.yaml")
    over = [f"neighbours.out_dir={tmp_path}", "k=2"]
    assert main(["neighbours", "--config", config, *over]) == 0
    assert main(["crawl", "crawl.per_class=3", "--config", config, *over, "--no-progress"]) == 0  # overrides anywhere
    assert "kept" in capsys.readouterr().out
    nmap = load_neighbour_map(tmp_path / "neighbours.csv", len(tiny_world.class_names))
    rows = read_manifest(tmp_path)
    assert len(rows) == 3 * nmap.num_aux and {r["aux_id"] for r in rows} == set(range(nmap.num_aux))
    assert all(r["target_name"] == tiny_world.class_names[nmap.aux_parent[r["aux_id"]]] for r in rows)
    for args in (["crawl.engine=bing"], ["--shard", "2/2"], ["crawl.query=photos"], ["crawl.per_host=0"]):
        assert main(["crawl", "--config", config, *over, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    assert main(["crawl", "--urls", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.csv" in capsys.readouterr().err
