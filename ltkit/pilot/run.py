"""`python -m ltkit pilot --config CONFIG [--cell I] [pilot.key=value ...]`: the pilot from the shared config.

The pool follows `pilot.pool` (default: the config's dataset): a world preset (builtin,
builtin-tiny, ...), `cifar100` (data_root with cifar-100-python/) or `folders` (data_root with one
folder per class, `pilot.taxonomy` a Taxonomy JSON or "wordnet"). The encoder is `pilot.model`
with `pilot.pretrained` (default: the config's own model and weights; "pool" is the world's
pool-pretrained encoder, "hf" the timm weights from the Hugging Face cache, a path a weights file).
`pilot.features` says whether a cell probes that encoder's frozen features or trains the whole
model on the cell's images (`ltkit.pilot.learn`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ltkit.config import load_config
from ltkit.encoder import (Encoder, build_encoder, feature_cache_dir, pretrained_spec, pretrained_weights,
                           resolve_pretrained)
from ltkit.errors import ArgumentParser, UserError
from ltkit.io import atomic_write_text
from ltkit.models import create_model
from ltkit.paths import from_root
from ltkit.pilot.draw import grid_level
from ltkit.pilot.grid import (RESULTS_VERSION, Cell, collect, gap_figure, grid_cells, markdown_table, recipe_hash,
                              run_grid, summarise, trained_figure)
from ltkit.pilot.learn import seeded_model, train_cell
from ltkit.pilot.pools import Pool, cifar100_pool, folder_pool, world_pool
from ltkit.pretrain import PRETRAIN_THREADS
from ltkit.viz import catalogue, save_figure
from ltkit.world import PRESETS, load_world

CIFAR_NAMES = ("cifar100", "cifar100-lt")


def _settings(cfg) -> tuple[str, str, str | None]:
    """(pool name, encoder model, pretrained) after the pilot section's defaults."""
    p = cfg.pilot
    return p.pool or cfg.dataset, p.model or cfg.model, p.pretrained if p.pretrained is not None else cfg.pretrained


def build_pool(cfg, world=None) -> tuple[Pool, object]:
    """The pool named by the config, and the world behind it (None for real data)."""
    name, p = _settings(cfg)[0], cfg.pilot
    if name in PRESETS:
        world = world if world is not None else load_world(PRESETS[name])
        return world_pool(world, p.head, p.test_per_class), world
    if not cfg.data_root:
        known = ", ".join([*PRESETS, *CIFAR_NAMES, "folders"])
        raise UserError(f"pilot pool {name!r} needs data_root= (known pools: {known})")
    if name in CIFAR_NAMES:
        return cifar100_pool(cfg.data_root), None
    if name == "folders":
        return folder_pool(cfg.data_root, p.taxonomy, p.test_per_class, cfg.seed), None
    raise UserError(f"unknown pilot pool {name!r}; expected a world preset ({', '.join(PRESETS)}), cifar100 or folders")


def _weights(pretrained: str | None, world) -> str | bool | None:
    """`pilot.pretrained` as `resolve_pretrained` takes it: None (scratch), True (HF cache), "pool[:...]" or a path."""
    weights = pretrained_weights(pretrained)
    if isinstance(weights, str) and weights.partition(":")[0] == "pool" and world is None:
        raise UserError("pilot.pretrained=pool needs a world pool (pilot.pool=builtin, ...)")
    return weights


def pilot_encoder(cfg, world=None) -> Encoder:
    """The frozen encoder `pilot.model` + `pilot.pretrained` (`ltkit.encoder`), a random one seeded by `seed`.

    On the CPU, where the pilot's recorded numbers were extracted (the model is small and the probe
    runs there too).
    """
    _, name, pretrained = _settings(cfg)
    spec = pretrained_spec(name, _weights(pretrained, world))
    return build_encoder(spec, world, img_size=cfg.pilot.img_size or cfg.img_size, device="cpu", seed=cfg.seed)


def build_trainer(cfg, world=None):
    """`train(train_images, test_images, head, ratio, seed, frac, groups)` for `pilot.features: trained`.

    Each cell trains a fresh `pilot.model` (weights `pilot.pretrained`, a new head over the drawn
    classes; the initialisation seeded by the cell's seed) for `pilot.train_steps` steps.
    """
    _, name, pretrained = _settings(cfg)
    weights, p = resolve_pretrained(_weights(pretrained, world), world, name), cfg.pilot  # trained once, here

    def build(num_classes: int) -> torch.nn.Module:
        return create_model(name, num_classes, img_size=p.img_size or cfg.img_size, pretrained=weights)

    def train(train_images, test_images, head, ratio, seed, frac, groups) -> dict:
        return train_cell(train_images, test_images, head, ratio, seed, seeded_model(build, seed), frac, groups,
                          steps=p.train_steps, lr=p.train_lr, batch_size=p.train_batch_size)
    return train


def cells_of(cfg) -> list[Cell]:
    """The grid's cells, in the order `--cell i` counts them."""
    p = cfg.pilot
    return grid_cells(p.superclasses, p.ratios, p.seeds)


@dataclass
class PilotRun:
    """The finished cells of a grid (rows of results.csv) and the folder that holds them."""

    rows: list[dict]
    out_dir: Path


def run_pilot(cfg, only: int | None = None, world=None, progress: bool | None = None) -> PilotRun:
    """Run the grid (every unfinished cell, or cell `only`); returns the results of all its finished cells.

    The grid lives in `pilot.out_dir`, else in `<out_dir>/pilot-<pool>-<hash>`, the hash naming the
    pool, encoder weights and settings: the same recipe resumes, a new one (say, a re-trained
    encoder) starts a grid of its own instead of mixing with the old cells.
    """
    p = cfg.pilot
    pool, world = build_pool(cfg, world)
    # an impossible grid fails now, not after the encoder is built (it may train for minutes)
    grid_level(pool.taxonomy, p.num_classes, p.superclasses, p.level, pool.eligible(p.head, p.test_per_class), pool.name)
    if p.features not in ("frozen", "trained"):
        raise UserError(f"pilot.features={p.features!r}: expected frozen or trained")
    enc = pilot_encoder(cfg, world)  # trained: its weights hash names the initialisation
    probe = dict(hidden=p.hidden, steps=p.steps, batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay)
    train = None
    if p.features == "trained":
        probe = dict(features="trained", steps=p.train_steps, batch_size=p.train_batch_size, lr=p.train_lr,
                     optimizer="sgd-onecycle", loss="balce", threads=PRETRAIN_THREADS)
        train = build_trainer(cfg, world)
    settings = [RESULTS_VERSION, pool.key, enc.key, p.num_classes, str(p.level), p.head, p.test_per_class, probe,
                p.head_tail_frac]
    out = Path(p.out_dir or Path(cfg.out_dir) / f"pilot-{_settings(cfg)[0]}-{recipe_hash(settings)[:8]}")
    run_grid(pool, enc, cells_of(cfg), out, num_classes=p.num_classes, head=p.head,
             test=p.test_per_class, level=p.level, probe=probe, frac=p.head_tail_frac, only=only,
             cache_dir=feature_cache_dir(), progress=cfg.progress if progress is None else progress,
             train=train)
    names = {c.name for c in cells_of(cfg)}  # the folder may hold cells of a larger grid of this recipe
    return PilotRun([r for r in collect(out) if r["cell"] in names], out)


def save_outputs(cfg, run: PilotRun, figures: str | Path | None = None) -> dict:
    """Write the tables (markdown) beside results.csv and the figure; returns their paths and the summary.

    Frozen features: the gap table and `pilot_gap_<pool>`. Trained features: the gap and the relative
    tail accuracy tables and `pilot_trained_<pool>` (both panels).
    """
    pool = _settings(cfg)[0]
    summary = summarise(run.rows)
    table = markdown_table(summary)
    folder = Path(figures) if figures else from_root("figures")
    if cfg.pilot.features == "trained":
        rel = markdown_table(summary, "tail_rel")
        atomic_write_text(run.out_dir / "gap_table.md", "<!-- head - tail accuracy (points), mean ± std over seeds;"
                          f" trained features -->\n{table}\n<!-- tail accuracy / tail accuracy at ratio 1 (%) -->\n{rel}")
        name = f"pilot_trained_{pool}"
        paths = save_figure(trained_figure(summary, f"{pool}, N = {cfg.pilot.num_classes}, trained"), folder / name)
        catalogue.record(folder, name, _gap_sentence(summary, cfg.pilot.num_classes, "a BalCE model trained on"),
                         f"Head - tail accuracy (points):\n\n{table}\nTail accuracy / tail at ratio 1 (%):\n\n{rel}",
                         f"`python -m ltkit pilot pilot.features=trained` ({pool})", order=-0.4)
        return {"summary": summary, "table": table + "\n" + rel, "figure": paths, "csv": run.out_dir / "results.csv"}
    note = "<!-- head - tail accuracy (points), mean ± std over seeds -->"
    atomic_write_text(run.out_dir / "gap_table.md", f"{note}\n{table}")
    paths = save_figure(gap_figure(summary, f"{pool}, N = {cfg.pilot.num_classes}"), folder / f"pilot_gap_{pool}")
    catalogue.record(folder, f"pilot_gap_{pool}", _gap_sentence(summary, cfg.pilot.num_classes),
                     f"Head - tail accuracy (points), mean ± std over seeds {cfg.pilot.seeds}:\n\n{table}",
                     f"notebooks/01_granularity_pilot.ipynb or `python -m ltkit pilot` ({pool})", order=-0.5)
    return {"summary": summary, "table": table, "figure": paths, "csv": run.out_dir / "results.csv"}


def _gap_sentence(summary: list[dict], num_classes: int, model: str = "a BalCE probe on") -> str:
    """What the gap figure shows, with the gap of each S at the most imbalanced ratio."""
    worst = min(r["ratio"] for r in summary)
    gaps = ", ".join(f"S = {r['superclasses']}: {r['gap']:.1f}" for r in
                     sorted((r for r in summary if r["ratio"] == worst), key=lambda r: r["superclasses"]))
    return (f"Granularity pilot: head-tail accuracy gap of {model} {num_classes} classes drawn over S "
            f"superclasses, against the imbalance ratio; at ratio {worst:g} the gaps are {gaps} points.")


def main(argv: list[str] | None = None) -> int:
    """Run the granularity pilot of a config; `--cell I` runs one cell (array jobs).

    User errors raise; `python -m ltkit pilot` prints them as one `error:` line and exits with 2.
    """
    ap = ArgumentParser(prog="python -m ltkit pilot", description=main.__doc__)
    ap.add_argument("--config", help="YAML preset, e.g. configs/builtin.yaml (default: the built-in defaults)")
    ap.add_argument("--cell", type=int, help="run only cell I of the grid (0-based; see --list)")
    ap.add_argument("--list", action="store_true", help="print the grid's cells and exit")
    ap.add_argument("--figures", help="folder for pilot_gap_<pool>.{pdf,png} (default: figures/)")
    ap.add_argument("overrides", nargs="*", help="key=value or pilot.key=value")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    cells = cells_of(cfg)
    if args.list:
        for i, c in enumerate(cells):
            print(f"{i}\t{c.name}")
        return 0
    t0 = time.time()
    run = run_pilot(cfg, args.cell)
    print(f"[pilot] {len(run.rows)}/{len(cells)} cells finished in {run.out_dir} ({time.time() - t0:.1f}s)")
    if len(run.rows) == len(cells):  # array jobs: the last one to finish draws
        out = save_outputs(cfg, run, args.figures)
        print(out["table"], end="")
        print(f"[pilot] {out['csv']}; figure: " + ", ".join(str(p) for p in out["figure"]))
    return 0
