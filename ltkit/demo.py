"""The main job (`make demo`): the built-in world, its figures, then every numbered notebook in order.

Progress goes to the log: one line per stage and per notebook, and papermill's bar over each
notebook's cells, so a cold run (minutes of training) never sits silent.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ltkit import notebooks, viz
from ltkit.io import write_json
from ltkit.paths import repo_root
from ltkit.world import PRESETS, load_world

log = logging.getLogger(__name__)

ROOT = repo_root()  # old import path of notebooks written before ltkit.paths; new code: ltkit.paths.from_root


def _notebook_parameters(preset: str) -> dict:
    """What the main job tells every notebook (each takes the names it declares)."""
    return {"preset": preset}


def main(argv: list[str] | None = None) -> int:
    """Generate the world, draw its figures, execute the notebooks headless, write a summary."""
    root = repo_root()
    p = argparse.ArgumentParser(prog="python -m ltkit demo", description=main.__doc__)
    p.add_argument("--preset", default="builtin", choices=sorted(PRESETS))
    p.add_argument("--figures", default=str(root / "figures"), help="where figures and summary.json go")
    p.add_argument("--executed", default=str(root / "build" / "notebooks"), help="executed notebook copies")
    p.add_argument("--no-notebooks", action="store_true", help="world and figures only")
    args = p.parse_args(argv)
    figs, executed = Path(args.figures), Path(args.executed)
    for folder in (figs, executed):  # a bad output path fails now, not after minutes of work
        folder.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    log.info("world %s ...", args.preset)
    world = load_world(PRESETS[args.preset])
    t_world = time.time() - t0
    out = viz.save_figure(viz.contact_sheet(world), figs / "world_contact_sheet")
    out += viz.save_figure(viz.class_count_plot(world.train_counts, title=f"{args.preset}: train counts"),
                           figs / "class_counts")
    log.info("world %s in %.1fs; figures: %s", args.preset, t_world, ", ".join(str(p) for p in out))
    ran = [] if args.no_notebooks else notebooks.run_all(_notebook_parameters(args.preset), executed, root)
    summary = {"preset": args.preset, "world": world.summary(), "world_seconds": round(t_world, 1),
               "notebooks": ran, "total_seconds": round(time.time() - t0, 1)}
    write_json(figs / "summary.json", summary)
    print(f"demo done in {summary['total_seconds']}s; summary: {figs / 'summary.json'}")
    return 0
