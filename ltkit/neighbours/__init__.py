"""Neighbour search (paper Sec. 3.1): an LLM proposes fine-grained categories near each target class.

Split along its seams: `prompt` (the paper's template), `parse` (names out of free LLM text),
`backends` (OpenAI-compatible, taxonomy, manual), `cache` (every answer on disk, token tally),
`random_categories` (RD as a backend), `search` (the label-set filter and the search),
`neighbour_map` (`neighbours.csv` and what training reads from it) and `cli`
(`python -m ltkit neighbours`).

Artifacts of a search in its folder: `llm_cache.jsonl` (every prompt and answer) and `neighbours.csv`
(one row per proposed name; kept rows get auxiliary class ids L..L+K-1).
"""
from ltkit.artifacts.neighbour_map import CACHE_FILE, CSV_COLUMNS, MAP_FILE, NeighbourMap, Row, load_neighbour_map, read_classes, write_neighbour_csv
from ltkit.neighbours.backends import (Answer, Backend, ManualBackend, NeighbourSearchError, OpenAIBackend,
                                       TaxonomyBackend, read_manual)
from ltkit.neighbours.cache import AnswerCache, Tally, ask, cache_key
from ltkit.neighbours.parse import parse_names
from ltkit.neighbours.prompt import PAPER_TEMPLATE, build_prompt
from ltkit.neighbours.search import SearchResult, filter_proposals, format_rows, label_keys, search_neighbours
from ltkit.words import name_key, singular

__all__ = [
    "Answer", "Backend", "ManualBackend", "NeighbourSearchError", "OpenAIBackend", "TaxonomyBackend", "read_manual",
    "AnswerCache", "Tally", "ask", "cache_key", "name_key", "parse_names", "singular", "CACHE_FILE", "CSV_COLUMNS",
    "MAP_FILE", "NeighbourMap", "Row", "load_neighbour_map", "read_classes", "write_neighbour_csv", "SearchResult",
    "filter_proposals", "format_rows", "label_keys", "search_neighbours", "PAPER_TEMPLATE", "build_prompt",
]
