"""Training at scale on the CPU: evaluation shards, prototypes, the optimiser's groups, the loader (DDP: test_ddp.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkit import features

ROOT = Path(__file__).resolve().parent.parent


def test_shards_are_disjoint_and_cover():
    for n in (0, 1, 5, 37):
        for ws in (1, 2, 3, 8):
            parts = [list(features.shard_range(n, r, ws)) for r in range(ws)]
            assert sorted(sum(parts, [])) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_prototypes_are_class_means():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(200, 7)).astype(np.float32), rng.integers(0, 5, 200)
    y[y == 3] = 4  # class 3 has no sample
    p = features.prototypes(f, y, 6)
    for c in (0, 1, 2, 4):
        np.testing.assert_allclose(p[c], f[y == c].mean(0), rtol=1e-5, atol=1e-6)
    assert np.isnan(p[3]).all() and np.isnan(p[5]).all() and p.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# the optimiser


def test_layer_decay_groups_match_timm():
    """Every parameter gets the lr and weight decay of timm's own param_groups_layer_decay."""
    from timm.optim import param_groups_layer_decay

    from ltkit.models import create_model
    from ltkit.config import load_config
    from ltkit.train import build_optimizer, learning_rate

    cfg = load_config(None, ["model=test_vit", "blr=1e-3", "batch_size=64", "accum_steps=2", "layer_decay=0.75",
                             "weight_decay=0.05"])
    assert learning_rate(cfg) == pytest.approx(1e-3 * 128 / 256)
    torch.manual_seed(0)
    model = create_model("test_vit", 10, img_size=32)
    opt = build_optimizer(cfg, model)
    ours = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    theirs = {id(p): (learning_rate(cfg) * g["lr_scale"], g["weight_decay"])
              for g in param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75,
                                                no_weight_decay_list=model.no_weight_decay())
              for p in g["params"]}
    assert ours.keys() == theirs.keys() == {id(p) for p in model.parameters()}
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k])
    lrs = sorted({round(v[0], 12) for v in ours.values()})
    assert len(lrs) == 6 + 2 and lrs[-1] == pytest.approx(learning_rate(cfg))  # embed, 6 blocks, head
    decay = {n: ours[id(p)][1] for n, p in model.named_parameters()}
    assert decay["pos_embed"] == decay["blocks.0.norm1.weight"] == decay["head.bias"] == 0.0
    assert decay["blocks.0.attn.qkv.weight"] == 0.05


def test_lr_without_blr_and_drop_path(tmp_path):
    from ltkit.config import load_config
    from ltkit.train import build_model, learning_rate

    assert learning_rate(load_config(None, ["lr=0.003", "batch_size=512"])) == 0.003
    cfg = load_config(None, ["model=test_vit", "drop_path=0.2", "img_size=32"])
    model = build_model(cfg, 5, None)
    assert max(b.drop_path1.drop_prob for b in model.blocks if hasattr(b.drop_path1, "drop_prob")) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="drop_path"):
        build_model(load_config(None, ["model=ltkit_cnn_tiny", "drop_path=0.1"]), 5, None)


# ---------------------------------------------------------------------------------------------
# the input pipeline


def tiny(tmp_path, **over):
    from ltkit.config import load_config

    base = {"out_dir": str(tmp_path / "runs"), "epochs": 2, "batch_size": 64, "eval_every": 0, "progress": False}
    return load_config(ROOT / "configs" / "builtin-tiny.yaml", {**base, **over})


def test_loader_is_built_once_per_run(tiny_world, tmp_path, monkeypatch):
    from ltkit import train

    built = []
    real = train.build_loader
    monkeypatch.setattr(train, "build_loader", lambda *a, **k: built.append(1) or real(*a, **k))
    t = train.Trainer(tiny(tmp_path, name="once", num_workers=1))
    assert t.loader.persistent_workers and t.loader.prefetch_factor >= 2
    t.fit(stop_after=1)
    workers = t.loader._iterator  # the worker processes of epoch 1
    t.fit()
    assert t.epoch == 2 and len(built) == 1
    assert t.loader._iterator is workers  # epoch 2 ran on the same workers


def test_undecodable_file_is_skipped_and_counted(tmp_path):
    from PIL import Image

    from ltkit.config import load_config
    from ltkit.train import Trainer

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        for c in range(4):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / split / f"c{c}/{i}.png")
    (root / "train" / "c2" / "3.png").write_bytes(b"not a PNG: truncated by the crawl")
    cfg = load_config(None, {"dataset": "folders", "data_root": str(root), "model": "ltkit_cnn_tiny", "img_size": 16,
                             "batch_size": 8, "epochs": 2, "eval_every": 0, "progress": False, "aux": "none",
                             "out_dir": str(tmp_path / "runs"), "name": "corrupt"})
    t = Trainer(cfg).fit()
    rows = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_images"] for r in rows] == [1, 1]  # all 24 images every epoch: the bad one once each
    assert all(np.isfinite(r["loss"]) for r in rows) and t.epoch == 2


def test_ranks_split_every_global_batch():
    """EpochSampler as the trainer runs it: whole steps only, each global batch shared by the ranks."""
    from ltkit.sampling import EpochSampler

    labels = np.repeat(np.arange(10, 16), [3, 9, 1, 12, 5, 7])
    B, accum = 8, 2
    one = EpochSampler(37, labels, cap=4, seed=3, drop_last=True, multiple_of=B * accum)
    ranks = [EpochSampler(37, labels, cap=4, seed=3, rank=r, world_size=2, drop_last=True, multiple_of=B * accum)
             for r in (0, 1)]
    for epoch in (0, 1):
        for s in (one, *ranks):
            s.set_epoch(epoch)
        order = list(one)
        assert len(order) % (B * accum) == 0 and len(order) > len(one.indices()) - B * accum
        local = [list(s) for s in ranks]
        assert len(local[0]) == len(local[1]) == len(order) // 2 == len(ranks[0])
        for k in range(len(order) // B):  # global batch k == the union of the ranks' local batch k
            mine = local[0][k * B // 2:(k + 1) * B // 2] + local[1][k * B // 2:(k + 1) * B // 2]
            assert sorted(mine) == sorted(order[k * B:(k + 1) * B])


@pytest.mark.slow
def test_gpu_script_runs_end_to_end_in_smoke_mode(tmp_path):
    """benchmarks/gpu.sh is ready for a lent GPU: its smoke mode (tiny ViT, CPU) prints both tables and a ratio."""
    import os
    import subprocess
    import sys

    # PYTHON: this test's interpreter (the script's own default is .venv/bin/python, else python3 on the PATH)
    env = {**os.environ, "GPU_BENCH_SMOKE": "1", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "gpu_bench.log").read_text()
    assert log == r.stdout  # everything printed is kept for the README
    ratio = float(log.split("ratio ltkit / timm:")[1].split()[0])
    assert ratio > 0
    rows = [line for line in log.splitlines() if line.startswith("| NS-CE |")]
    assert len(rows) == 2 and all("x |" in row for row in rows)  # integer and soft targets, against CE


def test_corrupt_crawled_file_is_skipped_and_counted(tiny_world, tmp_path):
    """Training on a filtered crawl (`aux_images: crawl`): an accepted image truncated on disk afterwards is
    skipped and counted each epoch; only the accepted set's files are read."""
    from dataclasses import asdict

    from PIL import Image

    from ltkit.artifacts.layout import neighbour_map_path
    from ltkit.budget import aux_budget
    from ltkit.neighbours.cli import search_config
    from ltkit.artifacts.layout import ACCEPTED, FILTER_JSON
    from ltkit.artifacts.accepted import ACCEPTED_COLUMNS
    from ltkit.artifacts.neighbour_map import load_neighbour_map
    from ltkit.data import world_data
    from ltkit.sampling import select_auxiliary
    from ltkit.train import Trainer

    crawl = tmp_path / "crawl"
    cfg = tiny(tmp_path, name="crawled", aux="neighbours", aux_images="crawl", **{"crawl.out_dir": str(crawl)})
    target = world_data(tiny_world)
    search_config(cfg, target.class_names, target.train_counts, tiny_world.taxonomy)
    nmap = load_neighbour_map(neighbour_map_path(cfg), target.num_classes)
    keep = select_auxiliary(nmap.aux_parent, aux_budget(target.train_counts, cfg.k, cfg.aux_ratio, cfg.many, cfg.few))
    names = [n for n, k in zip(nmap.aux_names, keep) if k][:3]
    rng, rows = np.random.default_rng(0), [",".join(ACCEPTED_COLUMNS)]
    for a, name in enumerate(names):
        (crawl / "images" / f"{a:05d}").mkdir(parents=True)
        for i in range(4):
            rel = f"images/{a:05d}/{a}-{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(crawl / rel)
            rows.append(f"{rel},{target.num_classes + a},{name},0,{a}{i},0.9")
    (crawl / "images" / "00000" / "junk-not-accepted.jpg").write_bytes(b"never read: not in accepted.csv")
    (crawl / "images" / "00001" / "1-2.jpg").write_bytes(b"\xff\xd8 truncated after filtering")
    (crawl / ACCEPTED).write_text("\n".join(rows) + "\n")
    (crawl / FILTER_JSON).write_text(json.dumps({"dataset": cfg.dataset, "settings": asdict(cfg.filter)}))
    t = Trainer(cfg).fit()
    assert t.K == 3 and len(t.aux_images) == 12
    metrics = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["skipped_images"] for m in metrics] == [1, 1] and all(np.isfinite(m["loss"]) for m in metrics)
