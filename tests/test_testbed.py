"""The testbed's pieces (docs/testbed.md): targets in some families, a pre-training part no auxiliary
search may return, an encoder trained on that part only, RD disjoint from SD, SD with shuffled parents,
and an encoder that is the same whatever torch's thread count."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkit.artifacts.neighbour_map import load_neighbour_map
from ltkit.auxiliary import build_aux, shuffled_parents
from ltkit.config import load_config
from ltkit.data import world_data
from ltkit.encoder import pool_options
from ltkit.errors import UserError
from ltkit.pipeline import world_map
import ltkit.pretrain as P
from ltkit.world import PRESETS, WorldConfig, load_world

ROOT = Path(__file__).resolve().parents[1]
CARVE = WorldConfig(num_targets=8, head=30, imbalance=10.0, val_per_class=2, test_per_class=2, pool_per_class=6,
                    target_families=3, pretrain_families=5)


@pytest.fixture(scope="module")
def carved(world_cache):
    """A small world with targets in 3 families and 5 of the other 25 families reserved for pre-training."""
    return load_world(CARVE, world_cache)


def test_existing_presets_keep_their_cache_keys():
    """The new world fields leave the cached worlds of the existing presets where they were."""
    keys = {k: PRESETS[k].key() for k in ("builtin", "builtin-tiny", "builtin-wide")}
    assert keys == {"builtin": "9f6c7c3b7597", "builtin-tiny": "91b2d3d4913f", "builtin-wide": "8895cc56c73e"}
    assert PRESETS["testbed"].key() not in keys.values()


def test_targets_and_pretraining_part_are_in_separate_families(carved):
    target_fams = {carved.classes[t].family for t in carved.targets}
    assert len(target_fams) == 3 and len(carved.targets) == 8
    held = carved.pretrain_classes
    held_fams = {carved.classes[i].family for i in held}
    assert len(held_fams) == 5 and not held_fams & target_fams
    assert len(held) == 5 * 12  # whole families: 4 colours x 3 textures each
    assert not np.isin(carved.targets, held).any()
    with pytest.raises(ValueError, match="only 25 families hold no target"):
        load_world(WorldConfig(num_targets=8, target_families=3, pretrain_families=26))


def test_search_taxonomy_leaves_out_the_pretraining_part(carved, tiny_world):
    names = set(carved.search_taxonomy.classes)
    held = {carved.all_names[i] for i in carved.pretrain_classes}
    assert names == set(carved.all_names) - held
    assert tiny_world.search_taxonomy is tiny_world.taxonomy  # no reserved part: the same taxonomy


def _sha(images: np.ndarray) -> set[bytes]:
    return {hashlib.sha1(np.ascontiguousarray(x).tobytes()).digest() for x in images}


def test_disjoint_pretraining_sees_only_the_pretraining_part(carved, tiny_world):
    images, labels, ids = P.pretraining_set(carved, "disjoint")
    held = set(carved.pretrain_classes.tolist())
    assert set(ids.tolist()) == held
    shown = np.where(carved.pool_true >= 0, carved.pool_true, carved.pool_query)
    keep = np.isin(carved.pool_query, list(held)) & np.isin(shown, list(held))
    assert np.array_equal(images, carved.pool_images[keep])
    assert np.array_equal(ids[labels], carved.pool_query[keep])
    # off-topic items of the part that show another class are left out, so some items are
    dropped = np.isin(carved.pool_query, list(held)) & ~keep
    assert dropped.any() and (carved.pool_true[dropped] >= 0).all()
    outside = ~np.isin(shown, list(held))  # every image of a target or auxiliary class
    assert not _sha(images) & _sha(carved.pool_images[outside])
    with pytest.raises(UserError, match="reserves no pre-training"):
        P.pretraining_set(tiny_world, "disjoint")


def test_pool_spec_names_the_classes_and_keeps_old_keys(carved):
    assert pool_options("pool:epochs=6,classes=disjoint") == {"epochs": 6, "classes": "disjoint"}
    assert pool_options("pool") == {}
    for bad in ("pool:classes=targets", "pool:epochs=x", "pool:lr=1"):
        with pytest.raises(UserError, match="expected pool:epochs=N"):
            pool_options(bad)
    assert P.pool_settings(classes="open") == P.pool_settings()  # the default adds nothing to the key
    assert P.encoder_path(carved, classes="disjoint") != P.encoder_path(carved)


def _aux(carved, tmp_path, aux: str):
    cfg = load_config(ROOT / "configs" / "builtin-tiny.yaml",
                      {"out_dir": str(tmp_path), "aux": aux, "k": 3, "aux_ratio": "1:1:3", "neighbours.out_dir": str(tmp_path / "nb")})
    world_map(cfg, world_data(carved), carved)  # what the train command builds first, from this world
    return build_aux(cfg, world_data(carved), carved)


def test_auxiliary_kinds_avoid_the_pretraining_part(carved, tmp_path):
    held = {carved.all_names[i] for i in carved.pretrain_classes}
    _, sd_parent, sd = _aux(carved, tmp_path, "neighbours")
    nmap = load_neighbour_map(tmp_path / "nb" / "neighbours.csv", len(carved.targets))
    _, rd_parent, rd = _aux(carved, tmp_path, "random-disjoint")
    _, _, rd_any = _aux(carved, tmp_path, "random")
    assert sd and len(rd) == len(sd) and np.array_equal(rd_parent, sd_parent)  # SD's places, category by category
    assert not set(rd) & set(nmap.aux_names)  # Jaccard 0 with the whole neighbour map
    for names in (sd, rd, rd_any, nmap.aux_names):
        assert not set(names) & held and not set(names) & set(carved.class_names)


def test_shuffled_parents_keep_categories_and_move_every_parent(carved, tmp_path):
    _, sd_parent, sd = _aux(carved, tmp_path, "neighbours")
    images, parent, names = _aux(carved, tmp_path, "neighbours-shuffled")
    assert names == sd and len(images) > 0
    assert (parent != sd_parent).all()
    assert np.array_equal(np.bincount(parent, minlength=8), np.bincount(sd_parent, minlength=8))


def test_shuffled_parents_are_seeded_and_refuse_a_dominant_parent():
    parent = np.repeat(np.arange(6), [1, 2, 3, 1, 4, 2])
    a, b = shuffled_parents(parent, 0), shuffled_parents(parent, 0)
    assert np.array_equal(a, b) and (a != parent).all()
    assert np.array_equal(np.sort(a), np.sort(parent))
    assert any(not np.array_equal(shuffled_parents(parent, s), a) for s in range(1, 6))
    with pytest.raises(UserError, match="more than half"):
        shuffled_parents(np.array([0, 0, 0, 1]), 0)


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu")


@pytest.mark.slow
def test_pool_encoder_is_pinned_to_one_thread(carved, monkeypatch, tmp_path):
    """Trained under 2 threads or 1, the same bytes; the caller's thread count is restored; a stale copy retrains."""
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path))  # the small world's pool: half of builtin-tiny's, 7 steps an epoch
    outer = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        path = P.pool_pretrained(carved, epochs=1, batch_size=256)
        assert torch.get_num_threads() == 2
        first = _weights(path)
        assert P.read_json(path.with_suffix(".json"))["threads"] == 1
        torch.set_num_threads(1)
        P.pool_pretrained(carved, epochs=1, batch_size=256, force=True)
        second = _weights(path)
    finally:
        torch.set_num_threads(outer)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    meta = P.read_json(path.with_suffix(".json"))
    P.write_json(path.with_suffix(".json"), {**meta, "threads": 2})  # as `make demo` cached it before the pin
    calls = []
    monkeypatch.setattr(P, "train_on_arrays", lambda *a, **k: calls.append(1) or [0.0])
    P.pool_pretrained(carved, epochs=1, batch_size=256)
    assert calls == [1]


def test_any_world_preset_is_a_dataset(tiny_world, monkeypatch):
    """`dataset: testbed` (a preset not named builtin*) loads its world like the builtin presets do."""
    import ltkit.data.datasets as D
    from ltkit.config import config_from_dict

    asked = []
    monkeypatch.setattr(D, "load_world", lambda cfg: asked.append(cfg) or tiny_world)
    data, world = D.build_target_data(config_from_dict({"dataset": "testbed"}))
    assert asked == [PRESETS["testbed"]] and world is tiny_world and data.num_classes == len(tiny_world.targets)
    with pytest.raises(UserError, match="unknown dataset 'nowhere'"):
        D.build_target_data(config_from_dict({"dataset": "nowhere", "data_root": "."}))
