"""Resume: a refused resume leaves the run untouched; under DDP every rank gets its own RNG state back."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ltkit.train import Trainer, load_config

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


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo backend not built")
def test_ddp_resume_is_exact_on_every_rank(tiny_world, world_cache, tmp_path):
    """2 gloo ranks, RandAugment + Mixup/CutMix on: 1 epoch + restart + 1 epoch == 2 epochs straight."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "LTKIT_CACHE": str(world_cache)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), "resume", str(tmp_path), "batch_size=32", "aux=neighbours",
           "loss=nsce", "mixup=0.8", "cutmix=1.0", "randaugment=rand-m9-mstd0.5"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    for rank in (0, 1):
        a = torch.load(tmp_path / f"straight{rank}.pt", weights_only=False)
        b = torch.load(tmp_path / f"resumed{rank}.pt", weights_only=False)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"rank {rank}: {k}")
    # each rank saved its own RNG state, and the two differ (their Mixup draws differ)
    rng = [torch.load(tmp_path / "resumed" / "checkpoints" / f"rng-rank{r}.pt", weights_only=False)["rng"]
           for r in (0, 1)]
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])
