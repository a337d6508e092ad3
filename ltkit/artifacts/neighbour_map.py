"""`neighbours.csv`: one row per proposed name; kept rows get auxiliary class ids L..L+K-1.

`load_neighbour_map` is what training reads: the auxiliary names and `aux_parent`, the target class
each auxiliary class was queried from. Also the target classes file of the command line.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ltkit.artifacts.layout import LLM_CACHE, NEIGHBOUR_MAP
from ltkit.data.classnames import check_target_names
from ltkit.errors import UserError
from ltkit.io import atomic_write_text
from ltkit.words import name_key

CSV_COLUMNS = ("target_id", "target_name", "aux_name", "aux_id", "backend", "status", "reason")
CACHE_FILE, MAP_FILE = LLM_CACHE, NEIGHBOUR_MAP



@dataclass
class Row:
    """One proposed name and what became of it (a line of neighbours.csv)."""

    target_id: int
    target_name: str
    aux_name: str
    aux_id: int | None
    backend: str
    status: str  # kept | dropped
    reason: str = ""



def write_neighbour_csv(path: str | os.PathLike, rows: Sequence[Row]) -> None:
    """neighbours.csv, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.target_id, r.target_name, r.aux_name, "" if r.aux_id is None else r.aux_id, r.backend,
                    r.status, r.reason])
    atomic_write_text(path, buf.getvalue())


@dataclass
class NeighbourMap:
    """Auxiliary classes L..L+K-1: their names and the target class each was queried from."""

    aux_names: list[str]
    aux_parent: np.ndarray  # (K,) int, target id in 0..L-1
    num_targets: int

    @property
    def num_aux(self) -> int:
        return len(self.aux_names)

    @property
    def num_classes(self) -> int:
        """L + K, the classifier width during training."""
        return self.num_targets + self.num_aux


def _field_int(path: Path, lineno: int, field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{path}: line {lineno}: field {field}: not an integer: {text!r}") from None


def load_neighbour_map(path: str | os.PathLike, num_targets: int,
                       class_names: Sequence[str] | None = None) -> NeighbourMap:
    """Read and validate neighbours.csv; errors name the file, line and field.

    With the dataset's `class_names`, every row's `target_id, target_name` must name that class
    (`ltkit.data.classnames.same_class`): a map written for another class list or order fails at its
    first mismatching row instead of training with the wrong parents.
    """
    path = Path(path)
    if class_names is not None and len(class_names) != num_targets:
        raise UserError(f"{len(class_names)} class names for num_targets={num_targets}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no neighbour map (run `python -m ltkit neighbours --out {path.parent}`)")
    with open(path, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    if not lines or tuple(h.strip() for h in lines[0]) != CSV_COLUMNS:
        raise UserError(f"{path}: line 1: expected header {','.join(CSV_COLUMNS)}, got {lines[:1]}")
    kept: dict[int, tuple[str, int]] = {}
    seen: dict[str, int] = {}
    target_name: dict[int, str] = {}
    for n, row in enumerate(lines[1:], 2):
        if not row:
            continue
        if len(row) != len(CSV_COLUMNS):
            raise UserError(f"{path}: line {n}: expected {len(CSV_COLUMNS)} fields, got {len(row)}")
        r = dict(zip(CSV_COLUMNS, row))
        t, name, err = _field_int(path, n, "target_id", r["target_id"]), r["aux_name"].strip(), ""
        if class_names is not None and 0 <= t < num_targets:
            check_target_names([(n, t, r["target_name"])], class_names, str(path))
        if not 0 <= t < num_targets:
            err = f"target_id: {t} outside 0..{num_targets - 1}"
        elif target_name.setdefault(t, r["target_name"]) != r["target_name"]:
            err = f"target_name: {r['target_name']!r} but target {t} was {target_name[t]!r} earlier"
        elif r["status"] not in ("kept", "dropped"):
            err = f"status: expected kept or dropped, got {r['status']!r}"
        elif r["status"] == "dropped":
            err = "aux_id: must be empty on a dropped row" if r["aux_id"] else ""
        elif not name:
            err = "aux_name: empty on a kept row"
        elif (a := _field_int(path, n, "aux_id", r["aux_id"])) < num_targets or a in kept:
            err = (f"aux_id: {a} is {'a target id' if a < num_targets else 'used twice'} "
                   f"(auxiliary ids start at num_targets={num_targets}; is that right?)")
        elif name_key(name) in seen:
            err = f"aux_name: {name!r} duplicates line {seen[name_key(name)]}"
        else:
            seen[name_key(name)], kept[a] = n, (name, t)
        if err:
            raise UserError(f"{path}: line {n}: field {err}")
    ids = sorted(kept)
    if ids != list(range(num_targets, num_targets + len(ids))):
        missing = sorted(set(range(num_targets, num_targets + len(ids))) - set(ids))
        raise UserError(f"{path}: aux_id must be exactly {num_targets}..{num_targets + len(ids) - 1}; "
                         f"missing {missing[:5]}")
    return NeighbourMap([kept[a][0] for a in ids], np.array([kept[a][1] for a in ids], dtype=np.int64), num_targets)



def read_classes(path: str | os.PathLike) -> tuple[list[str], list[int] | None]:
    """Target classes file: one name per line, optionally 'name,train_count' (all lines or none)."""
    path = Path(path)
    names, counts = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # "name,120" carries a train count; "tabby, tabby cat" (ImageNet-style synonyms) is all name
        name, _, count = line.rpartition(",")
        if _ and count.strip().lstrip("-").isdigit():
            counts.append(int(count))
        else:
            name = line
        names.append(name.strip())
    if counts and len(counts) != len(names):
        raise UserError(f"{path}: either every line or none has ',train_count'")
    if not names:
        raise UserError(f"{path}: no class names")
    return names, counts or None

