"""The stage runner: the stages before training, run for a config where their outputs are missing.

photos -> neighbours -> crawl -> filter. The `train` command (`train_main`), `compare` and `demo` call
`prepare` (`prepare_tables`
for every row of a table) before any training, so one command goes from raw inputs to the tables;
each step is the stage's own function (`build_photos`, `search_config`, `crawl_config`,
`ltkit.curate.cli.run`), writing what the stage's command would, where training looks for it
(`ltkit.artifacts.layout`). A step whose output exists is skipped (the crawl and the search resume on
their own). The trainer itself never runs them: it only reads files, and a training without its
neighbour map or accepted set stops and says what to run.

Only offline neighbour backends run here (taxonomy, random, manual); an LLM search costs money and
is started by hand (`python -m ltkit neighbours`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Iterable

import torch.distributed as dist

from ltkit.artifacts.accepted import settings_diff
from ltkit.artifacts.layout import ACCEPTED, FILTER_JSON, crawl_dir, neighbour_map_path
from ltkit.artifacts.manifest import manifest_files
from ltkit.auxiliary import random_config
from ltkit.config import Config, load_config, no_stray_arguments, split_overrides
from ltkit.crawl.retrieve import crawl_config
from ltkit.curate import cli as filter_cli
from ltkit.data.datasets import build_target_data
from ltkit.data.photos import BUILD_JSON, build_photos
from ltkit.errors import ArgumentParser, UserError
from ltkit.io import read_text
from ltkit.neighbours.cli import search_config
from ltkit.train import train
from ltkit.world import PRESETS

log = logging.getLogger(__name__)

OFFLINE_BACKENDS = ("taxonomy", "random", "manual")


def aux_kinds(rows: Iterable[dict]) -> list[str]:
    """The auxiliary data (neighbours, random) that some row trains on, in first-seen order."""
    return list(dict.fromkeys(r["aux"] for r in rows if r.get("aux", "none") != "none"))


def filtered_with(cfg: Config) -> bool:
    """True when the crawl's accepted set was saved with this config's filter settings."""
    prov = crawl_dir(cfg) / FILTER_JSON
    if not (crawl_dir(cfg) / ACCEPTED).is_file() or not prov.is_file():
        return False
    return not settings_diff(cfg.filter, json.loads(read_text(prov)).get("settings", {}))


def world_map(cfg: Config, data=None, world=None) -> None:
    """The neighbour map of a run on a built-in world's own pool, from the world's taxonomy (offline).

    `data` and `world` default to the config's dataset (the train split as the trainer sees it: the
    budget follows its counts); the neighbours come from `world.search_taxonomy`, never the pre-training part.
    """
    csv = neighbour_map_path(cfg)
    if csv.exists() or cfg.neighbours.backend != "taxonomy" or cfg.neighbours.taxonomy_json:
        return
    if world is None:
        data, world = build_target_data(cfg)
    if world is not None:
        search_config(dataclasses.replace(cfg, neighbours=dataclasses.replace(cfg.neighbours, out_dir=str(csv.parent))),
                      data.class_names, data.train_counts, world.search_taxonomy)


def prepare(cfg: Config) -> None:
    """Make what a training of `cfg` reads and is missing: photo folders, neighbour map, crawl, accepted set."""
    if int(os.environ.get("RANK", "0")) != 0:  # under DDP rank 0 prepares; the others wait in the trainer
        return
    built = build_photos(cfg) / BUILD_JSON if cfg.photos.sources else None
    if cfg.aux in (None, "none"):
        return
    if cfg.aux_images != "crawl":  # the world's pool, or images the user gave
        if cfg.dataset in PRESETS:  # a world preset: its pool, and a map from its taxonomy
            world_map(cfg)
        return
    if cfg.aux == "random":
        if cfg.dataset in PRESETS:
            return world_map(cfg)  # the world's RD takes SD's places from the map and draws its own classes
        cfg = random_config(cfg)
    if not neighbour_map_path(cfg).is_file():
        if cfg.neighbours.backend not in OFFLINE_BACKENDS:
            raise UserError(f"no neighbour map at {neighbour_map_path(cfg)}: run `python -m ltkit neighbours` "
                            f"with the same config first (backend {cfg.neighbours.backend!r} is not run automatically)")
        log.info("neighbour search (%s) into %s", cfg.neighbours.backend, neighbour_map_path(cfg).parent)
        search_config(cfg)
    report = crawl_dir(cfg) / "report.json"
    if built is not None and report.is_file() and report.stat().st_mtime < built.stat().st_mtime:
        # the crawl's folder is named after the search settings, not the pool's content
        raise UserError(f"{crawl_dir(cfg)} was crawled from an older build of {built.parent} (photos.* changed "
                        f"since); remove that folder to crawl the new pool")
    if not manifest_files(crawl_dir(cfg)) or not report.is_file():
        log.info("crawl into %s", crawl_dir(cfg))
        crawl_config(cfg, progress=False)
    if not filtered_with(cfg):
        log.info("filter %s", crawl_dir(cfg))
        filter_cli.run(cfg)


def prepare_tables(base: Config, seeds: list[int], rows: Iterable[dict], grid: dict | None = None) -> None:
    """`prepare` for every training of the tables: each seed, each auxiliary kind, each ablated value."""
    rows = list(rows)
    for seed in seeds:
        for aux in aux_kinds(rows):
            prepare(dataclasses.replace(base, aux=aux, seed=seed))
        for key, values in (grid or {}).items():
            for v in values:
                prepare(dataclasses.replace(base, aux="neighbours", seed=seed, **{key: v}))


def train_main(argv: list[str] | None = None) -> int:
    """`python -m ltkit train --config configs/builtin.yaml [key=value | section.key=value ...]`."""
    p = ArgumentParser(prog="python -m ltkit train", description=train_main.__doc__)
    p.add_argument("--config", help="YAML preset (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. loss=nsce aux=neighbours epochs=5")
    options, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = p.parse_args(options)
    no_stray_arguments(args.overrides)
    cfg = load_config(args.config, overrides)
    prepare(cfg)
    res = train(cfg)  # the trainer reads what prepare made
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{cfg.name}: overall {res['overall']:.3f}  many {res['many']:.3f}  "
              f"medium {res['medium']:.3f}  few {res['few']:.3f}  (test; val: {res['val_images']} images,"
              f" {res['val_source']})  -> {cfg.run_dir / 'results.json'}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
