"""`python -m ltkit STAGE ...`: each stage's module owns its arguments through a `main(argv)`."""
from __future__ import annotations

import importlib
import sys

STAGES = {
    "world": ("ltkit.world", "generate the built-in world and print its summary"),
    "demo": ("ltkit.demo", "the main job: world, figures, every numbered notebook in order"),
    "neighbours": ("ltkit.neighbours", "search neighbour categories for target classes"),
    "train": ("ltkit.train", "train a model from a config (target + auxiliary classes)"),
    "compare": ("ltkit.report", "the paper's method table (Tab. 2 / Tab. 6) on a preset, as markdown"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a stage; `python -m ltkit` alone lists them."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        print("usage: python -m ltkit STAGE [args...]\n\nstages:")
        for name, (_, text) in STAGES.items():
            print(f"  {name:<12} {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(STAGES[argv[0]][0])
    return int(module.main(argv[1:]) or 0)
