"""Training at scale on the CPU: distributed evaluation shares, prototypes, the optimiser's groups, the loader."""
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

gloo = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo backend not built")


def torchrun(*args, timeout=300):
    """Two gloo processes of tests/ddp_worker.py."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), *map(str, args)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def test_shards_are_disjoint_and_cover():
    for n in (0, 1, 5, 37):
        for ws in (1, 2, 3, 8):
            parts = [list(features.shard_range(n, r, ws)) for r in range(ws)]
            assert sorted(sum(parts, [])) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


@gloo
def test_two_ranks_evaluate_disjoint_shares(tmp_path):
    torchrun("eval", tmp_path)
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in (0, 1)]
    for split, n in (("test", 37), ("train", 29)):
        a, b = set(seen[0][split]), set(seen[1][split])
        assert a and b and not a & b and a | b == set(range(n)), split
    # what rank 0 gathered is what one process computes, row for row
    one = features.extract_features(ddp_worker.eval_model(), ddp_worker.eval_images(), T.ToTensor(), batch_size=8)
    np.testing.assert_allclose(np.load(tmp_path / "features.npy"), one, rtol=1e-5, atol=1e-6)
    res = json.loads((tmp_path / "results.json").read_text())
    single = evaluate.evaluate(ddp_worker.eval_model(), ddp_worker.eval_images(), [10] * 4, 4, T.ToTensor(),
                               classifier=["direct", "crt"], train=ddp_worker.eval_images(29, seed=1), batch_size=8)
    for kind in ("direct", "crt"):
        assert res[kind]["num_test"] == 37
        assert res[kind]["top1"] == pytest.approx(single[kind]["top1"]), kind


def test_prototypes_are_class_means():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(200, 7)).astype(np.float32), rng.integers(0, 5, 200)
    y[y == 3] = 4  # class 3 has no sample
    p = features.prototypes(f, y, 6)
    for c in (0, 1, 2, 4):
        np.testing.assert_allclose(p[c], f[y == c].mean(0), rtol=1e-5, atol=1e-6)
    assert np.isnan(p[3]).all() and np.isnan(p[5]).all() and p.dtype == np.float32
