"""Validation is not test: a dataset without val gets a held-out split from train, and test is touched only at the end."""
import numpy as np
import pytest

from ltkit.data import ArrayImages, LTData, holdout_val


def no_val_data(counts=(60, 30, 12, 5, 3)) -> LTData:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(counts)), counts)
    images = rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256  # tell images apart
    images[:, 0, 0, 1] = np.arange(len(labels)) // 256
    test = ArrayImages(rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), np.arange(10) % len(counts))
    return LTData("no-val", [f"c{i}" for i in range(len(counts))], ArrayImages(images, labels), None, test)


def _ids(s: ArrayImages) -> set[int]:
    return set((s.images[:, 0, 0, 0].astype(int) + 256 * s.images[:, 0, 0, 1].astype(int)).tolist())


def test_holdout_is_balanced_disjoint_and_seeded():
    data = no_val_data()
    split = holdout_val(data, per_class=10, seed=0)
    # 10 per class, but never more than a fifth of a class: 60 -> 10, 30 -> 6, 12 -> 2, 5 -> 1, 3 -> 0
    assert split.val.counts(5).tolist() == [10, 6, 2, 1, 0]
    assert split.train_counts.tolist() == [50, 24, 10, 4, 3]
    assert not _ids(split.train) & _ids(split.val)
    assert _ids(split.train) | _ids(split.val) == _ids(data.train)
    assert split.test is data.test and split.val_source == "train holdout" and data.val_source == "dataset"
    again, other = holdout_val(data, 10, seed=0), holdout_val(data, 10, seed=1)
    assert _ids(again.val) == _ids(split.val) and _ids(other.val) != _ids(split.val)


def test_dataset_with_val_is_unchanged():
    data = no_val_data()
    with_val = LTData(data.name, data.class_names, data.train, data.test, data.test)
    assert holdout_val(with_val) is with_val


def folder_dataset(root, counts=(40, 20, 6), test_per_class=4) -> None:
    """An ImageFolder tree with train/ and test/ only (no val/), small PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per in (("train", counts), ("test", [test_per_class] * len(counts))):
        for c, n in enumerate(per):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.full((32, 32, 3), 60 * c, np.uint8) + rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")


def test_trainer_holds_out_val_and_touches_test_only_at_the_end(tmp_path, monkeypatch):
    import ltkit.evaluate
    from ltkit.config import load_config
    from ltkit.train import Trainer

    folder_dataset(tmp_path / "data")
    cfg = load_config(None, {"dataset": "folders", "data_root": str(tmp_path / "data"), "model": "ltkit_cnn_tiny",
                             "epochs": 2, "batch_size": 8, "warmup_epochs": 0.5, "randaugment": None, "val_holdout": 5,
                             "progress": False, "out_dir": str(tmp_path / "runs"), "name": "r", "classifier": "crt"})
    trainer = Trainer(cfg)
    data = trainer.data
    assert data.val_source == "train holdout"
    assert data.val.counts(3).tolist() == [5, 4, 1] and data.train_counts.tolist() == [35, 16, 5]
    touched, real = [], ltkit.evaluate.extract_features

    def spy(model, images, *args, **kwargs):
        touched.append("test" if images is data.test else "val" if images is data.val else "train")
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(ltkit.evaluate, "extract_features", spy)
    trainer.fit()
    assert touched == ["val", "val"]  # one cheap pass over the held-out val per epoch, never test
    from ltkit.io import read_jsonl

    rows = list(read_jsonl(cfg.run_dir / "metrics.jsonl"))
    assert len(rows) == 2 and all("val_overall" in r for r in rows)
    res = trainer.evaluate()
    assert touched[2:] == ["test", "train"]  # the end: test, and train features for the cRT classifier
    assert res["val_source"] == "train holdout" and res["val_images"] == 10


def test_without_any_val_there_are_no_val_metrics(tmp_path):
    from ltkit.config import load_config
    from ltkit.train import Trainer

    folder_dataset(tmp_path / "data")
    cfg = load_config(None, {"dataset": "folders", "data_root": str(tmp_path / "data"), "model": "ltkit_cnn_tiny",
                             "epochs": 1, "batch_size": 8, "randaugment": None, "val_holdout": 0, "progress": False,
                             "out_dir": str(tmp_path / "runs"), "name": "r"})
    trainer = Trainer(cfg)
    assert trainer.val_metrics() is None
    trainer.fit()
    from ltkit.io import read_jsonl

    assert not any(k.startswith("val_") for r in read_jsonl(cfg.run_dir / "metrics.jsonl") for k in r)
