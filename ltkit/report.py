"""Method comparisons and ablations in the layout of the paper's tables (Tab. 2, Tab. 6, Fig. 5).

A *method* is a set of config overrides plus the classifier used at test time. Methods that train
the same way share one run (e.g. NS-CE with the direct classifier and with cRT), so a table costs
one training per distinct recipe and seed.
"""
from __future__ import annotations

import argparse
import sys
import dataclasses
import hashlib
import json
import time

import numpy as np

from ltkit.io import write_json
from ltkit.train import TrainConfig, Trainer, load_config, recipe

# Tab. 2: the baseline and what the paper adds to it.
METHODS: dict[str, dict] = {
    "CE": {"loss": "ce", "aux": "none"},
    "Baseline (BalCE)": {"loss": "balce", "aux": "none"},
    "+ RD": {"loss": "balce", "aux": "random"},
    "+ SD": {"loss": "balce", "aux": "neighbours"},
    "+ Ours (NS-CE, direct)": {"loss": "nsce", "aux": "neighbours", "classifier": "direct"},
}
# Tab. 6: contributions of the components, one row each.
COMPONENTS: dict[str, dict] = {
    "Baseline": {"loss": "balce", "aux": "none"},
    "+ Random Category": {"loss": "balce", "aux": "random"},
    "+ Neighbor Category": {"loss": "balce", "aux": "neighbours", "classifier": "crt"},
    "+ Neighbor Silencing": {"loss": "nsce", "aux": "neighbours", "classifier": "crt"},
    "+ Direct Classifier": {"loss": "nsce", "aux": "neighbours", "classifier": "direct"},
    # not in the paper: the baseline with the same cRT classifier, so the cRT rows above have a fair reference
    "(extra) Baseline, cRT classifier": {"loss": "balce", "aux": "none", "classifier": "crt"},
}
COLUMNS = ("overall", "many", "medium", "few")


def run_name(base: TrainConfig, overrides: dict, seed: int) -> str:
    """A readable, stable run name: the method's overrides plus a hash of the whole training recipe.

    The test-time classifier is left out (direct and cRT share one training); any other change,
    in the preset or the overrides, gives a new name, so cached results are never reused wrongly.
    """
    train_keys = {k: v for k, v in sorted(overrides.items()) if k != "classifier"}
    cfg = dataclasses.replace(base, **train_keys, seed=seed)
    h = hashlib.sha1(json.dumps(recipe(cfg), sort_keys=True, default=str).encode())
    return f"{base.dataset}-{'-'.join(f'{k}{v}' for k, v in train_keys.items())}-s{seed}-{h.hexdigest()[:6]}"


def run_method(base: TrainConfig, overrides: dict, seed: int) -> dict:
    """Train (or resume / reuse) one recipe and evaluate it with the method's classifier."""
    classifier = overrides.get("classifier", "direct")
    cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if k != "classifier"}, seed=seed,
                              classifier=classifier, name=run_name(base, overrides, seed))
    out = cfg.run_dir / f"results_{classifier}.json"
    if out.exists():
        return json.loads(out.read_text())
    t = time.time()
    trainer = Trainer(cfg)
    res = trainer.fit().evaluate()
    res["seconds"] = round(time.time() - t, 1)  # training and evaluation done by this call
    if trainer.rank == 0:
        write_json(out, res)
    return res


def compare(base: TrainConfig, methods: dict[str, dict], seeds: list[int]) -> dict[str, list[dict]]:
    """Results of every method for every seed."""
    out = {}
    for name, over in methods.items():
        out[name] = []
        for s in seeds:
            print(f"[report] {name} seed {s}", flush=True)
            out[name].append(run_method(base, over, s))
    return out


def mean_std(rows: list[dict], key: str) -> tuple[float, float]:
    """Mean and standard deviation (over seeds) of one metric, in percent."""
    v = np.array([r[key] for r in rows], float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def markdown_table(results: dict[str, list[dict]], baseline: str | None = None) -> str:
    """Overall / Many / Medium / Few (mean ± std over seeds, %), with the change against a baseline row."""
    head = "| method | " + " | ".join(c.title() for c in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS) + "\n"
    lines = []
    for name, rows in results.items():
        cells = []
        for c in COLUMNS:
            m, s = mean_std(rows, c)
            cell = f"{m:.1f}" + (f" ± {s:.1f}" if len(rows) > 1 else "")
            if baseline and name != baseline and baseline in results:
                d = m - mean_std(results[baseline], c)[0]
                cell += f" ({d:+.1f})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def ablation(base: TrainConfig, key: str, values: list, seeds: list[int], method: dict | None = None) -> dict:
    """Fig. 5: vary one setting of the full method; returns {value: [results per seed]}."""
    method = method or METHODS["+ Ours (NS-CE, direct)"]
    # the preset's own value is the method's run itself: reuse it rather than train it again
    over = {v: method if v == getattr(base, key) else {**method, key: v} for v in values}
    return {v: [run_method(base, over[v], s) for s in seeds] for v in values}


def ablation_figure(ablations: dict[str, dict]):
    """One panel per ablated setting: Overall / Many / Medium / Few against the setting's values."""
    import matplotlib.pyplot as plt

    from ltkit.viz import SHOT_COLOURS

    fig, axes = plt.subplots(1, len(ablations), figsize=(4 * len(ablations), 3), squeeze=False)
    for ax, (key, res) in zip(axes[0], ablations.items()):
        xs = [str(v) for v in res]
        for c, col in (("overall", "black"), *SHOT_COLOURS.items()):
            ax.plot(xs, [mean_std(r, c)[0] for r in res.values()], "o-", color=col, label=c)
        ax.set_xlabel(key)
        ax.set_ylabel("accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit compare`: Tab. 2 and Tab. 6 on a preset, mean ± std over seeds, as markdown."""
    p = argparse.ArgumentParser(prog="python -m ltkit compare", description=main.__doc__)
    p.add_argument("--config", default="configs/builtin.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", help="markdown file to write (default: print only)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the preset")
    argv = sys.argv[1:] if argv is None else argv
    # key=value overrides may come anywhere, even right after the --seeds list
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = p.parse_args([a for a in argv if a not in overrides])
    base = load_config(args.config, overrides)
    t = time.time()
    methods = compare(base, METHODS, args.seeds)
    components = compare(base, COMPONENTS, args.seeds)
    cmd = "python -m ltkit compare " + " ".join(argv)
    text = (f"Command: `{cmd}`  \nPreset: `{args.config}` ({base.dataset}, {base.model}, {base.epochs} epochs), "
            f"seeds {args.seeds}; this command took {time.time() - t:.0f} s (runs already in `{base.out_dir}/` are reused).\n\n"
            "### Tab. 2 layout: baseline and additions (accuracy %, change against the baseline)\n\n"
            + markdown_table(methods, baseline="Baseline (BalCE)")
            + "\n### Tab. 6 layout: contributions of the components\n\n"
            + markdown_table(components, baseline="Baseline"))
    print(text)
    if args.out:
        from ltkit.io import atomic_write_text

        atomic_write_text(args.out, text)
    return 0
