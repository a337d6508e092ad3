"""The crawl stage: neighbour categories (paper Sec. 3.1), their images, and the filters that clean them.

Neighbour search, split along its seams:
`prompt` (the paper's template), `names` (comparison keys, parsing free LLM text), `backends`
(OpenAI-compatible, taxonomy, manual), `cache` (every answer on disk, token tally), `neighbour_map`
(`neighbours.csv` and what training reads from it), `neighbours` (leak filter and the search) and
`cli` (`python -m ltkit neighbours`). Image search, download, manifest and the caption / similarity
filters live beside them (`image_search`, `download`, `manifest`, `filter`, `leak`, `encode`, `tuner`).

Artifacts of a search in its folder: `llm_cache.jsonl` (every prompt and answer) and `neighbours.csv`
(one row per proposed name; kept rows get auxiliary class ids L..L+K-1).
"""
from ltkit.crawl.backends import (Answer, Backend, ManualBackend, NeighbourSearchError, OpenAIBackend,
                                  TaxonomyBackend, read_manual)
from ltkit.crawl.cache import AnswerCache, Tally, ask, cache_key
from ltkit.crawl.image_search import DDGSEngine, Hit, PoolEngine, SearchCache, SearchError
from ltkit.crawl.manifest import hit_key, merge_manifests, read_manifest
from ltkit.crawl.names import name_key, parse_names, singular
from ltkit.crawl.neighbour_map import (CACHE_FILE, CSV_COLUMNS, MAP_FILE, NeighbourMap, Row, load_neighbour_map,
                                       read_classes, write_neighbour_csv)
from ltkit.crawl.neighbours import SearchResult, filter_proposals, format_rows, label_keys, search_neighbours
from ltkit.crawl.prompt import PAPER_TEMPLATE, build_prompt

__all__ = [
    "Answer", "Backend", "ManualBackend", "NeighbourSearchError", "OpenAIBackend", "TaxonomyBackend", "read_manual",
    "AnswerCache", "Tally", "ask", "cache_key", "name_key", "parse_names", "singular", "CACHE_FILE", "CSV_COLUMNS",
    "MAP_FILE", "NeighbourMap", "Row", "load_neighbour_map", "read_classes", "write_neighbour_csv", "SearchResult",
    "filter_proposals", "format_rows", "label_keys", "search_neighbours", "PAPER_TEMPLATE", "build_prompt",
    # image search and the manifest (the downloader, `download` / `retrieve`, imports aiohttp: import it by name)
    "DDGSEngine", "Hit", "PoolEngine", "SearchCache", "SearchError", "hit_key", "merge_manifests", "read_manifest",
    # filtering (imports torch, so loaded on first use: `crawl.score_crawl` works, `import ltkit.crawl` stays light)
    "FilterScores", "score_crawl", "decide", "save_accepted", "load_settings", "build_encoder", "Tuner",
]
_LAZY = {"FilterScores": "filter", "score_crawl": "filter", "decide": "filter", "save_accepted": "filter",
         "load_settings": "filter", "build_encoder": "encode", "Tuner": "tuner"}


def __getattr__(name: str):
    """The filtering names, imported when first asked for (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ltkit.crawl.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ltkit.crawl' has no attribute {name!r}")
