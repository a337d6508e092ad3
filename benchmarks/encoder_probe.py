"""What the pool encoder's features know about the target classes: nearest-prototype accuracy on target val.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/encoder_probe.py [--preset builtin] [--model ltkit_cnn_tiny] [--no-recipe-1]

Three encoders of one backbone, each probed the same way (class means of target-train features,
cosine nearest mean on target val, overall and per shot group):
  random init | pool, all classes (recipe 1: target-class labels included, the old stand-in) |
  pool, open classes only (recipe 2, `ltkit.pretrain.pool_pretrained` now).
Recipe 1 is rebuilt here from `train_on_arrays`, with the same settings, for this comparison only.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ltkit.data import shot_groups, world_data
from ltkit.features import extract_features, nearest_prototype_accuracy
from ltkit.models import create_model, transforms
from ltkit.pretrain import pool_pretrained, pool_settings, train_on_arrays
from ltkit.world import PRESETS, load_world


def probe(model: torch.nn.Module, data) -> dict[str, float]:
    """Nearest-prototype accuracy on val, overall and per shot group (%)."""
    tf = transforms(model, train=False)
    tr, va = extract_features(model, data.train, tf), extract_features(model, data.val, tf)
    groups = shot_groups(data.train_counts)[data.val.labels]
    out = {}
    for g in ("overall", "many", "medium", "few"):
        m = np.ones(len(va), bool) if g == "overall" else groups == g
        out[g] = 100 * nearest_prototype_accuracy(tr, data.train.labels, va[m], data.val.labels[m], data.num_classes)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="builtin", choices=sorted(PRESETS))
    p.add_argument("--model", default="ltkit_cnn_tiny")
    p.add_argument("--no-recipe-1", action="store_true", help="skip retraining the old recipe (slow on big pools)")
    args = p.parse_args()
    torch.set_num_threads(1)
    world = load_world(PRESETS[args.preset])
    data = world_data(world)
    s = pool_settings(args.model)
    encoders = {}
    torch.manual_seed(0)
    encoders["random init"] = create_model(args.model, 0, img_size=world.config.image_size).eval()
    if not args.no_recipe_1:
        t = time.time()
        torch.manual_seed(0)
        old = create_model(args.model, len(world.classes), img_size=world.config.image_size)
        train_on_arrays(old, world.pool_images, world.pool_query, s["epochs"], s["seed"], s["batch_size"], s["lr"],
                        s["weight_decay"], s["label_smoothing"], s["optimizer"])
        old.reset_classifier(0)
        encoders["pool, all classes (recipe 1)"] = old.eval()
        print(f"recipe 1 trained in {time.time() - t:.0f} s", flush=True)
    t = time.time()
    path = pool_pretrained(world, model_name=args.model)
    encoders["pool, open classes (recipe 2)"] = create_model(args.model, 0, img_size=world.config.image_size,
                                                             pretrained=path).eval()
    print(f"recipe 2 ready in {time.time() - t:.0f} s ({path.name})", flush=True)
    print(f"\nnearest-prototype accuracy on {args.preset} target val (%), {args.model}\n")
    print("| encoder | Overall | Many | Medium | Few |\n|---|---|---|---|---|")
    for name, enc in encoders.items():
        r = probe(enc, data)
        print(f"| {name} | " + " | ".join(f"{r[g]:.1f}" for g in ("overall", "many", "medium", "few")) + " |")


if __name__ == "__main__":
    main()
