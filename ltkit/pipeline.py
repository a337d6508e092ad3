"""The stage runner: what a command needs from earlier stages, built when it is missing and can be built offline.

The trainer only reads files (`ltkit.artifacts`). The commands that train (`train`, `compare`, `demo`)
call `ensure_inputs` first, so a run on the built-in world finds its neighbour map even when nobody ran
`python -m ltkit neighbours`: the world's taxonomy answers offline. Any other backend (an LLM, a manual
file) is a stage of its own that the user runs, and a missing map stays an error that says so.
"""
from __future__ import annotations

import dataclasses
import os

from ltkit.artifacts.layout import neighbour_map_path
from ltkit.config import Config
from ltkit.data.datasets import build_target_data
from ltkit.neighbours.cli import search_config


def ensure_inputs(cfg: Config) -> None:
    """Build the neighbour map a training run of `cfg` reads, if it is missing and the world's taxonomy can answer."""
    if cfg.aux in (None, "none") or int(os.environ.get("RANK", "0")) != 0:  # other ranks wait in the trainer
        return
    csv = neighbour_map_path(cfg)
    if csv.exists() or cfg.neighbours.backend != "taxonomy" or cfg.neighbours.taxonomy_json:
        return
    data, world = build_target_data(cfg)
    if world is None:
        return
    search_config(dataclasses.replace(cfg, neighbours=dataclasses.replace(cfg.neighbours, out_dir=str(csv.parent))),
                  data.class_names, data.train_counts, world.taxonomy)
