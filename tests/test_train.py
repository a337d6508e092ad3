"""The trainer end to end on builtin-tiny: configs, aux data, exact resume, DDP equivalence, results."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkit.config import Config, load_config
from ltkit.errors import UserError
from ltkit.pipeline import prepare
from ltkit.rng import pinned_threads
from ltkit.train import Trainer, lr_lambda, reproducible

ROOT = Path(__file__).resolve().parent.parent


def tiny(tmp_path, **over) -> Config:
    """The builtin-tiny preset, one short epoch, into tmp_path."""
    base = {"out_dir": str(tmp_path / "runs"), "epochs": 2, "batch_size": 64, "eval_every": 0}
    return load_config(ROOT / "configs" / "builtin-tiny.yaml", {**base, **over})


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_every_preset_loads():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.epochs > 0 and cfg.loss in ("ce", "balce", "nsce"), path


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="lossx"):
        load_config(None, ["lossx=balce"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["epochs"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["epochs=3", "aux_ratio=1:1:3", "randaugment=null", "lr=1e-3"])
    assert cfg.epochs == 3 and cfg.aux_ratio == "1:1:3" and cfg.randaugment is None and cfg.lr == 1e-3


def test_warmup_cosine_schedule():
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_step_schedule_warmup_in_steps_or_epochs():
    from ltkit.train import build_scheduler

    def lrs(cfg, spe):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = build_scheduler(cfg, opt, spe)
        out = []
        for _ in range(cfg.steps):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out + [sched.get_last_lr()[0]]

    for spe in (7, 13):  # two rows with different epoch lengths, one budget: the same schedule
        lr = lrs(load_config(None, ["steps=40", "warmup_steps=5", "warmup_epochs=3"]), spe)
        assert lr[4] == pytest.approx(1.0) and lr[3] < 1.0 and lr[-1] == pytest.approx(0.0)
    lr = lrs(load_config(None, ["steps=40", "warmup_epochs=2"]), 7)  # no warmup_steps: 2 epochs of 7 steps
    assert lr[13] == pytest.approx(1.0) and lr[12] < 1.0


def test_exact_resume(tiny_world, tmp_path):
    """2 epochs straight == 1 epoch, a fresh process-like restart, then 1 more (augmentation and mixup on)."""
    straight = Trainer(tiny(tmp_path, name="straight")).fit()
    first = Trainer(tiny(tmp_path, name="resumed")).fit(stop_after=1)
    assert first.epoch == 1 and first.ckpt_path.exists()
    torch.manual_seed(1234)  # a restart does not share the RNG state of the interrupted process
    np.random.seed(99)
    second = Trainer(tiny(tmp_path, name="resumed"))
    assert second.resume() and second.epoch == 1
    second.fit()
    a, b = weights(straight.model), weights(second.model)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    rows = [json.loads(x) for x in (second.cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


@pytest.mark.parametrize("loss,aux", [("nsce", "neighbours"), ("balce", "random")])
def test_auxiliary_training_and_results(tiny_world, tmp_path, loss, aux):
    cfg = tiny(tmp_path, name=f"{loss}-{aux}", loss=loss, aux=aux, epochs=1, eval_every=1)
    with pytest.raises(UserError, match="no neighbour map; run `python -m ltkit neighbours`"):
        Trainer(cfg)  # the trainer only reads: the map is the neighbours stage's, built by the command
    prepare(cfg)
    t = Trainer(cfg)
    assert t.K > 0 and len(t.aux_parent) == t.K
    assert t.model.get_classifier().out_features == t.L + t.K
    assert set(np.unique(t.aux_images.labels)) <= set(range(t.L, t.L + t.K))
    # at most aux_cap images of each auxiliary class in an epoch
    idx = t.sampler.indices(0)
    aux_idx = idx[idx >= len(t.data.train)] - len(t.data.train)
    per_class = np.bincount(t.aux_images.labels[aux_idx] - t.L, minlength=t.K)
    assert per_class.max() <= cfg.aux_cap
    res = t.fit().evaluate()
    for key in ("overall", "many", "medium", "few"):
        assert 0.0 <= res[key] <= 1.0
    saved = json.loads((cfg.run_dir / "results.json").read_text())
    assert saved["config"]["loss"] == loss and (cfg.run_dir / "config.yaml").exists()
    assert load_config(cfg.run_dir / "config.yaml") == cfg
    row = json.loads((cfg.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "lr", "images_per_s", "val_overall"} <= set(row)


def test_random_categories_differ_from_neighbours(tiny_world, tmp_path):
    prepare(tiny(tmp_path, name="sd", aux="neighbours", epochs=1))
    sd = Trainer(tiny(tmp_path, name="sd", aux="neighbours", epochs=1))
    rd = Trainer(tiny(tmp_path, name="rd", aux="random", epochs=1))
    assert sd.K == rd.K and np.array_equal(sd.aux_parent, rd.aux_parent)
    family = {c.name: c.family for c in tiny_world.classes}
    parent_family = [family[tiny_world.class_names[p]] for p in sd.aux_parent]
    # neighbour categories are look-alike siblings of their parent; random ones mostly are not
    assert [family[n] for n in sd.aux_names] == parent_family
    assert np.mean([family[n] == f for n, f in zip(rd.aux_names, parent_family)]) < 0.5
    assert not set(rd.aux_names) & set(tiny_world.class_names)


DDP_ARGS = ["model=test_vit", "augment=false", "mixup=0", "cutmix=0", "epochs=1", "batch_size=64",
            "loss=nsce", "aux=neighbours", "eval_every=0", "lr=0.001"]


def _run(args, env, nproc=None):
    """`python -m ltkit train` on builtin-tiny in a real process (under torchrun with `nproc` processes)."""
    cmd = [sys.executable, "-m", "ltkit", "train", "--config", str(ROOT / "configs" / "builtin-tiny.yaml"), *args]
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ltkit", "train", *cmd[4:]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def _run_here(args, threads: int = 1) -> None:
    """The same command in this process (`ltkit.cli.main`), torch at `threads` threads: a Python start-up
    (about 6 s of CPU) less than `_run`, where the process boundary is not what a test is about."""
    from ltkit import cli

    with pinned_threads(threads):
        assert cli.main(["train", "--config", str(ROOT / "configs" / "builtin-tiny.yaml"), *args]) == 0


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo backend not built")
def test_ddp_two_gloo_processes_match_one(tiny_world, tmp_path, world_cache):
    """Two DDP processes on the same global batches give the same weights as one process."""
    env = {**os.environ, "LTKIT_CACHE": str(world_cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "runs"
    _run_here(DDP_ARGS + [f"out_dir={out}", "name=single"])
    _run(DDP_ARGS + [f"out_dir={out}", "name=ddp"], env, nproc=2)
    a = torch.load(out / "single" / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(out / "ddp" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k in a:
        # The attention key bias has a true gradient of zero (softmax ignores a shift), so what it
        # gets is reduction-order noise that AdamW normalises into steps of up to lr: looser there.
        atol = 1e-4 if k.endswith("qkv.bias") else 1e-5
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=atol, msg=k)
    assert json.loads((out / "ddp" / "results.json").read_text())["overall"] >= 0


def test_resume_refuses_other_settings(tiny_world, tmp_path):
    Trainer(tiny(tmp_path, name="r", epochs=1)).fit()
    with pytest.raises(ValueError, match=r"loss: 'balce' -> 'ce'"):
        Trainer(tiny(tmp_path, name="r", epochs=1, loss="ce")).fit()
    # test-time settings may change: same weights, another classifier
    assert Trainer(tiny(tmp_path, name="r", epochs=1, classifier="crt")).resume()


def test_override_values_keep_strings():
    cfg = load_config(None, ["name=001", "pretrained=none", "aux_ratio=0:1:3", "epochs=4", "label_smoothing=0.1"])
    assert cfg.name == "001" and cfg.pretrained is None and cfg.aux_ratio == "0:1:3"
    assert cfg.epochs == 4 and cfg.label_smoothing == 0.1


def test_report_run_names_follow_the_whole_recipe():
    from ltkit.report import run_name

    base = load_config(ROOT / "configs" / "builtin.yaml")
    a = run_name(base, {"loss": "nsce", "aux": "neighbours"}, 0)
    assert a == run_name(base, {"loss": "nsce", "aux": "neighbours", "classifier": "crt"}, 0)
    assert a != run_name(load_config(ROOT / "configs" / "builtin.yaml", ["lr=0.01"]), {"loss": "nsce", "aux": "neighbours"}, 0)
    assert a != run_name(base, {"loss": "nsce", "aux": "neighbours"}, 1)


def test_reproducible_pins_threads_and_kernels_only_inside(tmp_path):
    """reproducible(cfg): cfg.threads and deterministic CPU kernels inside, the caller's settings after (even on error)."""
    outer_threads, outer_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with reproducible(tiny(tmp_path, threads=1, device="cpu")):
                assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(outer_threads)
        torch.use_deterministic_algorithms(outer_det)


def test_step_budget_curves_and_tensorboard(tiny_world, tmp_path):
    """steps=N: epochs follow (the last one partial), the schedule ends at N, and every epoch is logged twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ltkit.viz.curves import training_curves

    t = Trainer(tiny(tmp_path, name="budget", eval_every=1, epochs=50))
    n = t.steps_per_epoch + t.steps_per_epoch // 2  # one and a half epochs, whatever `epochs` says
    t = Trainer(tiny(tmp_path, name="budget", eval_every=1, epochs=50, steps=n))
    assert t.total_steps == n and t.epochs == 2
    torch.use_deterministic_algorithms(False)
    try:  # deterministic CPU kernels only while the Trainer works: the caller's process-wide setting comes back
        res = t.fit().evaluate()
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert res["steps"] == t.step == n and res["images_seen"] == n * t.cfg.batch_size and res["threads"] == 1
    assert t.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # cosine reaches zero at the budget
    rows = [json.loads(x) for x in (t.cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in rows] == [t.steps_per_epoch, n] and rows[-1]["epoch_steps"] == n - t.steps_per_epoch
    acc = EventAccumulator(str(t.cfg.run_dir / "tensorboard")).Reload()
    assert {"train/loss", "train/lr", "val/overall", "val/many", "val/medium", "val/few"} <= set(acc.Tags()["scalars"])
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("val/overall")] == \
           [(r["steps"], round(r["val_overall"], 6)) for r in rows]
    fig = training_curves({"a": t.cfg.run_dir, "b": t.cfg.run_dir})
    assert [len(ax.lines) for ax in fig.axes] == [2] * 6


def test_head_warmup_trains_the_head_alone(tiny_world, tmp_path):
    cfg = tiny(tmp_path, name="warm", head_warmup_epochs=1)
    t = Trainer(cfg)
    head = {k for k, _ in t.model.get_classifier().named_parameters()}
    before = weights(t.model)
    t.fit(stop_after=1)
    after = weights(t.model)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("head.fc.") for k in moved), moved  # BN statistics of the encoder too
    assert {f"head.fc.{k}" for k in head} <= moved
    t.fit()  # epoch 2: everything trains
    assert any(not torch.equal(after[k], v) for k, v in weights(t.model).items() if not k.startswith("head."))
    with pytest.raises(ValueError, match="head_warmup_epochs=2"):
        Trainer(tiny(tmp_path, name="warm2", head_warmup_epochs=2))


def test_head_norm_bn_and_its_direct_classifier(tiny_world, tmp_path):
    from ltkit.evaluate import masked_linear
    from ltkit.features import extract_features
    from ltkit.models import NormLinear

    cfg = tiny(tmp_path, name="bn", head_norm="bn", aux="neighbours", epochs=1)
    prepare(cfg)  # the map the train command builds before the trainer reads it
    t = Trainer(cfg).fit()
    head = t.model.get_classifier()
    assert isinstance(head, NormLinear) and not head.norm.affine and head.norm.num_batches_tracked > 0
    images = t.data.test
    feats = torch.as_tensor(extract_features(t.model, images, t.eval_tf))
    t.model.eval()
    with torch.no_grad():
        logits = head(feats)  # the trained L + K head, BatchNorm in eval mode
        direct = masked_linear(t.model, t.L)(feats)
    torch.testing.assert_close(direct, logits[:, :t.L], atol=1e-4, rtol=1e-4)


def test_released_recipe_trains_with_pre_mix_labels(tiny_world, tmp_path, monkeypatch):
    """Hard mask (+ auxiliary blind), released sampling, Mixup mixed in a loader worker: the loss sees pre-mix labels."""
    from ltkit.losses import NeighbourSilencingLoss

    seen = []
    real = NeighbourSilencingLoss.forward

    def spy(self, logits, target, labels=None):
        seen.append((target.ndim, None if labels is None else labels.clone()))
        return real(self, logits, target, labels)

    monkeypatch.setattr(NeighbourSilencingLoss, "forward", spy)
    cfg = tiny(tmp_path, name="released", aux="neighbours", loss="nsce", ns_mode="mask", ns_aux_blind=True,
               aux_sampling="released", epochs=1, num_workers=1)
    prepare(cfg)
    t = Trainer(cfg)
    assert t.loss_fn.mode == "mask" and t.sampler.rule == "released"
    res = t.fit().evaluate()
    assert 0 <= res["overall"] <= 1 and seen
    assert all(ndim == 2 and labels is not None and labels.max() < t.L + t.K for ndim, labels in seen)
    assert any((labels >= t.L).any() for _, labels in seen)  # auxiliary samples reach the mask


@pytest.mark.parametrize("over,match", [({"ns_mode": "hard"}, "ns_mode='hard'"),
                                        ({"loss": "nsce", "ns_below": 100}, "set ns_mode=mask"),
                                        ({"ns_mode": "mask"}, "loss='balce' has none"),
                                        ({"aux_sampling": "paper"}, "aux_sampling"), ({"head_norm": "ln"}, "head_norm"),
                                        ({"steps": 0}, "steps=0")])
def test_training_settings_are_checked(tmp_path, over, match):
    from ltkit.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        Trainer(tiny(tmp_path, **over))


@pytest.mark.slow
def test_same_checkpoint_whatever_omp_num_threads(tiny_world, tmp_path, world_cache):
    """The same command under OMP_NUM_THREADS=1 and =2 trains tensor-equal weights (threads are pinned)."""
    args = ["epochs=1", "eval_every=0", "aux=neighbours", "loss=nsce", f"out_dir={tmp_path}"]
    _run_here(args + ["name=omp1"], threads=1)  # as a process started with OMP_NUM_THREADS=1 runs it
    env = {**os.environ, "LTKIT_CACHE": str(world_cache), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    _run(args + ["name=omp2"], env)  # a real process: OpenMP reads the variable when it starts
    a, b = (torch.load(tmp_path / f"omp{n}" / "checkpoints" / "last.pt", weights_only=False) for n in "12")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads((tmp_path / "omp2" / "results.json").read_text())["threads"] == 1
