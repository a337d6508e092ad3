"""The built-in world: determinism, hierarchy, long-tail counts, targets, pool noise and the cache."""
import re
from collections import Counter

import numpy as np
import pytest

from ltkit import world as W
from ltkit.data import exp_profile, profile_counts, shot_groups, world_data
from ltkit.errors import UserError
from ltkit.paths import cache_root
from ltkit.render import COLOURS
from ltkit.words import normalise
from ltkit.world import (FAMILIES, GROUPS, NOISE_KINDS, PRESETS, WorldConfig, all_classes,
                         choose_targets, generate, load_world, world_taxonomy)

# small enough to render in about a second (the pool still covers all 336 classes)
SMALL = WorldConfig(seed=3, num_targets=6, head=30, imbalance=10.0, val_per_class=2, test_per_class=2,
                    pool_per_class=2)


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def assert_same_world(a, b):
    assert a.config == b.config
    assert np.array_equal(a.targets, b.targets)
    assert np.array_equal(a.train_counts, b.train_counts)
    for s in ("train", "val", "test"):
        assert a.splits[s][0].dtype == b.splits[s][0].dtype == np.uint8
        assert np.array_equal(a.splits[s][0], b.splits[s][0]), s
        assert np.array_equal(a.splits[s][1], b.splits[s][1]), s
    assert np.array_equal(a.pool_images, b.pool_images)
    assert np.array_equal(a.pool_query, b.pool_query)
    assert np.array_equal(a.pool_true, b.pool_true)
    assert a.pool_captions == b.pool_captions
    assert a.pool_noise == b.pool_noise


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes(small):
    assert_same_world(small, generate(SMALL))


def test_other_seed_other_bytes(small):
    other = generate(WorldConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other.splits["train"][0].shape == small.splits["train"][0].shape
    assert not np.array_equal(other.splits["train"][0], small.splits["train"][0])
    assert not np.array_equal(other.pool_images, small.pool_images)
    assert other.pool_captions != small.pool_captions
    assert WorldConfig(seed=4).key() != WorldConfig(seed=3).key()
    assert WorldConfig(seed=3).key() == WorldConfig(seed=3).key()


def test_images_are_keyed_by_split_and_index(small):
    """More val images do not move the train or pool images: each image has its own RNG stream."""
    more_val = generate(WorldConfig(**{**SMALL.__dict__, "val_per_class": 3}))
    assert np.array_equal(more_val.splits["train"][0], small.splits["train"][0])
    assert np.array_equal(more_val.pool_images, small.pool_images)
    assert len(more_val.splits["val"][1]) == 3 * SMALL.num_targets


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="noise rates"):
        generate(WorldConfig(**{**SMALL.__dict__, "off_topic": 0.7, "junk": 0.4}))
    with pytest.raises(ValueError, match="num_targets"):
        choose_targets(WorldConfig(num_targets=337), all_classes())


# ---------------------------------------------------------------------------------------------
# hierarchy


def test_hierarchy_has_groups_families_and_lookalike_classes():
    classes, tax = all_classes(), world_taxonomy()
    assert len(FAMILIES) >= 24 and len(set(FAMILIES)) == len(FAMILIES)
    assert [c.index for c in classes] == list(range(len(classes)))
    names = [c.name for c in classes]
    assert len(set(names)) == len(names)  # every class has its own human name
    assert tax.classes == names
    assert tax.superclasses(1) == FAMILIES
    assert tax.superclasses(0) == list(GROUPS)
    per_family = Counter(c.family for c in classes)
    assert set(per_family) == set(FAMILIES) and min(per_family.values()) >= 12
    for c in classes:
        # three levels: group > family > class, and a human name that names its superclass
        assert tax.depth(c.name) == 2
        assert tax.superclass(c.name, 1) == c.family == tax.parent(c.name)
        assert c.family in GROUPS[tax.superclass(c.name, 0)]
        assert re.fullmatch(r"[a-z]+ [a-z]+ [a-z]+", c.name) and c.name.endswith(" " + c.family)
        assert c.colour in COLOURS


def test_siblings_are_lookalikes_of_one_family():
    classes, tax = all_classes(), world_taxonomy()
    by_name = {c.name: c for c in classes}
    for c in classes[::7]:
        sib = [by_name[s] for s in tax.siblings(c.name)]
        assert len(sib) >= 11 and all(s.family == c.family and s.name != c.name for s in sib)
        cousins = [by_name[s] for s in tax.cousins(c.name)]
        assert cousins and all(s.family != c.family for s in cousins)
        assert all(tax.superclass(s.name, 0) == tax.superclass(c.name, 0) for s in cousins)
    for fam in FAMILIES:
        members = [c for c in classes if c.family == fam]
        assert len({(c.colour, c.texture) for c in members}) == len(members)
        hues = sorted({COLOURS[c.colour] for c in members})
        # the family's colours are distinct neighbours on the wheel: they fit in a third of it
        gaps = np.diff(hues + [hues[0] + 360])
        assert len(hues) >= 4 and 360 - gaps.max() <= 130 and gaps.min() >= 14, (fam, hues)


def test_world_taxonomy_and_names(tiny_world):
    w = tiny_world
    assert w.all_names == [c.name for c in all_classes()]
    assert w.class_names == [w.classes[i].name for i in w.targets]
    for name, t in zip(w.class_names, w.targets):
        assert w.taxonomy.superclass(name, 1) == w.classes[t].family


# ---------------------------------------------------------------------------------------------
# long tail, splits, shot groups, targets


def test_tiny_world_long_tail_counts(tiny_world):
    cfg, w = PRESETS["builtin-tiny"], tiny_world
    c = w.train_counts
    assert c[0] == cfg.head and c[-1] == cfg.head / cfg.imbalance
    assert (np.diff(c) <= 0).all() and c[0] > c[len(c) // 2] > c[-1]
    assert np.array_equal(c, exp_profile(cfg.num_targets, cfg.head, cfg.imbalance))
    x, y = w.splits["train"]
    assert x.shape == (c.sum(), cfg.image_size, cfg.image_size, 3) and x.dtype == np.uint8
    assert np.array_equal(np.bincount(y, minlength=cfg.num_targets), c)
    for split, per in (("val", cfg.val_per_class), ("test", cfg.test_per_class)):
        assert np.array_equal(np.bincount(w.splits[split][1], minlength=cfg.num_targets),
                              [per] * cfg.num_targets), split


def test_images_vary_within_a_class(tiny_world):
    x, y = tiny_world.splits["train"]
    imgs = x[y == 0].astype(float)
    assert len({im.tobytes() for im in x[y == 0]}) == len(imgs)
    # mean absolute difference between two images of one class is large (position, colour, clutter...)
    assert np.abs(imgs[1:] - imgs[:-1]).mean() > 20


@pytest.mark.parametrize("counts", ["tiny", "default"])
def test_many_medium_few_all_exist(tiny_world, counts):
    if counts == "tiny":
        c = tiny_world.train_counts
    else:
        cfg = PRESETS["builtin"]
        c = profile_counts(cfg.profile, cfg.num_targets, cfg.head, cfg.imbalance)
        assert c[0] == 500 and c[-1] == 5 and len(c) == 100
    g = shot_groups(c)
    for k in ("many", "medium", "few"):
        assert (g == k).sum() >= 3, k
    if counts == "tiny":
        s = tiny_world.summary()
        assert (s["many"], s["medium"], s["few"]) == tuple(int((g == k).sum()) for k in ("many", "medium", "few"))


def test_targets_spread_over_families(tiny_world):
    classes = all_classes()
    fams = [classes[t].family for t in tiny_world.targets]
    assert len(set(fams)) == len(fams) == 24  # 24 targets, 24 different families
    t = choose_targets(PRESETS["builtin"], classes)
    assert len(set(t.tolist())) == 100
    per_family = Counter(classes[i].family for i in t)
    assert set(per_family) == set(FAMILIES)
    assert max(per_family.values()) - min(per_family.values()) <= 1


# ---------------------------------------------------------------------------------------------
# the pool and its noise

_NAME_RE = None


def named_classes(caption: str) -> set[int]:
    """World classes whose name the caption contains (case-insensitive, whole words)."""
    global _NAME_RE
    if _NAME_RE is None:
        names = [c.name for c in all_classes()]
        _NAME_RE = (re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b"),
                    {n: i for i, n in enumerate(names)})
    rx, index = _NAME_RE
    return {index[m] for m in rx.findall(normalise(caption))}


@pytest.fixture(scope="module")
def pool(tiny_world):
    w = tiny_world
    return w, np.array(w.pool_noise), [named_classes(c) for c in w.pool_captions]


def test_pool_layout(pool):
    w, noise, _ = pool
    cfg = PRESETS["builtin-tiny"]
    n = len(w.classes) * cfg.pool_per_class
    assert w.pool_images.shape == (n, cfg.image_size, cfg.image_size, 3) and w.pool_images.dtype == np.uint8
    assert len(w.pool_captions) == len(w.pool_noise) == len(w.pool_query) == len(w.pool_true) == n
    assert np.array_equal(w.pool_query, np.repeat(np.arange(len(w.classes)), cfg.pool_per_class))
    assert set(noise) <= set(NOISE_KINDS)
    s = w.summary()
    assert s["pool"] == n and abs(sum(s["pool_noise"].values()) - 1) < 1e-3


def test_pool_noise_rates_match_the_config(pool):
    w, noise, _ = pool
    cfg = PRESETS["builtin-tiny"]
    n = len(noise)
    # a near-duplicate needs a target of the query's family; elsewhere it falls back to clean
    target_fams = {w.classes[t].family for t in w.targets}
    covered = np.mean([w.classes[q].family in target_fams for q in w.pool_query])
    want = {k: getattr(cfg, k) for k in NOISE_KINDS[1:]}
    want["near_duplicate"] *= covered
    want["clean"] = 1 - sum(getattr(cfg, k) for k in NOISE_KINDS[1:]) + cfg.near_duplicate * (1 - covered)
    for kind, p in want.items():
        observed = float(np.mean(noise == kind))
        tol = 4 * np.sqrt(p * (1 - p) / n)  # 4 binomial standard deviations
        assert abs(observed - p) <= tol, (kind, observed, p, tol)
    for kind in NOISE_KINDS:
        assert (noise == kind).sum() > 0, kind


def test_clean_items_show_and_name_the_query(pool):
    w, noise, named = pool
    for j in np.flatnonzero(noise == "clean"):
        assert w.pool_true[j] == w.pool_query[j] and named[j] == {w.pool_query[j]}


def test_off_topic_items_show_and_name_one_class(pool):
    w, noise, named = pool
    idx = np.flatnonzero(noise == "off_topic")
    for j in idx:
        assert w.pool_true[j] >= 0 and named[j] == {w.pool_true[j]}
    # mostly from far away: other families
    other = [w.classes[w.pool_true[j]].family != w.classes[w.pool_query[j]].family for j in idx]
    assert np.mean(other) > 0.8


def test_off_topic_names_another_class(pool):
    w, noise, named = pool
    for j in np.flatnonzero(noise == "off_topic"):
        assert w.pool_true[j] != w.pool_query[j] and w.pool_query[j] not in named[j]


def test_mislabelled_items_show_a_sibling(pool):
    w, noise, named = pool
    idx = np.flatnonzero(noise == "mislabelled")
    assert len(idx)
    for j in idx:
        q, t = w.classes[w.pool_query[j]], w.classes[w.pool_true[j]]
        assert named[j] == {q.index}
        assert t.name in w.taxonomy.siblings(q.name)


def test_uncaptioned_items_name_no_class(pool):
    w, noise, named = pool
    idx = np.flatnonzero(noise == "uncaptioned")
    assert len(idx)
    for j in idx:
        assert named[j] == set() and w.pool_true[j] == w.pool_query[j]
        assert not any(f in normalise(w.pool_captions[j]).split() for f in FAMILIES)


def test_junk_is_exactly_the_items_without_a_class(pool):
    w, noise, named = pool
    assert np.array_equal(w.pool_true == -1, noise == "junk")
    for j in np.flatnonzero(noise == "junk"):
        assert named[j] == {w.pool_query[j]}


def _nearest_aligned_rms(img: np.ndarray, candidates: np.ndarray) -> float:
    """Smallest RMS pixel distance between img, undone for a shift of up to 2 px and a mirror, and candidates."""
    variants = []
    for flip in (False, True):
        f = img[:, ::-1] if flip else img
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                variants.append(np.roll(f, (-dy, -dx), (0, 1)))
    v = np.stack(variants).reshape(len(variants), -1).astype(np.float64)
    c = candidates.reshape(len(candidates), -1).astype(np.float64)
    d2 = (v * v).sum(1)[:, None] + (c * c).sum(1)[None] - 2 * v @ c.T
    return float(np.sqrt(max(d2.min(), 0) / v.shape[1]))


def test_near_duplicates_copy_a_target_train_image(pool):
    w, noise, named = pool
    x, y = w.splits["train"]
    world_label = w.targets[y]
    idx = np.flatnonzero(noise == "near_duplicate")
    assert len(idx)
    for j in idx:
        q = w.classes[w.pool_query[j]]
        assert named[j] == {q.index}
        assert w.pool_true[j] in w.targets and w.classes[w.pool_true[j]].family == q.family
        same = x[world_label == w.pool_true[j]]
        assert _nearest_aligned_rms(w.pool_images[j], same) < 8, j  # pixel noise of std 4, nothing more
    # the check is not vacuous: a clean render of a target class is far from every train image of it
    clean = [j for j in np.flatnonzero(noise == "clean") if w.pool_query[j] in w.targets][:20]
    assert len(clean) == 20
    for j in clean:
        assert _nearest_aligned_rms(w.pool_images[j], x[world_label == w.pool_query[j]]) > 20, j


# ---------------------------------------------------------------------------------------------
# the cache and the LTData view


def test_load_world_caches_once_and_loads_identical_data(small, tmp_path, monkeypatch):
    first = load_world(SMALL, tmp_path)
    folder = tmp_path / "world" / SMALL.key()
    assert (folder / "meta.json").is_file() and (folder / "arrays.npz").is_file()
    assert [p.name for p in (tmp_path / "world").iterdir()] == [SMALL.key()]  # no temporary folder left
    assert_same_world(first, small)
    stamp = (folder / "arrays.npz").stat().st_mtime_ns

    def no_generate(cfg):
        raise AssertionError("load_world regenerated a cached world")

    monkeypatch.setattr(W, "generate", no_generate)
    second = load_world(SMALL, tmp_path)
    assert (folder / "arrays.npz").stat().st_mtime_ns == stamp
    assert_same_world(second, small)
    assert second.summary() == small.summary()
    # another config is another folder
    with pytest.raises(AssertionError, match="regenerated"):
        load_world(WorldConfig(**{**SMALL.__dict__, "seed": 5}), tmp_path)


def test_cache_root_defaults_to_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("LTKIT_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "ltkit"


def test_load_world_uses_ltkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    load_world(SMALL)
    assert (tmp_path / "world" / SMALL.key() / "meta.json").is_file()


def test_tiny_world_is_the_preset_and_cached(tiny_world, world_cache):
    assert tiny_world.config == PRESETS["builtin-tiny"]
    assert (world_cache / "world" / PRESETS["builtin-tiny"].key() / "meta.json").is_file()
    s = tiny_world.summary()
    assert s["targets"] == 24 and s["families"] == len(FAMILIES) >= 24 and s["world_classes"] == 336


def test_world_data_is_a_valid_ltdata(tiny_world):
    d = world_data(tiny_world)
    assert d.check() is d
    assert d.class_names == tiny_world.class_names and d.num_classes == 24
    assert np.array_equal(d.train_counts, tiny_world.train_counts)
    assert len(d.val) == 24 * 5 and len(d.test) == 24 * 10
    assert d.taxonomy.classes == d.class_names
    im = d.test.load(7)
    assert im.mode == "RGB" and im.size == (32, 32)
    assert np.array_equal(np.asarray(im), tiny_world.splits["test"][0][7])


# ---------------------------------------------------------------------------------------------
# the wide preset


def test_wide_preset_keeps_builtin_task_in_a_wider_world():
    wide, base = PRESETS["builtin-wide"], PRESETS["builtin"]
    classes = all_classes(wide)
    assert len(classes) == len(FAMILIES) * len(COLOURS) * 6 == 2016
    assert len({c.name for c in classes}) == len(classes)
    assert [c.name for c in all_classes(base)] == [c.name for c in all_classes()]  # builtin unchanged
    assert base.key() == WorldConfig().key()
    # the same target task: class count and profile; the targets are drawn from the wider world
    for k in ("num_targets", "head", "imbalance", "profile", "val_per_class", "test_per_class", "pool_per_class"):
        assert getattr(wide, k) == getattr(base, k), k
    tax = world_taxonomy(classes)
    assert all(len(tax.siblings(c.name)) == 71 for c in classes[:: 97])
    with pytest.raises(ValueError, match="colours_per_family"):
        all_classes(WorldConfig(colours_per_family=13))


def test_wide_preset_has_five_open_classes_per_neighbour_category(tmp_path):
    """The rule fixed before any run: open classes >= 5 x the neighbour categories the search keeps (k = 5)."""
    from ltkit.budget import aux_budget
    from ltkit.neighbours.backends import TaxonomyBackend
    from ltkit.artifacts.neighbour_map import load_neighbour_map
    from ltkit.neighbours.search import search_neighbours
    from ltkit.sampling import select_auxiliary

    def kept(cfg):
        classes = all_classes(cfg)
        names = [classes[t].name for t in choose_targets(cfg, classes)]
        counts = profile_counts(cfg.profile, cfg.num_targets, cfg.head, cfg.imbalance)
        out = tmp_path / cfg.key()
        search_neighbours(TaxonomyBackend(world_taxonomy(classes), seed=0), names, counts, out, k=5)
        nmap = load_neighbour_map(out / "neighbours.csv", len(names))
        return len(classes) - len(names), int(select_auxiliary(nmap.aux_parent, aux_budget(counts, 5)).sum())

    open_wide, used_wide = kept(PRESETS["builtin-wide"])
    assert open_wide >= 5 * used_wide, (open_wide, used_wide)
    open_base, used_base = kept(PRESETS["builtin"])
    assert open_base < 2 * used_base  # why builtin cannot separate RD from SD


def test_unwritable_cache_is_refused_before_rendering(tmp_path, monkeypatch):
    """A cache path that cannot hold a world is named at once, not after a minute of rendering."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(W, "generate", lambda cfg: pytest.fail("rendered before checking the cache"))
    with pytest.raises(UserError, match=f"world cache {re.escape(str(blocker))}.*LTKIT_CACHE"):
        load_world(SMALL, blocker)
