"""Paired per-seed differences between two table rows, and the rule that calls them.

Rows trained with the same seed share the target data, the initialisation draw and the batch order
of the target images, so the per-seed difference d_s = A_s - B_s has a smaller spread than either
row. With n seeds, SE = sd(d) / sqrt(n) (sample sd); a difference is *called* when
|mean(d)| > 2 SE, else it is *undecided* (the rule of docs/testbed_photos.md, fixed before the runs).

    python -m ltkit.paired --config configs/photos.yaml --seeds 0 1 2     # reads the finished runs
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ltkit.config import load_config, no_stray_arguments, split_overrides
from ltkit.errors import ArgumentParser
from ltkit.report import COMPONENTS, run_method

# (claim, row A, row B, the paper's direction: +1 A > B, 0 no direction claimed)
CLAIMS = [
    ("C1 neighbour categories help", "+ Neighbor Category", "Baseline", 1),
    ("C2 neighbour beat random categories", "+ Neighbor Category", "+ Random Category", 1),
    ("C3 random categories vs none (reported)", "+ Random Category", "Baseline", 0),
    ("C4 neighbour silencing helps", "+ Neighbor Silencing", "+ Neighbor Category", 1),
    ("C5 direct classifier beats cRT", "+ Direct Classifier", "+ Neighbor Silencing", 1),
    ("C6 the full method beats the baseline", "+ Direct Classifier", "Baseline", 1),
]


def paired(a: list[float], b: list[float]) -> tuple[float, float, bool]:
    """(mean difference, its standard error, called) of per-seed values, in the units given."""
    d = np.asarray(a, float) - np.asarray(b, float)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se, bool(len(d) > 1 and abs(d.mean()) > 2 * se)


def verdict(mean: float, called: bool, direction: int) -> str:
    """supports / contradicts / undecided (or called / undecided where no direction is claimed)."""
    if not called:
        return "undecided"
    if direction == 0:
        return "called"
    return "supports" if mean * direction > 0 else "contradicts"


def claims_table(results: dict[str, list[dict]], keys: tuple[str, ...] = ("overall", "few")) -> str:
    """Markdown: per claim and metric, the per-seed differences (points), mean ± SE and the verdict."""
    lines = ["| claim | A − B | metric | per seed | mean ± SE | verdict |", "|---|---|---|---|---|---|"]
    for claim, a, b, direction in CLAIMS:
        for key in keys:
            va, vb = [r[key] * 100 for r in results[a]], [r[key] * 100 for r in results[b]]
            m, se, called = paired(va, vb)
            per = ", ".join(f"{x - y:+.1f}" for x, y in zip(va, vb))
            lines.append(f"| {claim} | {a} − {b} | {key} | {per} | {m:+.1f} ± {se:.1f} | {verdict(m, called, direction)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the claims table of a preset's finished (or missing: then trained) table runs."""
    p = ArgumentParser(prog="python -m ltkit.paired", description=main.__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("overrides", nargs="*")
    options, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = p.parse_args(options)
    no_stray_arguments(args.overrides)
    base = load_config(args.config, overrides)
    results = {name: [run_method(base, over, s) for s in args.seeds] for name, over in COMPONENTS.items()}
    print(claims_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
