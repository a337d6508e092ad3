"""Where each stage writes, and what the files are called: the contract between the stages.

A run of the pipeline leaves these files, each written by one stage and read by the next:

    <neighbour dir>/                       `python -m ltkit neighbours` (ltkit.neighbours)
        neighbours.csv                     the neighbour map: one row per proposed name (artifacts.neighbour_map)
        llm_cache.jsonl                    every prompt and answer
    <crawl dir>/  (default: the neighbour dir)   `python -m ltkit crawl` (ltkit.crawl)
        manifest.jsonl                     every search hit and how it ended (artifacts.manifest)
        images/<aux_id>/<sha256>.jpg       the downloaded images
    <crawl dir>/                           `python -m ltkit filter` (ltkit.curate)
        filter_manifest.jsonl              every image, its numbers and each check's decision
        accepted.csv, accepted_neighbours.csv, filter.json   the accepted set (artifacts.accepted)
    <out_dir>/<run name>/                  `python -m ltkit train` (ltkit.train): checkpoint, results, config

Stages import this package, never each other: the trainer reads a neighbour map and an accepted set
through `artifacts`, and the commands (`train`, `compare`, `demo`) build what is missing first
(`ltkit.pipeline`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ltkit.config import Config

NEIGHBOUR_MAP, LLM_CACHE = "neighbours.csv", "llm_cache.jsonl"
MANIFEST, FILTER_MANIFEST = "manifest.jsonl", "filter_manifest.jsonl"
CLASSES, LOCK = "classes.json", ".crawl.lock"  # the class list a crawl folder's aux ids belong to; its lock
ACCEPTED, ACCEPTED_MAP, FILTER_JSON = "accepted.csv", "accepted_neighbours.csv", "filter.json"


def neighbour_dir(cfg: "Config") -> Path:
    """Where the neighbour map of these settings lives: `neighbours.out_dir`, else a folder named after them.

    The name carries everything the map depends on (dataset, k, ratio, shot thresholds, seed,
    backend and its inputs), so changing any of them builds a new map instead of reusing a stale one.
    """
    if cfg.neighbours.out_dir:
        return Path(cfg.neighbours.out_dir)
    n = cfg.neighbours
    ratio = (cfg.aux_ratio or "paper").replace(":", "-")
    name = f"{cfg.dataset}-k{cfg.k}-{ratio}-m{cfg.many}-f{cfg.few}-s{cfg.seed}-{n.backend}"
    inputs = [n.model, n.base_url, n.template, n.file, n.taxonomy_json, n.classes_file]
    if any(inputs):
        name += "-" + hashlib.sha1(repr(inputs).encode()).hexdigest()[:6]
    return Path(cfg.out_dir) / "_neighbours" / name


def neighbour_map_path(cfg: "Config") -> Path:
    """`neighbours_csv`, else neighbours.csv in `neighbour_dir(cfg)` (where `python -m ltkit neighbours` writes)."""
    return Path(cfg.neighbours_csv) if cfg.neighbours_csv else neighbour_dir(cfg) / NEIGHBOUR_MAP


def crawl_dir(cfg: "Config") -> Path:
    """`crawl.out_dir`, else the neighbour map's folder (the crawl belongs to the map it searched)."""
    return Path(cfg.crawl.out_dir) if cfg.crawl.out_dir else neighbour_map_path(cfg).parent


def aux_images_path(cfg: "Config") -> Path | None:
    """Where a run's auxiliary images come from; `aux_images: crawl` is the accepted set of these very settings.

    That is accepted.csv in `crawl_dir(cfg)`, so one preset drives `neighbours`, `crawl`, `filter` and
    `train` without a path that could point at the crawl of other settings.
    """
    if cfg.aux_images != "crawl":
        return None if cfg.aux_images is None else Path(cfg.aux_images)
    return crawl_dir(cfg) / ACCEPTED
