"""Models by timm name, weights from files / the hub / the pool, transforms, and features."""

import numpy as np
import pytest
import torch

from ltkit.data import world_data
from ltkit.errors import UserError
from ltkit.encoder import Encoder, build_encoder, encode_cached, resolve_pretrained
from ltkit.features import cosine_to, extract_features, nearest_prototype_accuracy, patch_features, prototypes
from ltkit.models import DEFAULT_WORLD_MODEL, WORLD_VIT, create_model, data_config, save_weights, transforms
from ltkit.pretrain import encoder_path, pool_pretrained

VIT_B = ["vit_base_patch16_224", "vit_base_patch16_clip_224.openai", "vit_base_patch14_dinov2.lvd142m"]


def test_world_models_have_an_L_plus_K_head():
    for name in (DEFAULT_WORLD_MODEL, "ltkit_cnn_tiny", WORLD_VIT):
        m = create_model(name, 7, img_size=32)
        with torch.no_grad():
            out = m(torch.randn(2, 3, 32, 32))
            f = m.forward_head(m.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
        assert out.shape == (2, 7) and m.get_classifier().out_features == 7
        assert f.shape == (2, m.num_features)
        assert data_config(m)["input_size"] == (3, 32, 32) and data_config(m)["crop_pct"] == 1.0
        m.reset_classifier(3)
        assert m.get_classifier().out_features == 3


@pytest.mark.parametrize("name", VIT_B)
def test_vit_b_names_build_from_scratch_at_small_size(name):
    m = create_model(name, 12, img_size=32)  # 4 px patches: an 8x8 grid, fast enough for a test
    assert m.num_features == 768 and m.get_classifier().out_features == 12
    assert m.patch_embed.grid_size == (8, 8)
    assert data_config(m)["input_size"] == (3, 32, 32)  # not the weights' 224 / 518
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, 12)
    if "clip" in name:  # the data config keeps the weights' own normalisation
        assert data_config(m)["mean"][0] == pytest.approx(0.48145466)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_round_trip(tmp_path, suffix):
    torch.manual_seed(1)
    a = create_model(DEFAULT_WORLD_MODEL, 9).eval()
    path = save_weights(a, tmp_path / f"w{suffix}")
    b = create_model(DEFAULT_WORLD_MODEL, 9, pretrained=path).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    # a different number of classes keeps the backbone and starts a fresh head
    c = create_model(DEFAULT_WORLD_MODEL, 4, pretrained=str(path)).eval()
    with torch.no_grad():
        fa = a.forward_head(a.forward_features(x), pre_logits=True)
        torch.testing.assert_close(fa, c.forward_head(c.forward_features(x), pre_logits=True))
    assert c.get_classifier().out_features == 4


def test_local_vit_file_for_a_name_whose_hub_weights_are_npz(tmp_path):
    # vit_tiny's hub weights are JAX .npz (custom_load=True); a local timm file must load as a state dict
    torch.manual_seed(2)
    a = create_model("vit_tiny_patch16_224", 5, img_size=32).eval()
    path = save_weights(a, tmp_path / "vit.pth")
    torch.save({"state_dict": torch.load(path)}, path)  # wrapped, as training checkpoints often are
    b = create_model("vit_tiny_patch16_224", 5, img_size=32, pretrained=path).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_missing_file_and_offline_hub_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        create_model(DEFAULT_WORLD_MODEL, 3, pretrained=tmp_path / "nope.pt")
    from huggingface_hub import constants

    # an empty Hugging Face cache, offline (huggingface_hub reads these at import: patch both)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="HF_HOME"):
        create_model(WORLD_VIT, 3, pretrained=True)
    with pytest.raises(RuntimeError, match="HF_HOME") as err:
        create_model("vit_base_patch14_dinov2.lvd142m", 3, img_size=32, pretrained=True)
    assert "pretrained='/path/to/model.safetensors'" in str(err.value)
    with pytest.raises(RuntimeError, match="pool"):
        create_model(DEFAULT_WORLD_MODEL, 3, pretrained=True)  # no hub weights exist for the world's models
    with pytest.raises(UserError, match="resolve_pretrained"):  # create_model only builds; it never trains
        create_model(DEFAULT_WORLD_MODEL, 3, pretrained="pool")
    with pytest.raises(UserError, match="world"):
        resolve_pretrained("pool", None, DEFAULT_WORLD_MODEL)


def test_transforms_for_32px():
    m = create_model(DEFAULT_WORLD_MODEL, 3)
    img = world_img()
    ev, tr = transforms(m, train=False), transforms(m, train=True)
    assert ev(img).shape == tr(img).shape == (3, 32, 32)
    # crop_pct=1: evaluation only converts and normalises
    cfg = data_config(m)
    expect = (torch.from_numpy(np.array(img)).permute(2, 0, 1) / 255 - torch.tensor(cfg["mean"])[:, None, None])
    torch.testing.assert_close(ev(img), expect / torch.tensor(cfg["std"])[:, None, None])
    assert "RandAugment" in repr(tr) and "scale=(0.35, 1.0)" in repr(tr)
    assert "RandAugment" not in repr(transforms(m, train=True, randaugment=None))


def world_img():
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# the pool-pretrained encoder


@pytest.mark.slow
def test_pool_encoder_caches_and_beats_random_init(tiny_world, tiny_encoder, monkeypatch):
    epochs = 6  # half the default recipe, the tiny preset's filter encoder: conftest trains it once per run
    path = tiny_encoder
    assert path == encoder_path(tiny_world, epochs=epochs) and path.is_file() and path.with_suffix(".json").is_file()
    mtime = path.stat().st_mtime_ns
    import ltkit.pretrain

    def no_training(*args, **kwargs):
        raise AssertionError("the cached encoder was trained again")

    with monkeypatch.context() as m:  # reused, not retrained: a second call trains nothing and rewrites nothing
        m.setattr(ltkit.pretrain, "train_on_arrays", no_training)
        assert pool_pretrained(tiny_world, epochs=epochs) == path
    assert path.stat().st_mtime_ns == mtime
    assert encoder_path(tiny_world) != path and encoder_path(tiny_world, epochs=epochs, seed=1) != path

    data = world_data(tiny_world)
    n = data.num_classes
    enc = build_encoder(f"pool:epochs={epochs}", tiny_world, device="cpu").model
    assert enc.get_classifier().__class__.__name__ == "Identity"
    torch.manual_seed(0)
    scratch = create_model(DEFAULT_WORLD_MODEL, 0).eval()
    tf = transforms(enc, train=False)
    acc = {}
    for name, m in (("pool", enc), ("scratch", scratch)):
        tr, va = extract_features(m, data.train, tf), extract_features(m, data.val, tf)
        acc[name] = nearest_prototype_accuracy(tr, data.train.labels, va, data.val.labels, n)
    assert acc["pool"] > acc["scratch"] + 0.1, acc

    # pretrained="pool": the same backbone with a fresh L-way head
    import ltkit.encoder

    monkeypatch.setattr(ltkit.encoder, "pool_pretrained", lambda world, model_name: path)
    m = create_model(DEFAULT_WORLD_MODEL, n, pretrained=resolve_pretrained("pool", tiny_world, DEFAULT_WORLD_MODEL)).eval()
    assert m.get_classifier().out_features == n
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_head(m.forward_features(x), pre_logits=True), enc(x))


def test_array_training_is_seeded_and_deterministic():
    from ltkit.pretrain import train_on_arrays

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8), rng.integers(0, 4, 128)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = create_model("ltkit_cnn_tiny", 4)
        train_on_arrays(m, x, y, epochs=2, batch_size=32, seed=3)
        runs.append(m.state_dict())
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=0, atol=0)


def test_cached_features_prototypes_and_patches(tmp_path, tiny_world):
    data = world_data(tiny_world)
    torch.manual_seed(0)
    m = create_model(WORLD_VIT, 0).eval()
    tf = transforms(m, train=False)
    val = data.val
    f = encode_cached(Encoder(m, tf, WORLD_VIT, device="cpu"), val, tmp_path)  # cache reads: tests/test_encoder.py
    assert f.shape == (len(val), m.num_features)

    protos = prototypes(f, val.labels, data.num_classes + 1)
    np.testing.assert_allclose(protos[0], f[val.labels == 0].mean(0), rtol=1e-5)
    assert np.isnan(protos[-1]).all()  # no sample: no prototype
    sims = cosine_to(f, protos[:-1])
    assert sims.shape == (len(val), data.num_classes) and np.all(np.abs(sims) <= 1 + 1e-5)

    p = patch_features(m, val.subset(range(3)), tf)
    assert p.shape == (3, 8, 8, m.num_features)  # prefix (class) token stripped
    with torch.no_grad():
        tokens = m.forward_features(torch.stack([tf(val.load(i)) for i in range(3)]))
    np.testing.assert_allclose(p.reshape(3, 64, -1), tokens[:, m.num_prefix_tokens:].numpy(), rtol=1e-5, atol=1e-5)
    cnn = create_model(DEFAULT_WORLD_MODEL, 0).eval()
    assert patch_features(cnn, val.subset(range(2)), tf).shape == (2, 4, 4, cnn.num_features)
