"""The pool encoder (offline stand-in for DINOv2 / CLIP) never sees a target-class label or a target val/test image."""
import hashlib

import numpy as np
import pytest

import ltkit.pretrain as P


class Captured(Exception):
    """Stops pool_pretrained once its training data are known."""


def _hashes(images: np.ndarray) -> set[bytes]:
    return {hashlib.sha1(np.ascontiguousarray(x).tobytes()).digest() for x in images}


def test_pretraining_set_holds_open_classes_only(tiny_world):
    w = tiny_world
    images, labels, classes = P.pretraining_set(w)
    assert not set(classes.tolist()) & set(w.targets.tolist())
    assert len(classes) == len(w.classes) - len(w.targets)
    assert labels.min() == 0 and labels.max() == len(classes) - 1
    # every item is a pool item whose search query was an open class, labelled with that query
    open_items = ~np.isin(w.pool_query, w.targets)
    assert np.array_equal(images, w.pool_images[open_items])
    assert np.array_equal(classes[labels], w.pool_query[open_items])
    assert len(labels) == len(classes) * w.config.pool_per_class


def test_pool_pretrained_trains_on_no_target_label_or_eval_image(tiny_world, monkeypatch, tmp_path):
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path))  # nothing cached: it must train
    seen = {}

    def spy(model, images, labels, *args, **kwargs):
        seen.update(images=images, labels=np.asarray(labels), outputs=model.get_classifier().out_features)
        raise Captured

    monkeypatch.setattr(P, "train_on_arrays", spy)
    with pytest.raises(Captured):
        P.pool_pretrained(tiny_world, epochs=1)
    w = tiny_world
    n_open = len(w.classes) - len(w.targets)
    assert seen["outputs"] == n_open  # no classifier row for any target class
    _, _, classes = P.pretraining_set(w)
    assert not np.isin(classes[seen["labels"]], w.targets).any()
    evaluation = _hashes(w.splits["val"][0]) | _hashes(w.splits["test"][0])
    assert not _hashes(seen["images"]) & evaluation


def test_cache_key_names_the_recipe(tiny_world, monkeypatch):
    """An encoder cached by the old recipe (all classes' labels) is never reused."""
    new = P.encoder_path(tiny_world)
    assert P.pool_settings()["labels"] == "open-classes"
    monkeypatch.setattr(P, "POOL_RECIPE_VERSION", 1)
    assert P.encoder_path(tiny_world) != new
