"""Two gloo processes (one start-up of tests/ddp_worker.py): sharded evaluation and exact per-rank resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T

from ltkit import evaluate, features

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import ddp_worker  # noqa: E402

# several processes; one worker under xdist runs both tests on the module's one torchrun start-up
pytestmark = [pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo backend not built"),
              pytest.mark.slow, pytest.mark.xdist_group("ddp")]

# RandAugment + Mixup/CutMix on, auxiliary classes and NS-CE: the path the paper trains
RESUME_ARGS = ["batch_size=32", "aux=neighbours", "loss=nsce", "mixup=0.8", "cutmix=1.0", "randaugment=rand-m9-mstd0.5"]


@pytest.fixture(scope="module")
def ran(tiny_world, world_cache, tmp_path_factory) -> Path:
    """The worker's `all` mode under torchrun with two processes; its output folder."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "LTKIT_CACHE": str(world_cache)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), "all", str(out), *RESUME_ARGS]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out


def test_two_ranks_evaluate_disjoint_shares(ran):
    out = ran / "eval"
    seen = [json.loads((out / f"seen{r}.json").read_text()) for r in (0, 1)]
    for split, n in (("test", 37), ("train", 29)):
        a, b = set(seen[0][split]), set(seen[1][split])
        assert a and b and not a & b and a | b == set(range(n)), split
    # what rank 0 gathered is what one process computes, row for row
    one = features.extract_features(ddp_worker.eval_model(), ddp_worker.eval_images(), T.ToTensor(), batch_size=8)
    np.testing.assert_allclose(np.load(out / "features.npy"), one, rtol=1e-5, atol=1e-6)
    res = json.loads((out / "results.json").read_text())
    single = evaluate.evaluate(ddp_worker.eval_model(), ddp_worker.eval_images(), [10] * 4, 4, T.ToTensor(),
                               classifier=["direct", "crt"], train=ddp_worker.eval_images(29, seed=1), batch_size=8)
    for kind in ("direct", "crt"):
        assert res[kind]["num_test"] == 37
        assert res[kind]["top1"] == pytest.approx(single[kind]["top1"]), kind


def test_ddp_resume_is_exact_on_every_rank(ran):
    """1 epoch + restart (scrambled RNGs) + 1 epoch == 2 epochs straight, bit for bit, on both ranks."""
    out = ran / "resume"
    for rank in (0, 1):
        a = torch.load(out / f"straight{rank}.pt", weights_only=False)
        b = torch.load(out / f"resumed{rank}.pt", weights_only=False)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"rank {rank}: {k}")
    # each rank saved its own RNG state, and the two differ (their Mixup draws differ)
    rng = [torch.load(out / "resumed" / "checkpoints" / f"rng-rank{r}.pt", weights_only=False)["rng"] for r in (0, 1)]
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])
