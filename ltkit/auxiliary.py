"""Auxiliary data assembly: which auxiliary classes a run trains on and their images (the world's pool
or a crawl folder). It only reads the artefacts of earlier stages (`ltkit.artifacts`); building a missing
map is the commands' job (`ltkit.pipeline`). `aux` picks the classes:

- `neighbours` (SD): the neighbour map under the budget;
- `random` (RD): on the built-in world, random categories of the world in SD's places (they may be
  neighbour categories); elsewhere a neighbour map of its own, the random backend's
  (`neighbours.backend=random`, names from `neighbours.file` or the taxonomy), crawled and filtered like
  SD's into its own folder (`random_config`);
- `random-disjoint` (RD, disjoint): random categories outside the whole neighbour map, so RD and SD
  share none (Jaccard 0); each takes an SD place, so its parent is a random one;
- `neighbours-shuffled`: SD's categories and images, each under a wrong parent (a control for NS-CE,
  whose silenced pairs follow the parents).

Labels: target classes are 0..L-1, auxiliary classes L..L+K-1 in the neighbour map's order.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch.distributed as dist

from ltkit.artifacts.accepted import accepted_for_config
from ltkit.artifacts.layout import aux_images_path, neighbour_map_path
from ltkit.artifacts.neighbour_map import load_neighbour_map
from ltkit.budget import aux_budget
from ltkit.config import Config
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
    if cfg.aux == "random" and world is None:
        cfg = random_config(cfg)
    csv = neighbour_map_path(cfg)
    if dist.is_initialized():  # every rank waits here, then reads what the command wrote before training
        dist.barrier()
    if not csv.exists():
        raise UserError(f"{csv}: no neighbour map; run `python -m ltkit neighbours` with the same config first "
                        "(`train` and `compare` build it themselves when the taxonomy backend can answer offline)")
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


def random_config(cfg: Config) -> Config:
    """RD without the built-in world: the settings whose neighbour map, crawl and filter are RD's own.

    The random backend proposes names from a vocabulary under SD's budget, in a folder named after
    it; the crawl and the accepted set follow that folder (explicit `neighbours_csv`, `neighbours.out_dir`
    and `crawl.out_dir` belong to SD and are dropped), so `aux_images: crawl` is needed.
    """
    if cfg.aux_images != "crawl":
        raise UserError(f"aux=random on {cfg.dataset!r} trains on a crawl of random categories: it needs "
                        "aux_images=crawl (set aux_images to crawl, and neighbours.file to their vocabulary)")
    return dataclasses.replace(cfg, aux="neighbours", neighbours_csv=None,
                               neighbours=dataclasses.replace(cfg.neighbours, backend="random", out_dir=None),
                               crawl=dataclasses.replace(cfg.crawl, out_dir=None))


def random_categories(world: World | None, target_names: list[str], n: int, seed: int,
                      exclude: Sequence[str] = ()) -> list[str]:
    """RD: n categories drawn uniformly from the world's classes outside the label set, the pre-training
    part (`World.pretrain_classes`) and `exclude` (for RD disjoint from SD: the whole neighbour map).

    They take the places (and parents) of the n neighbour categories, so RD and SD get the same
    number of auxiliary classes and images per class; only the choice of categories differs.
    """
    if world is None:
        raise UserError("random_categories draws the built-in world's classes; elsewhere RD is `random_config`")
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
        raise UserError(f"auxiliary names not in the world: {missing[:5]}")
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
