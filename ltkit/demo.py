"""The main job (`make demo`): the built-in world, its figures, the runs, then every numbered notebook in order.

Progress goes to the log: one line per stage and per notebook, and papermill's bar over each
notebook's cells, so a cold run (minutes of training) never sits silent.

The trainings notebooks 03 and 04 read (Tab. 6's rows, which include Tab. 2's, and the Fig. 5
ablations; one seed) are trained first, `--workers` at a time in separate single-threaded
processes, into the same `runs/` cache the notebooks use: the notebooks then evaluate and draw
without training anything twice. The 3-seed tables of docs/results.md come from a separate command
(`python -m ltkit compare --seeds 0 1 2`, see README), not from the main job.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from pathlib import Path

from ltkit import notebooks, report, viz
from ltkit.artifacts.accepted import training_overrides
from ltkit.artifacts.layout import FILTER_JSON
from ltkit.config import load_config
from ltkit.errors import ArgumentParser
from ltkit.io import read_json, write_json
from ltkit.paths import from_root, repo_root
from ltkit.pipeline import prepare
from ltkit.train import Trainer
from ltkit.viz import catalogue
from ltkit.viz.runs import run_config
from ltkit.world import PRESETS, load_world

log = logging.getLogger(__name__)


# The main job's trainings, known up front: one seed, and each Fig. 5 setting at the preset's value
# and one other (None is the preset's ratio 1 : ceil(Nh/Nm) : ceil(Nh/Nt)). The full grids and 3 seeds
# are a separate command (README, docs/results.md): on 2 cores they take about an hour.
DEMO_SEEDS = [0]
DEMO_ABLATIONS = {"k": [1, 5], "aux_cap": [10, 50], "aux_ratio": ["0:1:3", None]}
# notebooks from this number on read the trainings; the ones before run while the trainings do
FIRST_READER = 3


def _notebook_parameters(preset: str) -> dict:
    """What the main job tells every notebook (each takes the names it declares)."""
    return {"preset": preset, "ablations": DEMO_ABLATIONS}


# ---------------------------------------------------------------------------------------------
# the trainings of notebooks 03 and 04, in parallel processes


def planned_trainings(base, seeds: list[int], ablations: dict) -> list[tuple[dict, int]]:
    """(overrides, seed) of every distinct training behind Tab. 2 / Tab. 6 and the ablations, longest first.

    Rows that share a training (same run name; they differ only in the classifier) appear once;
    the ablation rows are built as `report.ablation` builds them, so the run names match.
    """
    method = report.COMPONENTS["+ Direct Classifier"]
    rows = [(over, s) for over in report.COMPONENTS.values() for s in seeds]
    rows += [(method if v == getattr(base, key) else {**method, key: v}, s)
             for key, values in ablations.items() for v in values for s in seeds]
    unique = {report.run_name(base, over, s): (over, s) for over, s in reversed(rows)}
    # trainings with auxiliary data take about twice as long: start them first so the workers end together
    return sorted(unique.values(), key=lambda r: (r[0].get("aux", base.aux) == "none", r[1]))


def default_workers() -> int:
    """One training process per core, plus one.

    The cores are shared with notebooks 01-02 at the start, and the last trainings would otherwise
    leave a core idle while one runs alone (nine trainings on two cores). A process has one torch
    thread, so an extra process time-slices instead of spinning; its digits do not change.
    """
    return len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


def _train(base, overrides: dict, seed: int) -> dict:
    """One training in a worker process (one torch thread); its results land in the runs cache."""
    import torch

    torch.set_num_threads(1)
    t = time.time()
    report.run_method(base, overrides, seed)
    return {"run": report.run_name(base, overrides, seed), "seconds": round(time.time() - t, 1)}


def missing_trainings(base, seeds: list[int], ablations: dict) -> list[tuple[dict, int]]:
    """The planned trainings whose results are not in the runs cache yet."""
    return [(o, s) for o, s in planned_trainings(base, seeds, ablations)
            if not (run_config(base, o, s).run_dir / f"results_{o.get('classifier', 'direct')}.json").exists()]


def prepare_shared_inputs(base, todo: list[tuple[dict, int]]) -> None:
    """Make the pool encoder and the neighbour map once here, so the workers do not race to make them."""
    for over, s in sorted(todo, key=lambda r: r[0].get("aux", base.aux) == "none"):
        cfg = run_config(base, over, s)
        prepare(cfg)
        Trainer(cfg)  # builds the model (encoder) and the auxiliary data, trains nothing
        return


def filtered_trainings(base, params: dict) -> list[tuple[object, dict, int]]:
    """Notebook 03's "filtered crawl" rows (+ SD, ours) when notebook 02 saved an accepted set for this dataset.

    Mirrors notebook 03's filter cell (same crawl folder, same overrides), so its runs are ready
    when it asks for them; (config, overrides, seed) of the ones not trained yet.
    """
    crawl = from_root(params.get("crawl", "crawl/builtin"))
    path = crawl / FILTER_JSON
    if not path.is_file() or read_json(path, "crawl filter settings").get("dataset") != base.dataset:
        return []
    filtered = load_config(from_root("configs") / f"{params['preset']}.yaml",
                           {"out_dir": base.out_dir, "progress": False, **params.get("overrides", {}),
                            **training_overrides(crawl)})
    rows = [(report.METHODS[n], s) for n in ("+ SD", "+ Ours (NS-CE, direct)") for s in params.get("seeds", DEMO_SEEDS)]
    return [(filtered, o, s) for o, s in rows
            if not (run_config(filtered, o, s).run_dir / f"results_{o.get('classifier', 'direct')}.json").exists()]


def run_notebooks(params: dict, executed: Path, root: Path, pool, base, jobs: list) -> tuple[list, list]:
    """Notebooks in order; those before FIRST_READER run while the trainings do, the rest after them."""
    ran, trained = [], []
    for nb_path in notebooks.numbered_notebooks():
        if jobs is not None and int(nb_path.name[:2]) >= FIRST_READER:
            extra = filtered_trainings(base, params)  # notebook 02 has made the crawl they train on
            jobs += [pool.apply_async(_train, job) for job in extra]
            log.info("%d filtered-crawl trainings queued", len(extra))
            t = time.time()
            for job in jobs:
                trained.append(job.get())
                log.info("trained %s in %.0fs", trained[-1]["run"], trained[-1]["seconds"])
            jobs = None
            log.info("waited %.0fs for the last trainings", time.time() - t)
        t = time.time()
        log.info("notebook %s ...", nb_path.name)
        notebooks.execute(nb_path, executed / nb_path.name, params, root)
        ran.append({"notebook": nb_path.name, "seconds": round(time.time() - t, 1)})
        log.info("%s done in %.0fs", nb_path.name, ran[-1]["seconds"])
    for job in jobs or []:
        trained.append(job.get())
    return ran, trained


# ---------------------------------------------------------------------------------------------
# the job


def _world_figures(world, preset: str, figs: Path) -> list[Path]:
    """The world's contact sheet and class counts, catalogued with their numbers."""
    s = world.summary()
    out = viz.save_figure(viz.contact_sheet(world), "world_contact_sheet", figs)
    out += viz.save_figure(viz.class_count_plot(world.train_counts, title=f"{preset}: train counts"), "class_counts", figs)
    src = f"`python -m ltkit demo --preset {preset}`"
    catalogue.record(figs, "world_contact_sheet", "Train images of 16 target classes of the built-in world, from the "
                     "largest class to the smallest, with each class's train count.",
                     f"{s['targets']} target classes, {s['train']} train / {s['val']} val / {s['test']} test images.",
                     src, order=-2)
    catalogue.record(figs, "class_counts", "Train images per target class, sorted, coloured by shot group: the long tail "
                     "the methods are compared on.", f"Head {s['head']}, tail {s['tail']} images; {s['many']} Many / "
                     f"{s['medium']} Medium / {s['few']} Few classes (thresholds 100 and 20).", src, order=-1)
    return out


def main(argv: list[str] | None = None) -> int:
    """Generate the world, draw its figures, train the runs, execute the notebooks headless, write a summary."""
    root = repo_root()
    p = ArgumentParser(prog="python -m ltkit demo", description=main.__doc__)
    p.add_argument("--preset", default="builtin", choices=sorted(PRESETS))
    p.add_argument("--figures", default=str(root / "figures"), help="where figures, README.md and summary.json go")
    p.add_argument("--executed", default=str(root / "build" / "notebooks"), help="executed notebook copies")
    p.add_argument("--timings", default=str(root / "build" / "demo_timings.json"),
                   help="seconds per stage (kept out of figures/, which a rerun leaves byte-identical)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="training processes at a time, one torch thread each (default: cores + 1)")
    p.add_argument("--no-notebooks", action="store_true", help="world and figures only")
    args = p.parse_args(argv)
    figs, executed = Path(args.figures), Path(args.executed)
    for folder in (figs, executed):  # a bad output path fails now, not after minutes of work
        folder.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    log.info("world %s ...", args.preset)
    world = load_world(PRESETS[args.preset])
    t_world = time.time() - t0
    out = _world_figures(world, args.preset, figs)
    log.info("world %s in %.1fs; figures: %s", args.preset, t_world, ", ".join(str(p) for p in out))
    params = _notebook_parameters(args.preset)
    ran, trained, planned = [], [], []
    if not args.no_notebooks:
        base = load_config(root / "configs" / f"{args.preset}.yaml",
                           {"out_dir": str(from_root(params.get("out_dir", "runs"))), "progress": False,
                            **params.get("overrides", {})})
        seeds, ablations = params.get("seeds", DEMO_SEEDS), params.get("ablations", DEMO_ABLATIONS)
        planned = sorted(report.run_name(base, o, s) for o, s in planned_trainings(base, seeds, ablations))
        todo = missing_trainings(base, seeds, ablations)
        if todo:
            prepare_shared_inputs(base, todo)
        log.info("%d trainings to do, %d processes at a time (one thread each)", len(todo), args.workers)
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by workers and kernels: one thread each on a shared CPU
        # leaving the block terminates the workers: a failed notebook does not wait for the trainings
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            jobs = [pool.apply_async(_train, (base, o, s)) for o, s in todo]
            ran, trained = run_notebooks(params, executed, root, pool, base, jobs)
    catalogue.write_readme(figs, intro=README_INTRO.format(preset=args.preset))
    # what was made goes beside the figures; how long it took, which differs run to run, goes to --timings
    summary = {"preset": args.preset, "world": world.summary(), "notebooks": [r["notebook"] for r in ran],
               "trainings": planned}
    write_json(figs / "summary.json", summary)
    timings = {"preset": args.preset, "world_seconds": round(t_world, 1), "trainings": trained,
               "training_workers": args.workers, "notebooks": ran, "total_seconds": round(time.time() - t0, 1)}
    write_json(Path(args.timings), timings)
    print(f"[demo] world {t_world:.0f}s | {len(trained)} trainings ({args.workers} processes, "
          f"{sum(r['seconds'] for r in trained):.0f} process-seconds) | "
          + " | ".join(f"{r['notebook']} {r['seconds']:.0f}s" for r in ran), flush=True)
    print(f"[demo] done in {timings['total_seconds']:.0f}s; figures and README in {figs}; timings: {args.timings}")
    return 0


README_INTRO = """Written by the main job (`make demo`, preset `{preset}`): every figure with the numbers that produced
it and one sentence on what it shows. PDFs are for papers (no creation date inside, so an unchanged
figure stays byte-identical), PNGs for reading here. `summary.json` lists the world, the trainings and the
notebooks; how long each took is in `build/demo_timings.json` (it differs run to run, so it stays out of here)."""
