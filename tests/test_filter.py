"""Filtering a crawl: caption modes, the similarity window at its bounds, the leak check, the feature
cache, the saved accepted set the trainer reads, the quality table, the tuner driven in code, the CLI."""
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ltkit import artifacts
from ltkit.curate import filter as flt, quality
from ltkit.curate.leak import LeakScores, min_hamming, phash
from ltkit.data import ArrayImages, FileImages, LTData
from ltkit.encoder import Encoder, encode_cached
from ltkit.render import render
from ltkit.world import all_classes

CLASSES = all_classes()


class PixelNet(nn.Module):
    """A known feature: the 8x8 average-pooled image (192 numbers) minus its mean, so cosine is a correlation."""

    num_features = 192

    def forward_features(self, x):
        return nn.functional.adaptive_avg_pool2d(x, 8)

    def forward_head(self, x, pre_logits=True):
        x = x.flatten(1)
        return x - x.mean(1, keepdim=True)


def pixel_encoder() -> Encoder:
    from torchvision.transforms import ToTensor

    return Encoder(PixelNet(), ToTensor(), "pixels", batch_size=16, device=torch.device("cpu"))


def _imgs(cls: int, n: int, split: str) -> np.ndarray:
    return np.stack([render(CLASSES[cls], np.random.default_rng([cls, {"train": 0, "val": 1, "test": 2}[split], i])) for i in range(n)])


def _target() -> LTData:
    """Two target classes (a red and a blue shape), 12 train, 4 val and 4 test images each."""
    cls = [0, 200]
    sets = {s: ArrayImages(np.concatenate([_imgs(c, n, s) for c in cls]), np.repeat([0, 1], n))
            for s, n in (("train", 12), ("val", 4), ("test", 4))}
    return LTData("toy", [CLASSES[c].name for c in cls], sets["train"], sets["val"], sets["test"])


def _write_crawl(root: Path, target: LTData, items: list[tuple[str, int, int, np.ndarray, str, str]]) -> Path:
    """items: (aux name, aux id, target id, image, caption, truth) -> images + manifest.jsonl."""
    import hashlib
    import io

    rows = []
    for n, (name, aux, tid, img, cap, truth) in enumerate(items):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=95)
        sha = hashlib.sha256(buf.getvalue()).hexdigest()
        rel = f"images/{aux:05d}/{sha}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(buf.getvalue())
        rows.append(dict(key=f"k{n}", aux_id=aux, aux_name=name, target_id=tid, target_name=target.class_names[tid],
                         query=name, engine="pool", url=f"http://127.0.0.1/{n}.jpg", caption=cap, status="ok",
                         reason="", path=rel, sha256=sha, width=32, height=32, truth=truth))
    rows.append(dict(key="failed", aux_id=2, aux_name="x", target_id=0, status="error", reason="http_404"))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A crawl of 3 auxiliary classes: look-alikes, a caption near-miss, junk, and a copy of a test image."""
    root = tmp_path_factory.mktemp("crawl")
    target = _target()
    sib0, sib1, far = CLASSES[1].name, CLASSES[201].name, CLASSES[100].name  # siblings of targets 0, 1; unrelated
    rng = np.random.default_rng(0)
    items = [(sib0, 2, 0, render(CLASSES[1], np.random.default_rng([5, i])), f"a photo of a {sib0}", "clean")
             for i in range(6)]
    items += [(sib0, 2, 0, render(CLASSES[1], np.random.default_rng([6, 0])), sib0.replace("circle", "circles!"),
               "clean"),
              (sib0, 2, 0, render(CLASSES[1], np.random.default_rng([6, 1])), sib0.replace("circle", "circlet"),
               "uncaptioned")]  # caption near-miss: 'circlet' is not 'circle'
    items += [(sib1, 3, 1, render(CLASSES[201], np.random.default_rng([7, i])), f"{sib1} icon", "clean") for i in range(5)]
    leak = target.test.images[5][:, ::-1]  # a mirrored copy of test image 5 (re-encoded as JPEG below)
    items += [(sib1, 3, 1, np.ascontiguousarray(leak), f"{sib1} icon vector", "near_duplicate"),
              (sib1, 3, 1, (rng.uniform(0, 255, (32, 32, 3))).astype(np.uint8), f"{sib1}", "junk")]
    items += [(far, 4, 0, render(CLASSES[100], np.random.default_rng([8, i])), f"{far} png", "clean") for i in range(3)]
    _write_crawl(root, target, items)
    scores = flt.score_crawl(root, target, pixel_encoder(), cache_dir=root / "cache")
    return root, target, scores


def test_caption_modes_and_near_miss():
    name = "teal striped hexagon"
    assert flt.caption_match("HD wallpaper: Teal-Striped Hexagons!", name, "phrase")
    assert flt.caption_match("buy teal_striped hexagon sticker", name, "phrase")
    assert not flt.caption_match("teal striped hexagram", name, "phrase")  # near-miss: another word
    assert not flt.caption_match("teal hexagon, striped", name, "phrase")
    assert flt.caption_match("teal hexagon, striped", name, "words")
    assert not flt.caption_match("teal hexagon", name, "words")
    assert flt.caption_match("IMG_0042.jpg", name, "off")
    assert not flt.caption_match("", name, "phrase")
    with pytest.raises(ValueError, match="caption mode"):
        flt.caption_match("x", name, "fuzzy")


def _scores_with(cos, n_classes=1):
    rows = [dict(key=str(i), aux_id=2 + i % n_classes, aux_name=f"c{i % n_classes}", target_id=0, target_name="t",
                 path="", sha256="", caption="") for i in range(len(cos))]
    n = len(cos)
    leak = LeakScores(np.full(n, 64), np.zeros(n, int), np.zeros(n, np.float32), np.zeros(n, int), np.array(["test"]),
                      np.array([0]))
    cap = {m: np.ones(n, bool) for m in flt.CAPTION_MODES}
    return flt.FilterScores(Path("."), rows, cap, np.asarray(cos, np.float32), leak, "known", "known", 2)


def test_window_is_strict_at_both_bounds():
    """Cosines just inside each bound are kept, on or just outside are dropped (float32 features)."""
    cos = [0.6999, 0.7, 0.7001, 0.85, 0.9799, 0.98, 0.9801]
    d = flt.decide(_scores_with(cos), flt.FilterConfig(gamma1=0.7, gamma2=0.98))
    assert d.keep.tolist() == [False, False, True, True, True, False, False]
    assert d.reasons() == ["gamma1", "gamma1", "", "", "", "gamma2", "gamma2"]
    assert flt.decide(_scores_with(cos), flt.FilterConfig(gamma1=0.6, gamma2=0.99)).keep.all()


def test_settings_errors_name_the_field():
    with pytest.raises(ValueError, match="gamma1/gamma2"):
        flt.FilterConfig(gamma1=0.9, gamma2=0.8).check()
    with pytest.raises(ValueError, match="caption_mode"):
        flt.FilterConfig(caption_mode="any").check()
    with pytest.raises(ValueError, match="leak_splits"):
        flt.FilterConfig(leak_splits=("tset",)).check()


def test_phash_matches_copies_not_other_images():
    img = render(CLASSES[3], np.random.default_rng(0))
    other = render(CLASSES[3], np.random.default_rng(1))
    a = phash(ArrayImages(np.stack([img, img[:, ::-1], other]), [0, 0, 0]))
    m = phash(ArrayImages(img[None], [0]), mirror=True)
    d, i = min_hamming(a, m)
    assert d[1] == 0 and d[0] > 0 and d[2] > 8  # the mirror hash finds the flipped copy exactly


def test_planted_test_duplicate_is_caught(toy):
    root, target, scores = toy
    d = flt.decide(scores, flt.FilterConfig(caption_mode="phrase"))
    truth = np.array(scores.truth)
    assert d.leak[truth == "near_duplicate"].all() and not d.leak[truth != "near_duplicate"].any()
    i = int(np.flatnonzero(truth == "near_duplicate")[0])
    assert d.leak_split[i] == "test" and scores.leak.ref_index[scores.leak.hamming_ref[i]] == 5 and scores.leak.hamming[i] <= 6
    # the check only looks at the splits it is told to: without test, nothing is caught
    other = flt.score_crawl(root, target, pixel_encoder(), cache_dir=root / "cache", leak_splits=("val",))
    assert not flt.decide(other, flt.FilterConfig()).leak.any()


def test_caption_filter_on_the_crawl(toy):
    _, _, scores = toy
    caps = [r["caption"] for r in scores.rows]
    miss = caps.index(next(c for c in caps if "circlet" in c))
    plural = caps.index(next(c for c in caps if "circles!" in c))
    assert not scores.caption["phrase"][miss] and not scores.caption["words"][miss] and scores.caption["off"][miss]
    assert scores.caption["phrase"][plural]
    assert len(scores) == 18  # the failed download is not an image


def test_features_are_cached_by_content(toy, tmp_path):
    root, target, _ = toy
    calls = []
    enc = pixel_encoder()
    counting = Encoder(enc.model, enc.transform, "pixels", 16, enc.device)
    orig = Encoder.__call__
    counting.__class__ = type("Counting", (Encoder,), {
        "__call__": lambda self, images: calls.append(len(images)) or orig(self, images)})
    rows = flt.read_crawl(root)
    images = flt.crawl_images(root, rows)
    a = encode_cached(counting, images, tmp_path)
    assert calls == [len({r["sha256"] for r in rows})]
    # the same files under other names (a moved crawl) and a threshold change: nothing is encoded again
    moved = tmp_path / "moved"
    for p in images.paths:
        (moved / p).parent.mkdir(parents=True, exist_ok=True)
        (moved / p).write_bytes((root / p).read_bytes())
    b = encode_cached(counting, FileImages(moved, images.paths, images.labels), tmp_path)
    assert calls == [len(rows)] and np.array_equal(a, b)
    c = encode_cached(counting, ArrayImages(target.val.images, target.val.labels), tmp_path)
    assert calls[-1] == len(target.val) and c.shape == (len(target.val), 192)


def test_filter_pilot_and_figures_share_one_encoder_and_one_cache(toy, tmp_path, monkeypatch):
    """One spec, built by each stage its own way: one key, one cache folder, features read back, not recomputed."""
    from ltkit.config import load_config
    from ltkit.data.taxonomy import Taxonomy
    from ltkit.encoder import build_encoder, feature_cache_dir
    from ltkit.pilot import Pool, class_features, pilot_encoder
    from ltkit.viz.runs import RunView

    root, target, _ = toy
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path))
    spec, images = "timm:ltkit_cnn_tiny@none", []

    def counted(enc):  # every image through the model's stem is one encoded image
        enc.model.stem.register_forward_hook(lambda m, x, y: images.append(len(x[0])))
        return enc

    # the filter: the crawl and the target's three splits, then the same again with a fresh encoder
    first = flt.score_crawl(root, target, counted(build_encoder(spec, device="cpu")))
    n_crawl = len({r["sha256"] for r in first.rows})
    assert sum(images) == n_crawl + len(target.train) + len(target.val) + len(target.test)
    again = flt.score_crawl(root, target, counted(build_encoder(spec, device="cpu")))
    assert sum(images) == n_crawl + len(target.train) + len(target.val) + len(target.test)  # all read back
    np.testing.assert_array_equal(again.cos, first.cos)
    assert [p.name for p in feature_cache_dir().iterdir()] == [first.encoder_key]

    # the figures: a run's model, here the same weights; reads what the filter wrote
    fig = counted(build_encoder(spec, device="cpu"))
    view = RunView("run", fig.model, target, None, np.zeros(0, int), [], fig.transform, 2, None)
    before = sum(images)
    train = view.features(target.train)
    assert view.encoder.key == first.encoder_key and sum(images) == before

    # the pilot: its config's model and pretrained settings are the same spec; its images keyed by pool place
    cfg = load_config(None, {"pilot.model": "ltkit_cnn_tiny", "pilot.pretrained": "none", "pilot.img_size": 32})
    pilot = counted(pilot_encoder(cfg))
    assert pilot.spec == spec and pilot.key == first.encoder_key
    by_class = {(c, s): np.flatnonzero(getattr(target, s).labels == c) for c in (0, 1) for s in ("train", "test")}
    made = []
    pool = Pool("toy", "toy0", list(target.class_names), Taxonomy({n: ("shape", n) for n in target.class_names}),
                lambda c, s: made.append((c, s)) or getattr(target, s).subset(by_class[c, s]),
                np.full(2, 12), np.full(2, 4))
    feats = class_features(pool, [0, 1], pilot, 12, 4, feature_cache_dir())
    assert sum(images) == before + 2 * (12 + 4) and len(made) == 4
    for c in (0, 1):
        np.testing.assert_allclose(feats[c][0], train[by_class[c, "train"]], rtol=1e-5, atol=1e-6)
    before = sum(images)
    cached = class_features(pool, [0, 1], counted(pilot_encoder(cfg)), 12, 4, feature_cache_dir())
    assert sum(images) == before and len(made) == 4  # neither encoded nor made again
    assert all(np.array_equal(cached[c][i], feats[c][i]) for c in (0, 1) for i in (0, 1))
    assert [p.name for p in feature_cache_dir().iterdir()] == [first.encoder_key]  # one cache, one folder


def test_save_writes_manifest_accepted_set_and_provenance(toy):
    from ltkit.artifacts.neighbour_map import load_neighbour_map

    root, target, scores = toy
    s = flt.FilterConfig(gamma1=0.5, gamma2=0.999)
    d = flt.decide(scores, s)
    prov = flt.save_accepted(scores, d)
    rows = [json.loads(x) for x in (root / flt.FILTER_MANIFEST).read_text().splitlines()]
    assert len(rows) == len(scores) and [r["keep"] for r in rows] == d.keep.tolist()
    assert all(r["reason"] == "" for r in rows if r["keep"]) and any(r["reason"].startswith("leak") or "leak:" in r["reason"]
                                                                     for r in rows)
    with open(root / artifacts.ACCEPTED) as f:
        acc = list(csv.DictReader(f))
    assert len(acc) == prov["kept"] == d.keep.sum() and prov["leaks"] == 1 and prov["leaks_by_split"] == {"test": 1}
    assert prov["settings"]["gamma1"] == 0.5 and prov["encoder"] == "pixels" and prov["time"]
    nmap = load_neighbour_map(root / artifacts.ACCEPTED_MAP, num_targets=2)
    assert nmap.num_aux == prov["aux_classes_kept"]
    assert sorted({int(r["label"]) for r in acc}) == list(range(2, 2 + nmap.num_aux))
    assert artifacts.load_settings(root) == s
    # the trainer's view: its own names (any case), labels L + position, names without images left out
    images, found = artifacts.load_accepted(root / artifacts.ACCEPTED, [nmap.aux_names[-1].upper(), "no such class"], 2)
    assert found == [0] and set(images.labels) == {2} and images.load(0).size == (32, 32)


def test_read_crawl_errors_name_file_and_line(tmp_path):
    rows = [dict(key="a", status="ok", aux_id=2, aux_name="x", target_id=0, target_name="t", caption="",
                 path="images/00002/a.jpg", sha256="")]
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match=r"manifest.jsonl: key a: field sha256"):
        flt.read_crawl(tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m ltkit crawl"):
        flt.read_crawl(tmp_path / "nothing")


def test_quality_table_counts_relevant_items(toy):
    _, _, scores = toy
    s = flt.FilterConfig(gamma1=-1.0, gamma2=1.0)
    rows = {r["filter"]: r for r in quality.quality_table(scores, s)}
    truth = np.array(scores.truth)
    rel = np.isin(truth, quality.RELEVANT)
    assert rows["none"]["precision"] == pytest.approx(rel.mean()) and rows["none"]["recall"] == 1
    # the caption filter drops exactly the uncaptioned near-miss: precision up, recall down by one item
    assert rows["caption"]["kept_uncaptioned"] == 0 and rows["caption"]["recall"] == pytest.approx(1 - 1 / rel.sum())
    assert rows["leak check"]["kept_near_duplicate"] == 0
    res = quality.sweep(scores, s, np.array([0.5, 0.9]), np.array([0.8, 0.99]))
    assert np.isnan(res["kept"][1, 0]) and res["kept"][0, 1] >= res["kept"][0, 0]
    assert "| all three |" in quality.markdown_quality(list(rows.values()))


def test_tuner_driven_in_code(toy):
    from ltkit.curate.tuner import Tuner

    root, _, scores = toy
    t = Tuner(scores, flt.FilterConfig())
    assert len(t.classes.options) == 3
    t.set(gamma1=0.5, gamma2=0.99)
    d = flt.decide(scores, flt.FilterConfig(gamma1=0.5, gamma2=0.99))
    assert t.counts()["kept"] == d.keep.sum() and "γ1=0.50 γ2=0.99" in t.applied.value
    assert f"kept <span class='ltkit-kept'>{int(d.keep.sum())}</span>" in t.applied.value
    leak_class = next(r["aux_name"] for r, tr in zip(scores.rows, scores.truth) if tr == "near_duplicate")
    t.set(cls=leak_class)
    shown = t.shown()
    assert t.counts()["cls_total"] == 7 and t.histogram.value[:4] == b"\x89PNG"
    assert {i for i, _ in shown} == set(np.flatnonzero(scores.aux_ids == t.classes.value).tolist())  # 7 < per_grid
    assert any("LEAK" in text for _, text in shown)
    t.set(search="circle")
    assert [name for name, _ in t.classes.options] and all("circle" in n for n, _ in t.classes.options)
    t.set(search="", sort="most affected")
    dropped = [c["total"] - c["kept"] for c in (t._counts[a] for _, a in t.classes.options)]
    assert dropped == sorted(dropped, reverse=True)
    t.set(caption_mode="off")
    assert t.counts()["kept"] >= d.keep.sum()
    saved = t.save()
    assert saved["settings"]["caption_mode"] == "off" and saved["kept"] == t.counts()["kept"]
    assert json.loads((root / artifacts.FILTER_JSON).read_text())["saved_by"] == "tuner"
    with pytest.raises(KeyError):
        t.set(cls="no such class")


def test_class_search_matches_whole_words():
    from ltkit.curate.tuner import matches

    assert matches("red", "red wavy star") and matches("stars WAVY", "red wavy star") and matches("", "anything")
    assert not matches("red", "checkered star") and not matches("wav", "red wavy star")


def test_tuner_explains_caption_modes_and_resets_to_the_preset(toy):
    from ltkit.curate.tuner import Tuner

    _, _, scores = toy
    more = int((scores.caption["words"] & ~scores.caption["phrase"]).sum())
    t = Tuner(scores, flt.FilterConfig(gamma1=0.4), preset=flt.FilterConfig(gamma1=0.7, gamma2=0.98))
    t.set(caption_mode="words")
    assert (f"accepts {more} captions" in t.note.value) if more else ("same images" in t.note.value)
    t.set(caption_mode="off")
    assert "every image passes" in t.note.value
    t.set(gamma1=0.2, gamma2=0.9)
    t.reset()
    assert (t.settings.gamma1, t.settings.gamma2, t.settings.caption_mode) == (0.7, 0.98, "phrase")
    assert t.counts()["kept"] == flt.decide(scores, flt.FilterConfig(gamma1=0.7, gamma2=0.98)).keep.sum()


@pytest.fixture()
def crawl_copy(toy, tmp_path):
    """The toy crawl's scores over a private copy of its folder (overrides and saves stay in the test)."""
    import shutil

    root, target, scores = toy
    shutil.copytree(root / "images", tmp_path / "images")
    shutil.copy(root / "manifest.jsonl", tmp_path / "manifest.jsonl")
    return replace(scores, crawl_dir=tmp_path)


def test_overrides_file_last_line_wins_and_bad_lines_name_the_file(tmp_path):
    from ltkit.curate.overrides import OVERRIDES, read_overrides, record_override
    from ltkit.errors import UserError

    assert read_overrides(tmp_path) == {}
    record_override(tmp_path, "a", "h1", "drop", by="alice")
    record_override(tmp_path, "b", "h2", "keep", by="bob")
    record_override(tmp_path, "a", "h1", "auto", by="alice")  # withdrawn: back to the thresholds
    o = record_override(tmp_path, "b", "h2", "drop")
    got = read_overrides(tmp_path)
    assert list(got) == ["b"] and got["b"].decision == "drop" and got["b"].by and got["b"].time.endswith("Z")
    assert len((tmp_path / OVERRIDES).read_text().splitlines()) == 4  # append-only: the history stays
    assert got["b"] == o
    with open(tmp_path / OVERRIDES, "a") as f:
        f.write(json.dumps(dict(key="c", decision="maybe")) + "\n")
    with pytest.raises(UserError, match=r"overrides.jsonl: override 5: decision 'maybe'"):
        read_overrides(tmp_path)
    (tmp_path / OVERRIDES).write_text('{"key": "a", "decision": "keep"}\nnot json\n{"key": "b", "decision": "keep"}\n')
    with pytest.raises(UserError, match=r"overrides.jsonl: line 2: invalid JSON"):
        read_overrides(tmp_path)


def test_override_wins_over_any_thresholds_and_is_counted_apart(crawl_copy):
    from ltkit.curate.overrides import read_overrides, record_override

    scores, root = crawl_copy, crawl_copy.crawl_dir
    s = flt.FilterConfig(gamma1=0.5, gamma2=0.999)
    auto = flt.decide(scores, s).keep
    up, down = int(np.flatnonzero(~auto)[0]), int(np.flatnonzero(auto)[0])
    record_override(root, scores.rows[up]["key"], scores.rows[up]["sha256"], "keep", by="alice")
    record_override(root, scores.rows[down]["key"], scores.rows[down]["sha256"], "drop", by="bob")
    other = next(i for i in range(len(scores)) if i not in (up, down))
    record_override(root, scores.rows[other]["key"], "another image", "drop", by="carol")  # other bytes: not applied
    for g1, g2 in ((0.5, 0.999), (-1.0, 1.0), (0.99, 0.999)):  # thresholds moved: the hand decisions stay
        d = flt.decide(scores, replace(s, gamma1=g1, gamma2=g2), read_overrides(root))
        assert d.keep[up] and not d.keep[down] and sorted(d.overrides) == sorted([up, down])
        free = np.ones(len(scores), bool)
        free[[up, down]] = False
        assert np.array_equal(d.keep[free], d.auto_keep[free])
    d = flt.decide(scores, s, read_overrides(root))
    prov = flt.save_accepted(scores, d)
    assert prov["overrides"]["keep"] == 1 and prov["overrides"]["drop"] == 1 and prov["overrides"]["changed"] == 2
    assert prov["kept"] == auto.sum() and prov["kept_by_thresholds"] == auto.sum()  # one in, one out
    assert prov["dropped_by_reason"]["override"] == 1
    rows = [json.loads(x) for x in (root / flt.FILTER_MANIFEST).read_text().splitlines()]
    assert (rows[up]["override"], rows[up]["override_by"], rows[up]["keep"], rows[up]["auto_keep"]) == ("keep", "alice", True, False)
    assert (rows[down]["override"], rows[down]["reason"], rows[down]["keep"]) == ("drop", "override", False)
    assert sum("override" in r for r in rows) == 2
    with open(root / artifacts.ACCEPTED) as f:
        accepted = {r["sha256"] for r in csv.DictReader(f)}
    assert scores.rows[up]["sha256"] in accepted and scores.rows[down]["sha256"] not in accepted


def test_a_click_in_the_tuner_flips_and_survives_a_threshold_move(crawl_copy):
    from ltkit.curate.overrides import OVERRIDES
    from ltkit.curate.tuner import Tuner

    scores = crawl_copy
    t = Tuner(scores, flt.FilterConfig(gamma1=0.5, gamma2=0.999), user="curator")
    slot = next(k for k, i in enumerate(t._slot_rows) if i >= 0)
    i = t._slot_rows[slot]
    was = bool(t.decisions.keep[i])
    t._cells[slot][1].click()  # what a click on the image does
    line = json.loads((scores.crawl_dir / OVERRIDES).read_text().splitlines()[-1])
    assert line["key"] == scores.rows[i]["key"] and line["by"] == "curator" and line["time"]
    assert line["decision"] == ("drop" if was else "keep") and bool(t.decisions.keep[i]) != was
    assert "by hand" in dict(t.shown())[i] and t.counts()["overrides"] == 1 and "override" in t.status.value
    t.set(gamma1=-1.0, gamma2=1.0)  # a window that keeps every captioned image
    assert bool(t.decisions.keep[i]) == (line["decision"] == "keep")
    saved = t.save()
    assert saved["overrides"]["keep"] + saved["overrides"]["drop"] == 1
    assert "wrote accepted.csv" in t.status.value and "Notebook 03 trains on accepted.csv" in t.status.value
    t.save()
    assert "replaced accepted.csv, accepted_neighbours.csv, filter_manifest.jsonl, filter.json" in t.status.value
    t.flip(i)  # twice: back to the thresholds
    last = json.loads((scores.crawl_dir / OVERRIDES).read_text().splitlines()[-1])
    assert last["decision"] == "auto" and t.counts()["overrides"] == 0


def _folder_dataset(target: LTData, tmp_path: Path) -> tuple[Path, Path]:
    """The toy target as an ImageFolder tree, and the weights file of a tiny timm model to encode it with."""
    from ltkit.models import create_model, save_weights

    data = tmp_path / "data"
    for split in ("train", "val", "test"):
        s = getattr(target, split)
        for i, (img, y) in enumerate(zip(s.images, s.labels)):
            p = data / split / target.class_names[y] / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(p)
    torch.manual_seed(0)
    return data, save_weights(create_model("ltkit_cnn_tiny", 0), tmp_path / "tiny.safetensors")


def test_filter_crawl_saved_thresholds_win_over_the_configs_and_clicks_over_both(crawl_copy, tmp_path, monkeypatch):
    """The filter stage in one call: the config's thresholds, the tuner's saved ones over them, a click over both."""
    from ltkit.config import load_config
    from ltkit.curate.overrides import record_override

    root = crawl_copy.crawl_dir
    data, weights = _folder_dataset(_target(), tmp_path / "folders")
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, {"dataset": "folders", "data_root": str(data),
                             "filter.encoder": f"timm:ltkit_cnn_tiny@{weights}", "filter.gamma1": 0.1, "filter.gamma2": 0.9999,
                             "filter.leak_cos": 1.0})  # an untrained model finds every image alike: leaks by hash only
    scores, d, s = flt.filter_crawl(root, cfg)  # nothing saved yet: the config's
    assert s == cfg.filter and d.settings == s and len(scores) == 18 and scores.crawl_dir == root
    assert np.array_equal(d.keep, flt.decide(scores, s).keep) and not d.keep[d.leak].any()
    saved = replace(cfg.filter, gamma1=-1.0, gamma2=1.0, caption_mode="off")  # the tuner's Save: all but the leak
    flt.save_accepted(scores, flt.decide(scores, saved))
    _, d_saved, s_saved = flt.filter_crawl(root, cfg)
    assert s_saved == saved and d_saved.keep.sum() == len(scores) - d_saved.leak.sum() > d.keep.sum()
    _, d_cfg, s_cfg = flt.filter_crawl(root, cfg, thresholds="config")  # what the command and training use
    assert s_cfg == cfg.filter and np.array_equal(d_cfg.keep, d.keep)
    i = int(np.flatnonzero(d.keep)[0])
    record_override(root, scores.rows[i]["key"], scores.rows[i]["sha256"], "drop", by="curator")
    for thresholds in ("saved", "config"):
        _, clicked, _ = flt.filter_crawl(root, cfg, thresholds=thresholds)
        assert not clicked.keep[i] and list(clicked.overrides) == [i]
    with pytest.raises(ValueError, match="thresholds='preset'"):
        flt.filter_crawl(root, cfg, thresholds="preset")


def test_cli_filters_a_folder_dataset(toy, tmp_path, monkeypatch, capsys):
    """`python -m ltkit filter` on an ImageFolder target with a timm model from a local weights file."""
    from ltkit import cli

    root, target, _ = toy
    data, weights = _folder_dataset(target, tmp_path)
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path / "cache"))
    args = ["filter", "--crawl", str(root), "dataset=folders", f"data_root={data}",
            f"filter.encoder=timm:ltkit_cnn_tiny@{weights}", "filter.gamma1=0.1", "filter.gamma2=0.9999"]
    assert cli.main(args + ["--quality", "--sweep", "sweep", "--figures", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "sweep.png").stat().st_size > 1000 and (tmp_path / "figs" / "sweep.pdf").exists()
    entry = json.loads((tmp_path / "figs" / "catalogue.json").read_text())["sweep"]
    assert "| all three |" in entry["numbers"] and entry["source"].startswith("`python -m ltkit filter --crawl ")
    prov = json.loads((root / artifacts.FILTER_JSON).read_text())
    assert prov["settings"]["gamma1"] == 0.1 and prov["dataset"] == "folders"
    assert f"kept {prov['kept']} of 18" in capsys.readouterr().out
    # a curator's click in the tuner (overrides.jsonl) counts in the command line's accepted set too
    from ltkit.curate.overrides import OVERRIDES, record_override

    kept = [json.loads(x) for x in (root / flt.FILTER_MANIFEST).read_text().splitlines()]
    row = next(r for r in kept if r["keep"])
    record_override(root, row["key"], row["sha256"], "drop", by="curator")
    try:
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        again = json.loads((root / artifacts.FILTER_JSON).read_text())
        assert again["kept"] == prov["kept"] - 1 and again["overrides"] == dict(keep=0, drop=1, changed=1, file=OVERRIDES)
        assert "manual overrides from overrides.jsonl: 0 kept, 1 dropped" in out
    finally:
        (root / OVERRIDES).unlink()
    for bad in (["--crawl", str(tmp_path / "nowhere")], ["filter.gamma1=0.99999"], ["filter.caption_mode=fuzzy"]):
        assert cli.main(args + bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1, err


def test_trainer_reads_the_accepted_set_only_with_its_thresholds(toy):
    from types import SimpleNamespace

    from ltkit.errors import UserError

    root, _, scores = toy
    s = flt.FilterConfig(gamma1=0.3, gamma2=0.99)
    flt.save_accepted(scores, flt.decide(scores, s), extra=dict(dataset="toy"))
    over = artifacts.training_overrides(root)
    assert over["aux_images"].endswith("accepted.csv") and over["filter"]["gamma1"] == 0.3
    names = [r["aux_name"] for r in scores.rows][::7]
    cfg = SimpleNamespace(aux_images=over["aux_images"], dataset="toy", filter=replace(s, cap=10))
    images, found = artifacts.accepted_for_config(cfg, names, 2)
    assert len(images) and set(images.labels) <= set(range(2, 2 + len(names)))
    with pytest.raises(UserError, match=r"filter.gamma1=0.3"):
        artifacts.accepted_for_config(SimpleNamespace(**{**vars(cfg), "filter": flt.FilterConfig()}), names, 2)
    with pytest.raises(UserError, match="dataset 'toy'"):
        artifacts.accepted_for_config(SimpleNamespace(**{**vars(cfg), "dataset": "builtin"}), names, 2)


def test_5_filter_save_is_all_or_nothing(toy, monkeypatch):
    """Issue 21 item 5: a save cut off after accepted.csv (full disk, kill) never pairs the new set with the
    old thresholds: every reader refuses until a save completes; an edited file is refused the same way."""
    import errno
    from types import SimpleNamespace

    from ltkit.errors import UserError

    root, _, scores = toy
    names = [r["aux_name"] for r in scores.rows]
    old, new = flt.FilterConfig(gamma1=0.3, gamma2=0.99), flt.FilterConfig(gamma1=0.6, gamma2=0.99)
    cfg = lambda s: SimpleNamespace(aux_images=str(root / flt.ACCEPTED), dataset="toy", filter=s)  # noqa: E731
    flt.save_accepted(scores, flt.decide(scores, old), extra=dict(dataset="toy"))
    before = (root / flt.ACCEPTED).read_bytes()
    assert len(artifacts.accepted_for_config(cfg(old), names, 2)[0])

    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(flt, "write_json", full_disk)  # the last write of the save fails
    with pytest.raises(OSError):
        flt.save_accepted(scores, flt.decide(scores, new), extra=dict(dataset="toy"))
    monkeypatch.undo()
    assert (root / flt.ACCEPTED).read_bytes() != before  # the new set is on disk ...
    for s in (old, new):  # ... and nothing reads it, with either thresholds
        with pytest.raises(UserError, match="filter.json"):
            artifacts.accepted_for_config(cfg(s), names, 2)
    with pytest.raises((UserError, FileNotFoundError), match="filter.json"):
        artifacts.training_overrides(root)
    flt.save_accepted(scores, flt.decide(scores, new), extra=dict(dataset="toy"))
    assert len(artifacts.accepted_for_config(cfg(new), names, 2)[0])
    (root / flt.ACCEPTED).write_bytes(before)  # an accepted set from another save, put back by hand
    with pytest.raises(UserError, match="not the file filter.json was saved with"):
        artifacts.accepted_for_config(cfg(new), names, 2)
    flt.save_accepted(scores, flt.decide(scores, new), extra=dict(dataset="toy"))


def test_aux_images_crawl_is_this_configs_own_filtered_crawl(tmp_path):
    """`aux_images: crawl` (the real-data presets) resolves to accepted.csv beside the neighbour map the same
    config writes, or in crawl.out_dir; a missing accepted set is one clear error, not a folder scan."""
    from ltkit.artifacts.layout import aux_images_path
    from ltkit.config import load_config
    from ltkit.artifacts.layout import neighbour_dir
    from ltkit.artifacts.layout import crawl_dir

    root = Path(__file__).resolve().parent.parent
    for preset in ("imagenet-lt", "inat18", "places-lt"):
        cfg = load_config(root / "configs" / f"{preset}.yaml", {"out_dir": str(tmp_path)})
        assert cfg.neighbours_csv is None and cfg.aux_images == "crawl"
        assert aux_images_path(cfg) == crawl_dir(cfg) / artifacts.ACCEPTED == neighbour_dir(cfg) / artifacts.ACCEPTED
        other = load_config(root / "configs" / f"{preset}.yaml", {"out_dir": str(tmp_path), "k": 3})
        assert aux_images_path(other) != aux_images_path(cfg)  # other settings, another crawl: never a stale one
    cfg = load_config(root / "configs" / "builtin-tiny.yaml", {"aux_images": "crawl", "crawl.out_dir": str(tmp_path)})
    assert aux_images_path(cfg) == tmp_path / artifacts.ACCEPTED
    assert aux_images_path(load_config(root / "configs" / "builtin-tiny.yaml", {"aux_images": "a/b.csv"})) == Path("a/b.csv")


def test_trainer_without_the_crawls_accepted_set_says_what_to_run(tiny_world, tmp_path):
    from ltkit.auxiliary import build_aux
    from ltkit.config import load_config
    from ltkit.data import world_data
    from ltkit.errors import UserError
    from ltkit.pipeline import world_map

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "configs" / "builtin-tiny.yaml", {"out_dir": str(tmp_path / "runs"), "aux": "neighbours",
                                                               "aux_images": "crawl", "crawl.out_dir": str(tmp_path)})
    world_map(cfg)  # the map only (the whole chain would make the accepted set too)
    with pytest.raises(UserError, match=rf"{tmp_path / artifacts.ACCEPTED}: no accepted set; run `python -m ltkit crawl`"):
        build_aux(cfg, world_data(tiny_world), tiny_world)


def test_tuner_keeps_an_open_preset_window_and_says_who_reads_the_save(crawl_copy):
    """The photos preset's window is open (-1, 1): the slider must reach it, not clamp it to the lowest cosine,
    so Save writes the preset's thresholds; the status line ends with the notebook's own `readers` sentence."""
    from ltkit.curate.tuner import Tuner

    scores = crawl_copy
    assert scores.cos.min() > -0.95  # else the old floor would have reached -1 too
    open_window = flt.FilterConfig(gamma1=-1.0, gamma2=1.0)
    t = Tuner(scores, open_window, readers="Training re-filters with the preset's thresholds.")
    assert t.window.min == -1.0 and t.window.value == (-1.0, 1.0) and t.settings.gamma1 == -1.0
    assert t.status.value.endswith("Training re-filters with the preset's thresholds.")
    saved = t.save()
    assert (saved["settings"]["gamma1"], saved["settings"]["gamma2"]) == (-1.0, 1.0)
    assert saved["kept"] == flt.decide(scores, open_window).keep.sum()
    assert t.status.value.startswith("saved ") and t.status.value.endswith("Training re-filters with the preset's thresholds.")
