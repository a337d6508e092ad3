"""Resume: a refused resume leaves the run untouched (per-rank DDP resume: test_ddp.py)."""
from pathlib import Path

import pytest

from ltkit.config import load_config
from ltkit.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def tiny(tmp_path, **over):
    base = {"out_dir": str(tmp_path / "runs"), "epochs": 1, "batch_size": 64, "eval_every": 0, "progress": False}
    return load_config(ROOT / "configs" / "builtin-tiny.yaml", {**base, **over})


def test_refused_resume_leaves_config_yaml(tiny_world, tmp_path):
    first = Trainer(tiny(tmp_path, name="r")).fit()
    saved = (first.cfg.run_dir / "config.yaml").read_text()
    ckpt = first.ckpt_path.read_bytes()
    with pytest.raises(ValueError, match=r"loss: 'balce' -> 'ce'"):
        Trainer(tiny(tmp_path, name="r", loss="ce")).fit()
    assert (first.cfg.run_dir / "config.yaml").read_text() == saved  # still the settings that trained it
    assert first.ckpt_path.read_bytes() == ckpt
    assert load_config(first.cfg.run_dir / "config.yaml").loss == "balce"


def test_step_budget_resumes_exactly(tiny_world, tmp_path):
    """A budget that ends mid-epoch: 1 epoch + restart + the rest == straight, steps and images seen restored."""
    import torch

    cfg = lambda name: tiny(tmp_path, name=name, epochs=9, steps=30, warmup_steps=4)  # noqa: E731
    straight = Trainer(cfg("straight")).fit()
    Trainer(cfg("resumed")).fit(stop_after=1)
    second = Trainer(cfg("resumed"))
    assert second.resume() and second.step == second.steps_per_epoch < 30 and 30 % second.steps_per_epoch
    second.fit()
    assert straight.step == second.step == 30 and straight.images_seen == second.images_seen == 30 * 64
    a, b = straight.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
