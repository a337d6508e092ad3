"""Auxiliary data assembly: which auxiliary classes a run trains on and their images (the world's pool
or a crawl folder). `aux` picks the classes:

- `neighbours` (SD): the neighbour map under the budget;
- `random` (RD): random categories of the world in SD's places (they may be neighbour categories);
- `random-disjoint` (RD, disjoint): random categories outside the whole neighbour map, so RD and SD
  share none (Jaccard 0); each takes an SD place, so its parent is a random one;
- `neighbours-shuffled`: SD's categories and images, each under a wrong parent (a control for NS-CE,
  whose silenced pairs follow the parents).

Labels: target classes are 0..L-1, auxiliary classes L..L+K-1 in the neighbour map's order.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch.distributed as dist

from ltkit.budget import aux_budget
from ltkit.config import Config, neighbour_dir
from ltkit.neighbours.cli import search_config
from ltkit.curate.filter import ACCEPTED, accepted_for_config
from ltkit.neighbours.neighbour_map import load_neighbour_map
from ltkit.crawl.retrieve import crawl_dir
from ltkit.data import IMAGE_EXTENSIONS, ArrayImages, FileImages, ImageSet, LTData
from ltkit.errors import UserError
from ltkit.sampling import select_auxiliary
from ltkit.world import World

AUX_KINDS = ("neighbours", "random", "random-disjoint", "neighbours-shuffled")


def build_aux(cfg: Config, target: LTData, world: World | None) -> tuple[ImageSet | None, np.ndarray, list[str]]:
    """Auxiliary images (labels L..L+K-1), aux_parent (K,) and names; (None, empty, []) without aux data."""
    L = target.num_classes
    if cfg.aux == "none":
        return None, np.zeros(0, dtype=np.int64), []
    if cfg.aux not in AUX_KINDS:
        raise UserError(f"aux={cfg.aux!r}: expected none, {', '.join(AUX_KINDS)}")
    csv = Path(cfg.neighbours_csv) if cfg.neighbours_csv else default_neighbours_csv(cfg)
    if not csv.exists() and (world is None or cfg.neighbours.backend != "taxonomy"):
        raise FileNotFoundError(f"{csv}: no neighbour map; run `python -m ltkit neighbours` with the same config first")
    if not csv.exists() and int(os.environ.get("RANK", "0")) == 0:  # the world's taxonomy answers offline
        search_config(dataclasses.replace(cfg, neighbours=dataclasses.replace(cfg.neighbours, out_dir=str(csv.parent))),
                      target.class_names, target.train_counts, world.search_taxonomy)
    if dist.is_initialized():  # every rank waits here, then reads what rank 0 wrote
        dist.barrier()
    nmap = load_neighbour_map(csv, L, target.class_names)
    keep = select_auxiliary(nmap.aux_parent, aux_budget(target.train_counts, cfg.k, cfg.aux_ratio, cfg.many, cfg.few))
    names = [n for n, k in zip(nmap.aux_names, keep) if k]
    parent = nmap.aux_parent[keep]
    if cfg.aux == "random":
        names = random_categories(world, target.class_names, len(names), cfg.seed)
    elif cfg.aux == "random-disjoint":
        names = random_categories(world, target.class_names, len(names), cfg.seed, exclude=nmap.aux_names)
    elif cfg.aux == "neighbours-shuffled":
        parent = shuffled_parents(parent, cfg.seed)
    source = aux_images_path(cfg)
    if world is not None and source is None:
        images = _pool_images(world, names, L)
    elif source is None:
        raise UserError(f"aux={cfg.aux} on {cfg.dataset} needs aux_images: `crawl` (the filtered crawl of this "
                        "config), an accepted.csv, or a folder of <aux name>/<image> files")
    elif source.suffix == ".csv":  # a filtered crawl's accepted.csv: classes left without images drop out
        images, found = accepted_for_config(cfg, names, L, source)
        names, parent = [names[i] for i in found], parent[found]
    else:
        images = _folder_images(source, names, L)
    return images, parent, names


def aux_images_path(cfg: Config) -> Path | None:
    """Where the auxiliary images come from; `aux_images: crawl` is the filtered crawl of these very settings.

    That is accepted.csv in the crawl folder (`crawl.out_dir`, else the neighbour map's folder), so one
    preset drives `neighbours`, `crawl`, `filter` and `train` without a path that could point at the
    crawl of other settings.
    """
    if cfg.aux_images != "crawl":
        return None if cfg.aux_images is None else Path(cfg.aux_images)
    return crawl_dir(cfg) / ACCEPTED


def default_neighbours_csv(cfg: Config) -> Path:
    """The neighbour map when none is given: `python -m ltkit neighbours` writes it there with the same config."""
    return neighbour_dir(cfg) / "neighbours.csv"


def random_categories(world: World | None, target_names: list[str], n: int, seed: int,
                      exclude: Sequence[str] = ()) -> list[str]:
    """RD: n categories drawn uniformly from the world's classes outside the label set, the pre-training
    part (`World.pretrain_classes`) and `exclude` (for RD disjoint from SD: the whole neighbour map).

    They take the places (and parents) of the n neighbour categories, so RD and SD get the same
    number of auxiliary classes and images per class; only the choice of categories differs.
    """
    if world is None:
        raise UserError("aux=random draws categories from the built-in world; for a real dataset, crawl random "
                        "categories and pass their neighbours_csv with aux=neighbours")
    taken = set(target_names) | set(exclude) | {world.all_names[i] for i in world.pretrain_classes}
    pool = [c for c in world.all_names if c not in taken]
    if n > len(pool):
        raise UserError(f"RD needs {n} categories but the world has {len(pool)} outside the label set, the pre-training"
                        f" part{' and the neighbour map' if len(exclude) else ''}")
    rng = np.random.default_rng([seed, 7])
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def shuffled_parents(parent: np.ndarray, seed: int) -> np.ndarray:
    """Every auxiliary class under a wrong parent; each target keeps its number of auxiliary classes.

    Classes are grouped by parent (groups and members in a seeded order) and each takes the parent
    of the class m places on in that cyclic order, m the largest group: a group never reaches
    itself, provided no target holds more than half the auxiliary classes.
    """
    parent = np.asarray(parent, dtype=np.int64)
    if not len(parent):
        return parent.copy()
    m = int(np.bincount(parent).max())
    if 2 * m > len(parent):
        raise UserError(f"neighbours-shuffled: one target holds {m} of the {len(parent)} auxiliary classes, more than"
                        " half, so some would keep their parent")
    rng = np.random.default_rng([seed, 11])
    rank = rng.permutation(int(parent.max()) + 1)  # a random order of the parents
    order = np.lexsort((rng.permutation(len(parent)), rank[parent]))  # grouped by parent, shuffled within
    out = np.empty_like(parent)
    out[order] = parent[np.roll(order, -m)]
    return out


def _pool_images(world: World, names: list[str], L: int) -> ArrayImages:
    """The world's pool items a search for each auxiliary name returns (unfiltered)."""
    index = {n: i for i, n in enumerate(world.all_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"auxiliary names not in the world: {missing[:5]}")
    sel, labels = [], []
    for k, n in enumerate(names):
        idx = np.flatnonzero(world.pool_query == index[n])
        sel.append(idx)
        labels.append(np.full(len(idx), L + k))
    sel = np.concatenate(sel) if sel else np.zeros(0, int)
    return ArrayImages(world.pool_images[sel], np.concatenate(labels) if labels else [])


def _folder_images(root: Path, names: list[str], L: int) -> FileImages:
    """Crawled images in `root/<aux name>/`; a kept name without images is an error."""
    paths, labels = [], []
    for k, n in enumerate(names):
        folder = root / n
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{folder}: no images for auxiliary class {n!r}")
        paths += [str(p.relative_to(root)) for p in files]
        labels += [L + k] * len(files)
    return FileImages(root, paths, labels)
