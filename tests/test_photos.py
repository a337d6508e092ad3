"""The photos preset on tiny tarballs in the real formats: the builder, the folder pool's truth, and the whole chain."""
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltkit.config import load_config
from ltkit.data import photos
from ltkit.errors import ConfigError, UserError

from photo_tarballs import ROOT, TEST, make_tarballs, tiny_preset


@pytest.fixture(scope="module")
def tarballs(tmp_path_factory):
    """The two tiny tarballs (tests/photo_tarballs.py)."""
    return make_tarballs(tmp_path_factory.mktemp("photos-src"))


@pytest.fixture(scope="module")
def built(tarballs, tmp_path_factory, world_cache):
    tmp = tmp_path_factory.mktemp("photos")
    cfg = load_config(tiny_preset(tarballs, tmp))
    return cfg, photos.build_photos(cfg)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builder_writes_a_long_tailed_task_and_a_captioned_pool(built):
    cfg, out = built
    info = json.loads((out / photos.BUILD_JSON).read_text())
    assert info["train_counts"] == [12, 6, 3]  # head 12, imbalance 4, head first in photos.targets
    for split, per in (("train", dict(zip(["airplane", "automobile", "cat"], [12, 6, 3]))), ("val", 2), ("test", TEST)):
        for c in ("airplane", "automobile", "cat"):
            n = per[c] if isinstance(per, dict) else per
            assert len(list((out / "target" / split / c).glob("*.jpg"))) == n, (split, c)
    train = {_sha(p) for p in (out / "target" / "train").rglob("*.jpg")}
    val = {_sha(p) for p in (out / "target" / "val").rglob("*.jpg")}
    assert not train & val  # val photos are ones the long-tailed split left out
    rows = list(csv.DictReader(open(out / "pool" / "captions.csv")))
    pool_classes = ["dog", "truck", "English springer", "garbage truck", "church", "golf ball"]
    assert sorted({r["label"] for r in rows}) == sorted(pool_classes) and len(rows) == 8 * len(pool_classes)
    assert {r["truth"] for r in rows} <= set(photos.NOISE_KINDS) and info["pool_noise"]["clean"] > 0
    shas = [_sha(out / "pool" / r["path"]) for r in rows]
    assert len(set(shas)) == len(shas) and not set(shas) & train  # every item a distinct photo, no target train photo
    for r in rows:
        names = [c for c in pool_classes if c.lower() in r["caption"].lower()]
        if r["truth"] == "uncaptioned":
            assert not names, r
        elif r["truth"] == "off_topic":  # names another pool class
            assert [c for c in names if c != r["label"]], r
        else:
            assert r["label"] in names, r


def test_builder_rebuilds_only_when_a_setting_changes(built, tarballs):
    cfg, out = built
    stamp = (out / photos.BUILD_JSON).stat().st_mtime_ns
    assert photos.build_photos(cfg) == out and (out / photos.BUILD_JSON).stat().st_mtime_ns == stamp
    import dataclasses

    other = dataclasses.replace(cfg, photos=dataclasses.replace(cfg.photos, pool_per_class=4))
    photos.build_photos(other)
    assert len(list(csv.DictReader(open(out / "pool" / "captions.csv")))) == 4 * 6
    photos.build_photos(cfg)  # back, for the other tests
    assert json.loads((out / photos.BUILD_JSON).read_text())["pool"] == 8 * 6


def test_builder_errors_name_the_setting(built):
    import dataclasses

    cfg, _ = built
    with pytest.raises(ConfigError, match=r"photos.targets/pool_classes: \['zebra'\] not among"):
        photos.draw(dataclasses.replace(cfg, photos=dataclasses.replace(cfg.photos, targets=["zebra"])),
                    [photos.open_source(s) for s in cfg.photos.sources])
    with pytest.raises(ConfigError, match=r"target 'airplane' has 16 train photos; .* ask for 102"):
        photos.draw(dataclasses.replace(cfg, head=100), [photos.open_source(s) for s in cfg.photos.sources])
    with pytest.raises(ConfigError, match="rates must be >= 0 and sum below 1"):
        photos.noise_probs(dataclasses.replace(cfg.photos, junk=0.9))
    with pytest.raises(UserError, match="photos.sources: .*nowhere.tar.gz not found"):
        photos.open_source("/nowhere.tar.gz")


def test_junk_keeps_the_pixels_and_loses_the_layout():
    a = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    j = np.asarray(photos.junk(Image.fromarray(a), np.random.default_rng(1)))
    assert j.shape == a.shape and sorted(j.ravel()) == sorted(a.ravel()) and (j != a).any()


def test_folder_pool_truth_reaches_the_hits(built):
    from ltkit.crawl.image_search import PoolEngine

    _, out = built
    engine = PoolEngine.from_folder(out / "pool")
    hits = engine.search("dog", 50)
    rows = [r for r in csv.DictReader(open(out / "pool" / "captions.csv")) if r["label"] == "dog"]
    assert [h.truth for h in hits] == [r["truth"] for r in rows] and len(hits) == 8


def test_random_categories_off_the_world_need_their_own_crawl(built):
    import dataclasses

    from ltkit.artifacts.layout import neighbour_map_path
    from ltkit.auxiliary import random_config

    cfg, _ = built
    rd = random_config(dataclasses.replace(cfg, aux="random", neighbours_csv="sd.csv"))
    assert rd.neighbours.backend == "random" and rd.neighbours_csv is None and rd.aux == "neighbours"
    assert neighbour_map_path(rd) != neighbour_map_path(cfg)
    with pytest.raises(UserError, match="needs aux_images=crawl"):
        random_config(dataclasses.replace(cfg, aux="random", aux_images="mine.csv"))


def test_efficientnet_lite0_encoder_spec():
    from ltkit.encoder import build_encoder

    enc = build_encoder("efficientnet_lite0:32", batch_size=4, device="cpu")
    assert "efficientnet_lite0" in enc.spec and enc.transform.transforms[0].size in (32, (32, 32))
    with pytest.raises(UserError, match="expected efficientnet_lite0 or efficientnet_lite0:<input px>"):
        build_encoder("efficientnet_lite0:big")


@pytest.mark.slow
def test_compare_runs_the_whole_chain_from_the_tarballs(tarballs, tmp_path, world_cache, capsys):
    """`python -m ltkit compare --config PRESET` from nothing but the two tarballs: photos, SD and RD
    neighbour maps, crawls from the folder pool, filters on real features, trainings, tables."""
    from ltkit.curate import quality
    from ltkit.artifacts.layout import ACCEPTED, FILTER_JSON
    from ltkit.cli import main

    preset = tiny_preset(tarballs, tmp_path)
    out = tmp_path / "tables.md"
    assert main(["compare", "--config", str(preset), "--seeds", "0", "--out", str(out)]) == 0
    text = out.read_text()
    assert "+ Random Category" in text and "+ Direct Classifier" in text
    # RD and SD are different crawls of different categories: the overlap row says 0 shared
    assert "| 0 | " in text.split("RD vs SD categories")[1] and "| 0.000 |" in text
    maps = sorted((tmp_path / "runs" / "_neighbours").iterdir())
    assert [m.name.rsplit("-", 2)[1] for m in maps] == ["random", "taxonomy"]
    for m in maps:
        assert (m / ACCEPTED).is_file() and json.loads((m / FILTER_JSON).read_text())["settings"]["encoder"] == \
            "efficientnet_lite0:32"
    # a crawl older than the photo folders it came from is refused, not reused
    import os

    from ltkit import pipeline

    sd = load_config(preset, {"aux": "neighbours"})
    build = Path(sd.photos.out_dir) / photos.BUILD_JSON
    stamp = build.stat()
    os.utime(build, (stamp.st_atime + 3600, stamp.st_mtime + 3600))
    with pytest.raises(UserError, match="was crawled from an older build of"):
        pipeline.prepare(sd)
    os.utime(build, (stamp.st_atime, stamp.st_mtime))
    # the pool's truth went through crawl and filter: precision / recall can be measured
    from ltkit.curate import cli as filter_cli

    cfg = load_config(preset, {"aux": "neighbours"})
    prov = filter_cli.run(cfg, quality=True)
    table = capsys.readouterr().out
    assert "| caption |" in table and prov["images"] > 0
    assert quality.KINDS[0] in table

    # the notebook steps through the same chain; after compare every stage finds its outputs and reuses them
    import nbformat

    from ltkit import notebooks

    src = ROOT / "notebooks" / "photos.ipynb"
    clean = nbformat.read(src, as_version=4)
    assert all(not c.outputs and c.execution_count is None for c in clean.cells if c.cell_type == "code")
    assert notebooks.parameter_names(clean) == ["preset", "seeds", "overrides", "train"]
    done = notebooks.execute(src, tmp_path / "executed.ipynb", {"preset": str(preset), "seeds": [0]}, cwd=ROOT,
                             progress=False)
    outs = [o for c in done.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    shown = json.dumps([o.get("data", {}).get("text/markdown", "") for o in outs])
    assert "Tab. 6 layout" in shown and "+ Direct Classifier" in shown


def test_paired_rule_calls_only_differences_beyond_two_standard_errors():
    from ltkit import paired

    m, se, called = paired.paired([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert m == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12) and called
    m, se, called = paired.paired([1.0, -1.0, 2.0], [0.0, 0.0, 0.0])
    assert m == pytest.approx(2 / 3) and se == pytest.approx(np.std([1, -1, 2], ddof=1) / np.sqrt(3)) and not called
    assert [paired.verdict(1, True, 1), paired.verdict(-1, True, 1), paired.verdict(1, False, 1),
            paired.verdict(-1, True, 0)] == ["supports", "contradicts", "undecided", "called"]
    rows = {name: [{"overall": 0.5 + 0.01 * i + 0.001 * s, "few": 0.2} for s in range(3)]
            for i, name in enumerate(["Baseline", "+ Random Category", "+ Neighbor Category", "+ Neighbor Silencing",
                                      "+ Direct Classifier"])}
    text = paired.claims_table(rows)
    assert "| C1 neighbour categories help | + Neighbor Category − Baseline | overall | +2.0, +2.0, +2.0 | +2.0 ± 0.0 | supports |" in text
    assert "| few | +0.0, +0.0, +0.0 | +0.0 ± 0.0 | undecided |" in text
    # the testbed's rule: a paired t-test at two-sided 0.05 needs 4.30 SE at 3 seeds, not 2
    assert paired.threshold(3, "t05") == pytest.approx(4.303, abs=1e-3) and paired.threshold(5, "t05") == pytest.approx(2.776, abs=1e-3)
    d = [3.0, 1.0, 2.0]  # mean 2, SE 0.577: 3.5 SE, called by 2se, not by the t-test
    assert paired.paired(d, [0, 0, 0], "2se")[2] and not paired.paired(d, [0, 0, 0], "t05")[2]


def test_the_llm_backend_is_the_alternative_and_is_never_run_unasked(built, monkeypatch):
    """neighbours.backend=openai on the photo preset: a real HTTP round trip to a fake OpenAI server writes
    its own map; the chain that compare runs refuses to start a paid search by itself."""
    import dataclasses

    from fake_llm import FakeLLM

    from ltkit import pipeline
    from ltkit.neighbours.cli import search_config

    cfg, _ = built
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-photos")
    llm = dataclasses.replace(cfg, aux="neighbours", neighbours=dataclasses.replace(
        cfg.neighbours, backend="openai", model="m", retries=0))
    with pytest.raises(UserError, match="backend 'openai' is not run automatically"):
        pipeline.prepare(llm)
    with FakeLLM("good") as srv:
        res = search_config(dataclasses.replace(llm, neighbours=dataclasses.replace(llm.neighbours, base_url=srv.url)))
        assert len(srv.requests) == 3  # one per target class
    kept = [r.aux_name for r in res.rows if r.status == "kept"]
    assert kept and all(n.split(" ", 1)[1] in ("airplane", "automobile", "cat") for n in kept)


def test_each_world_keeps_the_rule_fixed_before_its_runs():
    from ltkit import paired, report

    assert paired.CLAIM_SETS["photos"].rule == "2se"  # docs/testbed_photos.md
    assert paired.CLAIM_SETS["builtin"] == (report.COMPONENTS, paired.CLAIMS, "t05", ("overall", "few"))  # docs/results.md
    assert paired.CLAIM_SETS["testbed"].rule == "t05"  # docs/testbed.md
    assert paired.CLAIM_SETS["curation"].rule == "t05" and "many" in paired.CLAIM_SETS["curation"].keys  # Fig. 5c is Many
    d = [0.6, 0.7, 0.8]
    assert paired.paired(d, [0.5, 0.55, 0.75], "2se")[2] and not paired.paired(d, [0.5, 0.55, 0.75], "t05")[2]
