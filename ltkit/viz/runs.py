"""Trained runs as the figures need them: the model, its data and auxiliary classes, ready to extract from.

A figure never trains on its own: `load_run` finds the run that `report.compare` trained for a
recipe (same run name, so the `runs/` cache is shared with notebook 03) and trains it through
`report.run_method` only when it is missing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ltkit import report
from ltkit.data import ImageSet
from ltkit.encoder import Encoder, encode_cached, feature_cache_dir
from ltkit.features import model_device
from ltkit.io import read_json
from ltkit.pipeline import prepare
from ltkit.train import Trainer
from ltkit.viz.curves import training_curves


@dataclass
class RunView:
    """One run's model (trained, or the pre-trained initialisation) and what it was trained on."""

    name: str
    model: torch.nn.Module
    data: object            # ltkit.data.LTData: train / val / test of the L target classes
    aux_images: ImageSet | None
    aux_parent: np.ndarray  # (K,) target index each auxiliary class was queried from
    aux_names: list[str]
    transform: object       # the eval transform
    num_targets: int
    results: dict | None

    @property
    def class_names(self) -> list[str]:
        """Target names, then auxiliary names (label order of the trained head)."""
        return list(self.data.class_names) + list(self.aux_names)

    @cached_property
    def encoder(self) -> Encoder:
        """The run's model as an encoder (eval transform, on the model's device); its key is its weights'."""
        return Encoder(self.model, self.transform, f"run:{self.name}", device=model_device(self.model))

    def features(self, images: ImageSet) -> np.ndarray:
        """Pooled pre-logits features of an image set (eval transform), through the feature cache."""
        return encode_cached(self.encoder, images, feature_cache_dir())


def run_config(base, overrides: dict, seed: int):
    """The Config `report.run_method` trains for a method's overrides and seed (same run name)."""
    classifier = overrides.get("classifier", "direct")
    train = {k: v for k, v in overrides.items() if k != "classifier"}
    return dataclasses.replace(base, **train, seed=seed, classifier=classifier,
                               name=report.run_name(base, overrides, seed))


def load_run(base, overrides: dict, seed: int = 0, trained: bool = True, train_missing: bool = True) -> RunView:
    """A run's model from its last checkpoint (`trained=False`: the pre-trained initialisation).

    A run that is missing or unfinished is trained (or resumed) with `report.run_method`, the way
    notebook 03 trains it; `train_missing=False` makes that an error instead.
    """
    cfg = run_config(base, overrides, seed)
    done = cfg.run_dir / f"results_{cfg.classifier}.json"
    if trained and not done.exists():
        if not train_missing:
            raise FileNotFoundError(f"{done}: run not trained; run notebook 03 or `python -m ltkit compare` first")
        report.run_method(base, overrides, seed)
    prepare(cfg)
    trainer = Trainer(cfg)
    if trained and not trainer.resume():
        raise FileNotFoundError(f"{cfg.run_dir}: no checkpoint to load")
    trainer.model.eval()
    results = read_json(done, "run results") if trained else None
    return RunView(cfg.name, trainer.model, trainer.data, trainer.aux_images, np.asarray(trainer.aux_parent),
                   list(trainer.aux_names), trainer.eval_tf, trainer.L, results)


def row_curves(base, rows: dict[str, dict], seed: int = 0, width: str | float = "double"):
    """The training curves of a report table's rows (name: overrides), from the runs `report.compare` trained."""
    return training_curves({name: run_config(base, over, seed).run_dir for name, over in rows.items()}, width)
