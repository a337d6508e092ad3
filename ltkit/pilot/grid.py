"""The resumable pilot grid: superclasses S x imbalance ratio x seed, one JSON per finished cell.

A cell either probes frozen features (`probe.run_cell`) or trains the model on its images
(`learn.train_cell`, passed in as `train`); the recipe in grid.json says which.

`out_dir/grid.json` holds the recipe (pool, encoder, N, level, head count, probe settings); every
cell writes `out_dir/cells/<name>.json` atomically the moment it finishes, so an interrupted grid
loses at most the cell in flight, and a re-run skips every cell whose file exists. `only=i` runs
cell i alone (one array job per cell); `collect` rebuilds the tidy `results.csv` from the cell files.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ltkit.encoder import Encoder
from ltkit.errors import UserError
from ltkit.io import atomic_write_text, read_json, write_json
from ltkit.pilot.draw import draw_classes, grid_level
from ltkit.pilot.pools import Pool, class_features, class_images
from ltkit.pilot.probe import run_cell
from ltkit.viz import MARKERS, figure, house_style

COLUMNS = ["cell", "pool", "num_classes", "superclasses", "level", "ratio", "seed", "head_acc", "tail_acc", "gap",
           "overall_acc", "tail_sibling_errors", "tail_sibling_chance", "train_images", "head_count", "tail_count",
           "head_classes", "tail_classes", "seconds"]
RESULTS_VERSION = 2  # bump when a cell's row changes: a new version is a new recipe, so old cells are not mixed in


@dataclass(frozen=True)
class Cell:
    """One run of the grid: S superclasses, an imbalance ratio (tail / head), a seed."""

    superclasses: int
    ratio: float
    seed: int

    @property
    def name(self) -> str:
        return f"S{self.superclasses}-r{self.ratio:g}-seed{self.seed}"


def grid_cells(superclasses: Iterable[int], ratios: Iterable[float], seeds: Iterable[int]) -> list[Cell]:
    """Every cell, draw by draw (S, then seed), ratios innermost: a draw's cells run back to back."""
    return [Cell(int(s), float(r), int(seed)) for s in superclasses for seed in seeds for r in ratios]


def recipe_hash(obj) -> str:
    """12 hex digits of sha256 over the canonical JSON (sorted keys) of a recipe."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _open_grid(out_dir: Path, recipe: dict) -> str:
    """Write grid.json, or check that an existing one has the same recipe; returns the recipe hash."""
    path = out_dir / "grid.json"
    if path.is_file():
        old = read_json(path, "pilot grid file").get("recipe", {})
        diff = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
        if diff:
            raise UserError(f"{path}: this folder holds a pilot grid with another recipe (differs in: {', '.join(diff)});"
                            " choose another out_dir or delete it")
    else:
        write_json(path, {"recipe": recipe})
    return recipe_hash(recipe)


def cell_path(out_dir: str | Path, cell: Cell) -> Path:
    """Where a cell's result goes."""
    return Path(out_dir) / "cells" / f"{cell.name}.json"


def run_grid(pool: Pool, encoder: Encoder, cells: Sequence[Cell], out_dir: str | Path, *,
             num_classes: int, head: int, test: int, level: int | str = "auto", probe: dict | None = None,
             frac: float = 1 / 3, only: int | None = None, cache_dir: str | Path | None = None,
             progress: bool = False, train: Callable | None = None) -> list[Cell]:
    """Run the cells not yet finished (or only cell `only`); returns the cells this call computed.

    Without `train`, each cell probes the frozen features of `encoder` (cached per image). With it, each
    cell calls `train(train_images, test_images, head, ratio, seed, frac, groups)` on the drawn
    classes' uint8 images (kept in memory while the cells of one draw run) and `probe` should
    describe that training for the recipe.
    """
    out_dir, probe = Path(out_dir), dict(probe or {})
    eligible = pool.eligible(head, test)
    # one level for the whole grid, from its largest S, so that --cell i jobs agree on it
    level = grid_level(pool.taxonomy, num_classes, [c.superclasses for c in cells], level, eligible, pool.name)
    recipe = {"version": RESULTS_VERSION, "pool": pool.name, "pool_key": pool.key, "encoder": encoder.key,
              "num_classes": num_classes, "level": level, "head": head, "test": test, "probe": probe, "frac": frac}
    rhash = _open_grid(out_dir, recipe)
    if only is not None:
        if not 0 <= only < len(cells):
            raise UserError(f"--cell {only}: the grid has cells 0..{len(cells) - 1}")
        cells = [cells[only]]
    todo = [c for c in cells if not _finished(cell_path(out_dir, c), rhash)]
    bar = _bar(len(todo), "pilot cells", progress)
    done, memo = [], {}
    for cell in todo:
        t0 = time.perf_counter()
        draw = draw_classes(pool.taxonomy, num_classes, cell.superclasses, cell.seed, level, eligible, pool.name)
        idx = pool.index(draw.classes)
        if train is None:
            feats = class_features(pool, idx, encoder, head, test, cache_dir)
            res = run_cell([feats[c][0] for c in idx], [feats[c][1] for c in idx], head, cell.ratio, cell.seed, frac,
                           groups=draw.superclasses, **probe)
        else:  # the cells of a draw run back to back (grid_cells): render its images once
            memo = {c: memo[c] for c in idx if c in memo}
            memo.update(class_images(pool, [c for c in idx if c not in memo], head, test))
            res = train([memo[c][0] for c in idx], [memo[c][1] for c in idx], head, cell.ratio, cell.seed, frac,
                        draw.superclasses)
        row = {"cell": cell.name, "pool": pool.name, "num_classes": num_classes, "superclasses": cell.superclasses,
               "level": level, "ratio": cell.ratio, "seed": cell.seed, **res, "seconds": round(time.perf_counter() - t0, 2)}
        write_json(cell_path(out_dir, cell), {"recipe_hash": rhash, "cell": cell.name, "row": row,
                                              "classes": list(draw.classes), "superclass_of": list(draw.superclasses)})
        done.append(cell)
        bar.update(1)
    bar.close()
    collect(out_dir)
    return done


def _finished(path: Path, rhash: str) -> bool:
    """A cell file of this recipe exists (a file of another recipe cannot be here: grid.json guards)."""
    if not path.is_file():
        return False
    return read_json(path, "pilot cell file").get("recipe_hash") == rhash


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled)


def collect(out_dir: str | Path) -> list[dict]:
    """Rows of every finished cell, sorted; rewrites `out_dir/results.csv` (one row per cell) atomically."""
    out_dir = Path(out_dir)
    rows = [read_json(p, "pilot cell file")["row"] for p in sorted((out_dir / "cells").glob("*.json"))]
    rows.sort(key=lambda r: (r["superclasses"], -r["ratio"], r["seed"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    return rows


def read_results(path: str | Path) -> list[dict]:
    """The rows of a results.csv, numbers as numbers."""
    with open(path, newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


METRICS = ("gap", "head_acc", "tail_acc", "overall_acc", "tail_sibling_errors", "tail_sibling_chance", "tail_rel")


def relative_tail(rows: Sequence[dict]) -> list[dict]:
    """Rows with `tail_rel`: tail accuracy over the same draw's tail accuracy at ratio 1 (%), NaN without that cell.

    The same draw is the same (S, seed): its ratio-1 cell has the same classes, so the ratio takes
    out how hard the draw is, which differs between S (the raw gap does not).
    """
    base = {(int(r["superclasses"]), int(r["seed"])): _float(r.get("tail_acc")) for r in rows
            if float(r["ratio"]) == 1.0}
    out = []
    for r in rows:
        t1 = base.get((int(r["superclasses"]), int(r["seed"])), math.nan)
        rel = 100 * _float(r.get("tail_acc")) / t1 if t1 and not math.isnan(t1) else math.nan
        out.append({**r, "tail_rel": rel})
    return out


def summarise(rows: Sequence[dict], metrics: Sequence[str] = METRICS) -> list[dict]:
    """Mean and sample std over seeds of each metric, per (S, ratio); seeds without a value (NaN) are left out."""
    groups: dict[tuple, list[dict]] = {}
    for r in relative_tail(rows):
        groups.setdefault((int(r["superclasses"]), float(r["ratio"])), []).append(r)
    out = []
    for (s, ratio), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        row = {"superclasses": s, "ratio": ratio, "seeds": len(rs)}
        for m in metrics:
            v = np.array([_float(r.get(m)) for r in rs])
            v = v[~np.isnan(v)]
            row[m] = float(v.mean()) if len(v) else math.nan
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out.append(row)
    return out


def _float(v) -> float:
    """A CSV or JSON value as a float; missing or empty is NaN (rows written before a metric existed)."""
    return math.nan if v is None or v == "" else float(v)


def markdown_table(summary: Sequence[dict], metric: str = "gap") -> str:
    """Rows S, columns ratio: `mean ± std` over seeds (points)."""
    ratios = sorted({r["ratio"] for r in summary}, reverse=True)
    sizes = sorted({r["superclasses"] for r in summary})
    cell = {(r["superclasses"], r["ratio"]): r for r in summary}
    lines = ["| S \\ ratio | " + " | ".join(f"{x:g}" for x in ratios) + " |", "|---" * (len(ratios) + 1) + "|"]
    for s in sizes:
        vals = [f"{cell[s, x][metric]:.1f} ± {cell[s, x][metric + '_std']:.1f}" if (s, x) in cell else "–"
                for x in ratios]
        lines.append(f"| {s} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def gap_figure(summary: Sequence[dict], title: str = ""):
    """Head-tail gap vs imbalance ratio (log x, most imbalanced on the right); a line per S, shaded ± std."""
    fig, ax = figure("single")
    with house_style():
        _ratio_lines(ax, summary, "gap", "head − tail accuracy (points)")
        seeds = max(r["seeds"] for r in summary)
        ax.set_title(title + (": " if title else "") + f"mean ± std over {seeds} seeds")
        ax.legend(title="superclasses", loc="upper left")
    return fig


def trained_figure(summary: Sequence[dict], title: str = ""):
    """Two panels against the imbalance ratio: the head-tail gap and the relative tail accuracy (a line per S)."""
    fig, (a, b) = figure("double", ncols=2)
    with house_style():
        _ratio_lines(a, summary, "gap", "head − tail accuracy (points)")
        _ratio_lines(b, summary, "tail_rel", "tail accuracy / tail at ratio 1 (%)", zero=False)
        seeds = max(r["seeds"] for r in summary)
        fig.suptitle(title + (": " if title else "") + f"mean ± std over {seeds} seeds")
        a.legend(title="superclasses", loc="upper left")
    return fig


def _ratio_lines(ax, summary: Sequence[dict], metric: str, ylabel: str, zero: bool = True) -> None:
    """A line per S of `metric` against the ratio (log x, inverted), shaded ± std."""
    for i, s in enumerate(sorted({r["superclasses"] for r in summary})):
        rs = sorted((r for r in summary if r["superclasses"] == s), key=lambda r: r["ratio"])
        x = np.array([r["ratio"] for r in rs])
        m, sd = np.array([r[metric] for r in rs]), np.array([r[metric + "_std"] for r in rs])
        line, = ax.plot(x, m, marker=MARKERS[i % len(MARKERS)], label=f"S = {s}")
        ax.fill_between(x, m - sd, m + sd, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ratios = sorted({r["ratio"] for r in summary})
    ax.set_xticks(ratios, [f"{x:g}" for x in ratios])
    ax.minorticks_off()
    if zero:
        ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("imbalance ratio (tail / head)")
    ax.set_ylabel(ylabel)


def granularity_effect(summary: Sequence[dict], ratio: float) -> dict:
    """At one ratio: the gap of the finest (smallest S) and coarsest (largest S) draws, their difference
    (coarse - fine, points), its standard error over seeds, and the gaps of every S in order."""
    at = sorted((r for r in summary if r["ratio"] == ratio), key=lambda r: r["superclasses"])
    if len(at) < 2:
        raise UserError(f"ratio {ratio:g}: need results for at least two values of S")
    fine, coarse = at[0], at[-1]
    se = math.sqrt(fine["gap_std"] ** 2 / fine["seeds"] + coarse["gap_std"] ** 2 / coarse["seeds"])
    gaps = [r["gap"] for r in at]
    return {"ratio": ratio, "fine_s": fine["superclasses"], "coarse_s": coarse["superclasses"],
            "fine_gap": fine["gap"], "coarse_gap": coarse["gap"], "difference": coarse["gap"] - fine["gap"],
            "se": se, "gaps": dict(zip([r["superclasses"] for r in at], gaps)),
            "rising_steps": int(sum(b > a for a, b in zip(gaps, gaps[1:]))), "steps": len(gaps) - 1}
