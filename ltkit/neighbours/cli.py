"""`python -m ltkit neighbours`: the neighbour search of one config, the same the trainer reads.

    python -m ltkit neighbours --config configs/builtin.yaml                     # offline, the world's taxonomy
    python -m ltkit neighbours --config configs/imagenet-lt.yaml neighbours.backend=openai \\
        neighbours.model=gpt-4o-mini neighbours.base_url=http://localhost:8000/v1 aux_ratio=0:1:1
    python -m ltkit neighbours --config configs/imagenet-lt.yaml neighbours.backend=random \\
        neighbours.file=names.txt                                     # RD: random categories, the same CSV

`k`, `aux_ratio`, `many`, `few` and `seed` are the config's shared keys, so the map has the budget the
sampler applies; it goes to `neighbour_dir(cfg)`, where training looks for it.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from ltkit.artifacts.layout import neighbour_dir
from ltkit.artifacts.neighbour_map import read_classes
from ltkit.config import Config, load_config, no_stray_arguments, split_overrides
from ltkit.data import datasets
from ltkit.data.taxonomy import Taxonomy
from ltkit.errors import ArgumentParser, UserError
from ltkit.neighbours.backends import Backend, ManualBackend, OpenAIBackend, TaxonomyBackend
from ltkit.neighbours.prompt import PAPER_TEMPLATE
from ltkit.neighbours.random_categories import RandomBackend, read_vocabulary
from ltkit.neighbours.search import SearchResult, format_rows, search_neighbours

log = logging.getLogger(__name__)


def target_classes(cfg: Config) -> tuple[list[str], list[int] | None, Taxonomy | None]:
    """Class names, train counts and taxonomy: `neighbours.classes_file`, else the config's dataset."""
    n = cfg.neighbours
    taxonomy = Taxonomy.from_json(n.taxonomy_json) if n.taxonomy_json else None
    if n.classes_file:
        names, counts = read_classes(n.classes_file)
        return names, counts, taxonomy
    data, world = datasets.build_target_data(cfg)
    if world is not None:
        taxonomy = taxonomy or world.search_taxonomy  # without the world's pre-training part
    return list(data.class_names), [int(c) for c in data.train_counts], taxonomy


def neighbour_backend(cfg: Config, taxonomy: Taxonomy | None) -> Backend:
    """The backend `neighbours.backend` names, from its section's settings."""
    n = cfg.neighbours
    if n.backend == "openai":
        if not n.model:
            raise UserError("neighbours.backend=openai needs neighbours.model=NAME")
        template = Path(n.template).read_text(encoding="utf-8") if n.template else PAPER_TEMPLATE
        return OpenAIBackend(n.model, n.base_url, template=template, seed=cfg.seed, timeout=n.timeout,
                             retries=n.retries, structured=n.structured)
    if n.backend == "manual":
        if not n.file:
            raise UserError("neighbours.backend=manual needs neighbours.file=PATH (JSON or CSV class,neighbour)")
        return ManualBackend(n.file)
    if n.backend == "taxonomy":
        if taxonomy is None:
            raise UserError("neighbours.backend=taxonomy needs a taxonomy: neighbours.taxonomy_json=PATH")
        return TaxonomyBackend(taxonomy, seed=cfg.seed)
    if n.backend == "random":  # RD: random categories from a vocabulary, through the same filter and budget
        if n.file:
            return RandomBackend(read_vocabulary(n.file), seed=cfg.seed, source=n.file)
        if taxonomy is None:
            raise UserError("neighbours.backend=random needs a vocabulary: neighbours.file=names.txt (or .json, "
                            "or wordnet)")
        return RandomBackend(taxonomy.classes, seed=cfg.seed, source="taxonomy")
    raise UserError(f"neighbours.backend={n.backend!r}: expected taxonomy, openai, manual or random")


def search_config(cfg: Config, class_names: Sequence[str] | None = None, train_counts: Sequence[int] | None = None,
                  taxonomy: Taxonomy | None = None,
                  progress: Callable[[str], None] | None = None) -> SearchResult:
    """The neighbour search of a config into `neighbour_dir(cfg)` (classes from the config unless given)."""
    if class_names is None:
        class_names, train_counts, taxonomy = target_classes(cfg)
    n = cfg.neighbours
    return search_neighbours(neighbour_backend(cfg, taxonomy), class_names, train_counts, neighbour_dir(cfg),
                             cfg.k, cfg.aux_ratio, taxonomy, n.price_per_1k, progress, cfg.many, cfg.few, n.cache,
                             n.workers)


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit neighbours [--config PRESET] [key=value | neighbours.key=value ...]`."""
    p = ArgumentParser(prog="python -m ltkit neighbours", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML preset (configs/*.yaml); default: the built-in world")
    p.add_argument("--out", help="output folder (sets neighbours.out_dir)")
    p.add_argument("--show", type=int, default=10, help="rows of the kept-names table to print")
    p.add_argument("overrides", nargs="*", help="e.g. k=3 aux_ratio=0:1:1 neighbours.backend=openai neighbours.model=m")
    options, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = p.parse_args(options)
    no_stray_arguments(args.overrides)
    cfg = load_config(args.config, overrides + ([f"neighbours.out_dir={args.out}"] if args.out else []))
    res = search_config(cfg, progress=log.info)
    print(format_rows([r for r in res.rows if r.status == "kept"], args.show))
    for w in res.warnings[:10]:
        log.warning("%s", w)
    if len(res.warnings) > 10:
        log.warning("... %d more warnings", len(res.warnings) - 10)
    print(res.format_summary())
    return 0
