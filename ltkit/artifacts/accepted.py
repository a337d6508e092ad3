"""The accepted set: what the filter stage hands to training (`accepted.csv` + `filter.json` in a crawl folder).

`accepted.csv` lists the kept images (path inside the crawl folder, label, auxiliary class, parent target,
content hash, cosine); `filter.json` records the thresholds and provenance it was saved with. The trainer
reads the set through `accepted_for_config`, which refuses a set saved with other thresholds than the
run's recipe names.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

from ltkit.artifacts.layout import ACCEPTED, ACCEPTED_MAP, FILTER_JSON, NEIGHBOUR_MAP
from ltkit.artifacts.manifest import inside
from ltkit.config import FilterConfig
from ltkit.data import FileImages
from ltkit.errors import UserError
from ltkit.io import read_text
from ltkit.words import name_key

ACCEPTED_COLUMNS = ("path", "label", "aux_name", "target_id", "sha256", "cos")


def check_saved_set(root: Path) -> dict:
    """The provenance of a crawl's saved filter outputs, once each file it vouches for has the hash it names."""
    path = root / FILTER_JSON
    if not path.is_file():
        raise UserError(f"{path}: no provenance beside the accepted set (run `python -m ltkit filter`)")
    try:
        prov = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: invalid JSON ({e.msg}); run `python -m ltkit filter` again") from None
    for name, digest in (prov.get("sha256") or {}).items():  # files saved before the hashes existed carry none
        if not (root / name).is_file() or hashlib.sha256((root / name).read_bytes()).hexdigest() != digest:
            raise UserError(f"{root / name}: not the file {path.name} was saved with (a save was cut off, or it was "
                            "edited); run `python -m ltkit filter` again")
    return prov


def load_settings(crawl_dir: str | Path) -> FilterConfig | None:
    """Thresholds saved by the tuner or the CLI next to a crawl, or None when nothing was saved."""
    path = Path(crawl_dir) / FILTER_JSON
    if not path.is_file():
        return None
    s = json.loads(read_text(path))["settings"]
    s["leak_splits"] = list(s.get("leak_splits", ()))
    return FilterConfig(**s)


def load_accepted(path: str | Path, names: list[str], num_targets: int) -> tuple[FileImages, list[int]]:
    """The accepted images of classes `names` (labels L + position in `names`), and which names had any.

    `path` is a crawl's accepted.csv; names match by `name_key`, so the trainer's neighbour map and the
    crawl's may differ in case or plural. Returns the images and the positions of the names found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no accepted set (run `python -m ltkit filter --crawl {path.parent}`)")
    lines = list(csv.reader(io.StringIO(read_text(path), newline="")))
    if not lines or tuple(lines[0]) != ACCEPTED_COLUMNS:
        raise UserError(f"{path}: line 1: expected header {','.join(ACCEPTED_COLUMNS)}")
    by_key: dict[str, list[str]] = {}
    for n, row in enumerate(lines[1:], 2):
        if len(row) != len(ACCEPTED_COLUMNS):
            raise UserError(f"{path}: line {n}: expected {len(ACCEPTED_COLUMNS)} fields, got {len(row)}")
        if inside(path.parent, row[0]) is None:  # an image outside the crawl folder is nothing the filter saw
            raise UserError(f"{path}: line {n}: field path: {row[0]!r} leaves the crawl folder")
        by_key.setdefault(name_key(row[2]), []).append(row[0])
    found = [k for k, n in enumerate(names) if by_key.get(name_key(n))]
    paths, labels = [], []
    for pos, k in enumerate(found):
        files = by_key[name_key(names[k])]
        paths += files
        labels += [num_targets + pos] * len(files)
    return FileImages(path.parent, paths, labels), found


DECISION_FIELDS = ("caption_mode", "gamma1", "gamma2", "encoder", "leak_hamming", "leak_cos", "leak_splits")


def training_overrides(crawl_dir: str | Path) -> dict:
    """Config overrides that train on a crawl's accepted set: its images, its neighbour map, its thresholds."""
    root = Path(crawl_dir)
    s = load_settings(root)
    if s is None:
        raise FileNotFoundError(f"{root / FILTER_JSON}: the crawl has no accepted set (run `python -m ltkit filter`)")
    check_saved_set(root)
    # the map the crawl searched (classes left without images drop out); else the accepted classes' own map
    nmap = root / NEIGHBOUR_MAP if (root / NEIGHBOUR_MAP).is_file() else root / ACCEPTED_MAP
    return {"aux_images": str(root / ACCEPTED), "neighbours_csv": str(nmap),
            "filter": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items() if k in DECISION_FIELDS}}


def accepted_for_config(cfg, names: list[str], num_targets: int,
                        path: str | Path | None = None) -> tuple[FileImages, list[int]]:
    """The trainer's auxiliary images from an accepted.csv (`path`, default `cfg.aux_images`), checked against the config.

    The run's recipe names the thresholds it trained on (`filter.*`), so the accepted set must have been
    saved with those same thresholds, and for the same dataset; otherwise a UserError says what to pass.
    """
    path = Path(path or cfg.aux_images)
    if not path.is_file():
        raise UserError(f"{path}: no accepted set; run `python -m ltkit crawl` and `python -m ltkit filter` "
                        "with the same config first")
    prov = check_saved_set(path.parent)
    if prov.get("dataset") not in (None, cfg.dataset):
        raise UserError(f"{path}: an accepted set of dataset {prov['dataset']!r}, but the config trains {cfg.dataset!r}")
    saved = prov["settings"]
    diff = settings_diff(cfg.filter, saved)
    if diff:
        fix = " ".join(f"filter.{k}={_plain(saved.get(k))}" for k in diff)
        raise UserError(f"{path} was saved with other filter settings than the config's ({', '.join(diff)}); "
                        f"train with {fix} (ltkit.artifacts.training_overrides gives them)")
    images, found = load_accepted(path, names, num_targets)
    if not found:
        raise UserError(f"{path}: none of the run's {len(names)} auxiliary classes has an accepted image")
    return images, found


def settings_diff(settings, saved: dict) -> list[str]:
    """The decision fields (`DECISION_FIELDS`) in which filter settings differ from a saved set's `settings`."""
    return [k for k in DECISION_FIELDS if hasattr(settings, k) and _plain(getattr(settings, k)) != _plain(saved.get(k))]


def _plain(v):
    return list(v) if isinstance(v, tuple) else v
