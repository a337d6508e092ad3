"""Paired per-seed differences between two table rows, and the rule that calls them.

Rows trained with the same seed share the target data, the initialisation draw and the batch order
of the target images, so the per-seed difference d_s = A_s - B_s has a smaller spread than either
row. With n seeds, SE = sd(d) / sqrt(n) (sample sd). Each testbed fixed its rule before its runs:

- `2se` (docs/testbed_photos.md): called when |mean(d)| > 2 SE;
- `t05` (docs/testbed.md): called when a paired t-test rejects "no difference" at two-sided 0.05,
  |mean(d)| > t(0.975, n - 1) SE (4.30 SE at 3 seeds): at 3 seeds `2se` calls pure noise 18 % of the time.

Otherwise a claim is *undecided*.

    python -m ltkit.paired --config configs/photos.yaml --seeds 0 1 2                  # photos claims, 2se
    python -m ltkit.paired --config configs/testbed.yaml --claims testbed --seeds 0 1 2 # testbed claims, t05
    python -m ltkit.paired --config configs/builtin.yaml --claims builtin --seeds 0 1 2 # Tab. 6 claims, t05
    python -m ltkit.paired --config configs/builtin.yaml --claims curation --seeds 0 1 2 # Fig. 5 claims, t05
"""
from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np

from ltkit.config import load_config, no_stray_arguments, split_overrides
from ltkit.errors import ArgumentParser
from ltkit.report import COMPONENTS, CURATION_ROWS, TESTBED_ROWS, run_method

FULL = next(iter(CURATION_ROWS))  # the full method at the preset's curation settings

# (claim, row A, row B, the paper's direction: +1 A > B, 0 no direction claimed)
CLAIMS = [
    ("C1 neighbour categories help", "+ Neighbor Category", "Baseline", 1),
    ("C2 neighbour beat random categories", "+ Neighbor Category", "+ Random Category", 1),
    ("C3 random categories vs none (reported)", "+ Random Category", "Baseline", 0),
    ("C4 neighbour silencing helps", "+ Neighbor Silencing", "+ Neighbor Category", 1),
    ("C5 direct classifier beats cRT", "+ Direct Classifier", "+ Neighbor Silencing", 1),
    ("C6 the full method beats the baseline", "+ Direct Classifier", "Baseline", 1),
]


# the testbed's four claims on its own rows (report.TESTBED_ROWS)
TESTBED_CLAIMS = [
    ("C1 auxiliary neighbour data helps", "SD / BalCE", "No auxiliary data / BalCE", 1),
    ("C2 neighbours beat random categories", "SD / BalCE", "RD disjoint from SD / BalCE", 1),
    ("C3 neighbour silencing helps", "SD / NS-CE", "SD / BalCE", 1),
    ("C4 NS-CE needs the true parent", "SD / NS-CE", "SD, shuffled parents / NS-CE", 1),
]
# Fig. 5's curation claims on report.CURATION_ROWS (docs/results.md); the ratio claim is the paper's Many drop
CURATION_CLAIMS = [
    ("F1 five neighbour categories per class beat one (Fig. 5a)", FULL, "k = 1", 1),
    ("F2 a cap of 50 images per auxiliary class beats 10 (Fig. 5b)", FULL, "aux_cap = 10", 1),
    ("F3 auxiliary categories for head classes too: ratio auto beats 0:1:3 (Fig. 5c)", FULL, "aux_ratio = 0:1:3", 1),
]


class ClaimSet(NamedTuple):
    """The rows a world's claims read, the claims, the rule that calls them and the metrics each is judged on."""
    rows: dict[str, dict]
    claims: list
    rule: str
    keys: tuple[str, ...] = ("overall", "few")


# each world's claims with the rule fixed before its runs (docs/testbed_photos.md, docs/testbed.md, docs/results.md)
CLAIM_SETS = {"photos": ClaimSet(COMPONENTS, CLAIMS, "2se"), "builtin": ClaimSet(COMPONENTS, CLAIMS, "t05"),
              "testbed": ClaimSet(TESTBED_ROWS, TESTBED_CLAIMS, "t05"),
              "curation": ClaimSet(CURATION_ROWS, CURATION_CLAIMS, "t05", ("overall", "many", "few"))}


def threshold(n: int, rule: str) -> float:
    """How many standard errors a mean difference over n seeds must exceed to be called."""
    if rule == "2se":
        return 2.0
    if rule == "t05":
        from scipy.stats import t  # lazy: scipy is heavy and only this rule needs it

        return float(t.ppf(0.975, n - 1))
    raise ValueError(f"unknown rule {rule!r}; expected 2se or t05")


def paired(a: list[float], b: list[float], rule: str = "2se") -> tuple[float, float, bool]:
    """(mean difference, its standard error, called) of per-seed values, in the units given."""
    d = np.asarray(a, float) - np.asarray(b, float)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se, bool(len(d) > 1 and abs(d.mean()) > threshold(len(d), rule) * se)


def verdict(mean: float, called: bool, direction: int) -> str:
    """supports / contradicts / undecided (or called / undecided where no direction is claimed)."""
    if not called:
        return "undecided"
    if direction == 0:
        return "called"
    return "supports" if mean * direction > 0 else "contradicts"


def claims_table(results: dict[str, list[dict]], keys: tuple[str, ...] = ("overall", "few"),
                 claims: list = CLAIMS, rule: str = "2se") -> str:
    """Markdown: per claim and metric, the per-seed differences (points), mean ± SE and the verdict."""
    lines = ["| claim | A − B | metric | per seed | mean ± SE | verdict |", "|---|---|---|---|---|---|"]
    for claim, a, b, direction in claims:
        for key in keys:
            va, vb = [r[key] * 100 for r in results[a]], [r[key] * 100 for r in results[b]]
            m, se, called = paired(va, vb, rule)
            per = ", ".join(f"{x - y:+.1f}" for x, y in zip(va, vb))
            lines.append(f"| {claim} | {a} − {b} | {key} | {per} | {m:+.1f} ± {se:.1f} | {verdict(m, called, direction)} |")
    return "\n".join(lines) + "\n"


def claims(base, seeds: list[int], claim_set: str, classifier: str | None = None) -> str:
    """The rule and claims table of a claim set's rows (trained if missing), each row read with its own
    classifier or, with `classifier`, every row read with that one (cached beside the training)."""
    spec = CLAIM_SETS[claim_set]
    rows = spec.rows
    if classifier:
        rows = {name: {**over, "classifier": classifier} for name, over in rows.items()}
    results = {name: [run_method(base, over, s) for s in seeds] for name, over in rows.items()}
    return f"rule: {spec.rule}\n\n" + claims_table(results, spec.keys, spec.claims, spec.rule)


def main(argv: list[str] | None = None) -> int:
    """Print the claims table of a preset's finished (or missing: then trained) table runs."""
    p = ArgumentParser(prog="python -m ltkit.paired", description=main.__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--claims", choices=sorted(CLAIM_SETS), default="photos", help="which rows, claims and rule")
    p.add_argument("--classifier", choices=("direct", "crt"), help="read every row with this classifier instead")
    p.add_argument("overrides", nargs="*")
    options, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = p.parse_args(options)
    no_stray_arguments(args.overrides)
    print(claims(load_config(args.config, overrides), args.seeds, args.claims, args.classifier))
    return 0


if __name__ == "__main__":
    sys.exit(main())
