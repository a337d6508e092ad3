"""The one encoder: specs parsed once, one cache key, one feature cache (the stages sharing it: tests/test_filter.py)."""
import re

import numpy as np
import pytest

from ltkit.data import ArrayImages
from ltkit.encoder import (Encoder, FeatureStore, build_encoder, content_keys, encode_cached, parse_spec,
                           pretrained_spec)
from ltkit.errors import UserError
from ltkit.models import save_weights

SCRATCH = "timm:ltkit_cnn_tiny@none"


def _images(n: int = 6, seed: int = 0) -> ArrayImages:
    rng = np.random.default_rng(seed)
    return ArrayImages(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 2)


def test_specs_parse_into_model_and_weights():
    assert parse_spec("pool:epochs=6").weights == "pool:epochs=6" and parse_spec("pool").model == "ltkit_cnn_small"
    assert parse_spec("timm:ltkit_cnn_tiny@pool:classes=disjoint").is_pool
    assert parse_spec("timm:resnet18").weights is True and parse_spec(SCRATCH).weights is None
    assert parse_spec("timm:resnet18@/w/model.safetensors").weights == "/w/model.safetensors"
    assert parse_spec("dinov2").model == "vit_small_patch14_dinov2.lvd142m" and parse_spec("dinov2").weights is True
    assert parse_spec("efficientnet_lite0:64").input_px == 64
    # the pilot's model + pretrained settings, as one spec
    assert [pretrained_spec("m", p) for p in (None, "none", "scratch", "hf", "pool:epochs=6", "/w.pt")] == [
        "timm:m@none", "timm:m@none", "timm:m@none", "timm:m", "timm:m@pool:epochs=6", "timm:m@/w.pt"]


@pytest.mark.parametrize("bad", ["nonsense", "timm:", "timm:resnet18@", "dinov", "pool:epochs=x", "pool:lr=1",
                                 "efficientnet_lite0:big", "timm:ltkit_cnn_tiny@pool:colour=red"])
def test_a_bad_spec_is_a_user_error_naming_it(bad):
    with pytest.raises(UserError, match=re.escape(repr(bad))):
        build_encoder(bad, device="cpu")


def test_spec_errors_that_need_more_than_the_text():
    with pytest.raises(UserError, match="'pool:epochs=6' is the built-in world's pool-pretrained encoder"):
        build_encoder("pool:epochs=6", world=None, device="cpu")
    with pytest.raises(UserError, match="no_such_net"):
        build_encoder("timm:no_such_net", device="cpu")


def test_keys_follow_weights_transform_and_precision(tmp_path):
    a = build_encoder(SCRATCH, device="cpu")
    assert a.key == build_encoder(SCRATCH, device="cpu").key  # a random init is seeded: the same in every process
    assert build_encoder(SCRATCH, device="cpu", seed=1).key != a.key  # other weights
    assert build_encoder(SCRATCH, device="cpu", img_size=48).key != a.key  # other preprocessing
    assert build_encoder("timm:ltkit_cnn_small@none", device="cpu").key != a.key  # another model
    assert Encoder(a.model, a.transform, SCRATCH, device="cuda").key != a.key  # bf16 autocast on a GPU
    # another spec that builds the same weights and transform shares the features
    path = save_weights(a.model, tmp_path / "tiny.safetensors")
    same = build_encoder(f"timm:ltkit_cnn_tiny@{path}", device="cpu")
    assert same.key == a.key and same.spec != a.spec
    small, large = (build_encoder(f"efficientnet_lite0:{px}", device="cpu").key.split("-") for px in (32, 64))
    assert small[0] == large[0] and small[1] != large[1]  # the same weights at another input size


def test_the_cache_encodes_each_image_once_and_persists(tmp_path):
    enc = build_encoder(SCRATCH, device="cpu", batch_size=4)
    seen = []
    enc.model.stem.register_forward_hook(lambda m, x, y: seen.append(len(x[0])))
    images = _images()
    first = encode_cached(enc, images, tmp_path)
    assert sum(seen) == len(images)
    np.testing.assert_array_equal(encode_cached(enc, images.subset([5, 0, 5]), tmp_path), first[[5, 0, 5]])
    twice = ArrayImages(np.concatenate([images.images, images.images[:2]]), np.zeros(8, int))
    encode_cached(enc, twice, tmp_path)
    assert sum(seen) == len(images)  # nothing new: not encoded again
    stored = FeatureStore(tmp_path, enc.key)  # what another process reads from the files
    np.testing.assert_array_equal(stored.get(content_keys(images)), first)
    # named images made on demand: made and encoded only when a key is missing
    made = []

    def make():
        made.append(1)
        return _images(3, seed=1)

    keys = ["pool:0:train:0", "pool:0:train:1", "pool:0:train:2"]
    named = encode_cached(enc, make, tmp_path, keys)
    assert made == [1] and sum(seen) == len(images) + 3
    np.testing.assert_array_equal(encode_cached(enc, make, tmp_path, keys), named)
    assert made == [1] and sum(seen) == len(images) + 3
    np.testing.assert_allclose(named, enc(_images(3, seed=1)), rtol=1e-5, atol=1e-6)
    assert encode_cached(enc, make, tmp_path, []).shape == (0, enc.model.num_features)
    np.testing.assert_array_equal(encode_cached(enc, images, None), first)  # no cache: just the features
