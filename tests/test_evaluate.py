"""The final classifier (direct / cRT / τ-norm) and the metrics, against hand-computed values."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from ltkit.data import ArrayImages, shot_accuracy
from ltkit.evaluate import (apply_linear, classifier_layer, evaluate, expected_calibration_error, macro_f1,
                            mask_classifier, masked_linear, metrics, per_class_accuracy, predict,
                            retrain_classifier, tau_normalized, write_results)
from ltkit.features import extract_features
from ltkit.models import create_model, transforms

L, K = 5, 3


@pytest.fixture(scope="module")
def toy():
    """A scratch small CNN over L + K classes and a few random 32 px images."""
    torch.manual_seed(0)
    model = create_model("ltkit_cnn_tiny", L + K).eval()
    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, L, 40))
    return model, images, transforms(model, train=False)


def test_direct_classifier_is_first_L_logits(toy):
    model, images, tf = toy
    x = torch.stack([tf(images.load(i)) for i in range(8)])
    with torch.no_grad():
        full, masked = model(x), mask_classifier(model, L)(x)
    assert masked.shape == (8, L)
    torch.testing.assert_close(masked, full[:, :L])
    assert classifier_layer(model).out_features == L + K  # the original is untouched
    np.testing.assert_allclose(predict(model, images, tf, num_targets=L), predict(model, images, tf)[:, :L],
                               rtol=1e-5, atol=1e-5)


def test_tau_zero_is_identity_and_tau_one_gives_unit_rows(toy):
    head = masked_linear(toy[0], L)
    same = tau_normalized(head, 0.0)
    torch.testing.assert_close(same.weight, head.weight)
    torch.testing.assert_close(same.bias, head.bias)
    unit = tau_normalized(head, 1.0, bias=False)
    torch.testing.assert_close(unit.weight.norm(dim=1), torch.ones(L))
    assert unit.bias is None


def test_crt_trains_an_L_way_head_on_frozen_features():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (L, 16))
    y = np.repeat(np.arange(L), [60, 30, 10, 5, 3])  # long-tailed
    x = (centers[y] + rng.normal(0, 0.6, (len(y), 16))).astype(np.float32)
    for balance in ("sampler", "balce"):
        lin, losses = retrain_classifier(x, y, L, balance=balance, epochs=20, return_losses=True)
        assert lin.out_features == L and lin.in_features == 16
        assert losses[-1] < 0.5 * losses[0]
        assert (apply_linear(lin, x).argmax(1) == y).mean() > 0.9
    a = retrain_classifier(x, y, L, epochs=3, seed=1)
    b = retrain_classifier(x, y, L, epochs=3, seed=1)
    torch.testing.assert_close(a.weight, b.weight)  # seeded


def test_evaluate_kinds_and_results_file(toy, tmp_path):
    model, images, tf = toy
    counts = np.array([150, 60, 30, 10, 5])
    res = evaluate(model, images, counts, L, tf, classifier=("direct", "crt", "tau"), train=images,
                   crt=dict(epochs=2), tau=0.0)
    assert set(res) == {"direct", "crt", "tau"}
    for r in res.values():
        assert set(r) >= {"many", "medium", "few", "overall", "top1", "macro_f1", "ece", "per_class_accuracy"}
        assert len(r["per_class_accuracy"]) == L
    # τ = 0 leaves the direct classifier unchanged
    assert res["tau"]["per_class_accuracy"] == res["direct"]["per_class_accuracy"]
    direct = evaluate(model, images, counts, L, tf)
    logits = predict(model, images, tf, num_targets=L)
    assert direct["top1"] == pytest.approx(float((logits.argmax(1) == images.labels).mean()))
    path = write_results(tmp_path / "run", direct, {"model": "ltkit_cnn_tiny", "classifier": "direct"})
    saved = json.loads(path.read_text())
    assert saved["config"]["model"] == "ltkit_cnn_tiny" and saved["overall"] == pytest.approx(direct["overall"])
    # cRT linear-probes a headless encoder too (the re-train baseline on DINOv2-like features)
    probe = evaluate(create_model("ltkit_cnn_tiny", 0), images, counts, L, tf, classifier="crt", train=images,
                     crt=dict(epochs=2))
    assert len(probe["per_class_accuracy"]) == L
    with pytest.raises(ValueError, match="crt"):
        evaluate(model, images, counts, L, tf, classifier="crt")
    with pytest.raises(ValueError, match="unknown classifier"):
        evaluate(model, images, counts, L, tf, classifier="knn")


def test_features_are_the_pre_logits(toy):
    model, images, tf = toy
    f = extract_features(model, images, tf, batch_size=16)
    assert f.shape == (len(images), model.num_features)
    np.testing.assert_allclose(apply_linear(classifier_layer(model), f), predict(model, images, tf), rtol=1e-5,
                               atol=1e-5)


# ---------------------------------------------------------------------------------------------
# metrics by hand


def test_ece_of_a_perfectly_calibrated_toy_is_zero():
    # 10 samples at confidence 0.8 with 8 right, 10 at 0.6 with 6 right
    probs = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 10)
    labels = np.array([0] * 8 + [1] * 2 + [1] * 6 + [0] * 4)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # always 0.9 confident, right half the time: |0.5 - 0.9| = 0.4
    probs = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 1, 1])) == pytest.approx(0.4)


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 7, 200), rng.integers(0, 7, 200)
    p[:80] = y[:80]
    assert macro_f1(p, y, 7) == pytest.approx(f1_score(y, p, average="macro"))
    # a class never predicted nor true counts as 0 over all num_classes, as sklearn with labels=
    y2, p2 = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert macro_f1(p2, y2, 3) == pytest.approx(f1_score(y2, p2, labels=[0, 1, 2], average="macro", zero_division=0))


def test_shot_split_means_by_hand():
    counts = np.array([200, 150, 50, 30, 10, 5])  # many, many, medium, medium, few, few
    labels = np.repeat(np.arange(6), 4)
    pred = labels.copy()
    pred[[0, 4, 5, 8, 9, 10]] = 3  # one, two and three mistakes in classes 0, 1, 2
    pred[20:24] = 0  # class 5 all wrong
    acc = per_class_accuracy(pred, labels, 6)
    np.testing.assert_allclose(acc, [0.75, 0.5, 0.25, 1.0, 1.0, 0.0])
    logits = np.eye(6)[pred] * 5
    m = metrics(logits, labels, counts)
    assert m["many"] == pytest.approx(0.625) and m["medium"] == pytest.approx(0.625)
    assert m["few"] == pytest.approx(0.5) and m["overall"] == pytest.approx(3.5 / 6)
    assert m["top1"] == pytest.approx(14 / 24)
    assert shot_accuracy(acc, counts) == {k: m[k] for k in ("many", "medium", "few", "overall")}
    # thresholds are overridable: with many > 40 the class with 50 images becomes Many
    assert metrics(logits, labels, counts, many=40)["many"] == pytest.approx((0.75 + 0.5 + 0.25) / 3)
