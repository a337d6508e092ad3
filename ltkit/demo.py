"""The main job (`make demo`): the built-in world, its figures, then every numbered notebook in order."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ltkit import notebooks, viz
from ltkit.io import write_json
from ltkit.world import PRESETS, load_world

ROOT = Path(__file__).resolve().parent.parent


def _notebook_parameters(preset: str) -> dict:
    """What the main job tells every notebook (each takes the names it declares)."""
    return {"preset": preset}


def main(argv: list[str] | None = None) -> int:
    """Generate the world, draw its figures, execute the notebooks headless, write a summary."""
    p = argparse.ArgumentParser(prog="python -m ltkit demo", description=main.__doc__)
    p.add_argument("--preset", default="builtin", choices=sorted(PRESETS))
    p.add_argument("--figures", default=str(ROOT / "figures"), help="where figures and summary.json go")
    p.add_argument("--executed", default=str(ROOT / "build" / "notebooks"), help="executed notebook copies")
    p.add_argument("--no-notebooks", action="store_true", help="world and figures only")
    args = p.parse_args(argv)

    t0 = time.time()
    world = load_world(PRESETS[args.preset])
    t_world = time.time() - t0
    figs = Path(args.figures)
    out = viz.save_figure(viz.contact_sheet(world), figs / "world_contact_sheet")
    out += viz.save_figure(viz.class_count_plot(world.train_counts, title=f"{args.preset}: train counts"),
                           figs / "class_counts")
    print(f"[demo] world {args.preset} in {t_world:.1f}s; figures: " + ", ".join(str(p) for p in out), flush=True)
    ran = [] if args.no_notebooks else notebooks.run_all(_notebook_parameters(args.preset), args.executed, ROOT)
    summary = {"preset": args.preset, "world": world.summary(), "world_seconds": round(t_world, 1),
               "notebooks": ran, "total_seconds": round(time.time() - t0, 1)}
    write_json(figs / "summary.json", summary)
    print(f"[demo] done in {summary['total_seconds']}s; summary: {figs / 'summary.json'}")
    return 0
