"""Neighbour category search (paper Sec. 3.1): ask a backend for fine-grained classes related to each
target class, drop leaks into the label set and duplicates (every drop says why), write the map.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ltkit.artifacts.neighbour_map import CACHE_FILE, MAP_FILE, Row, write_neighbour_csv
from ltkit.budget import aux_budget
from ltkit.data.taxonomy import Taxonomy
from ltkit.neighbours.backends import Answer, Backend
from ltkit.neighbours.cache import AnswerCache, Tally, ask
from ltkit.words import drop_parentheses, label_variants, name_key


def label_keys(class_names: Sequence[str], taxonomy: Taxonomy | None = None) -> set[str]:
    """`label_variants` of every target class and, where the taxonomy knows them, its synonyms.

    A proposal is in the label set when its own variants meet these: "Sport Car" and "SportsCar" are
    the target class "sports car".
    """
    keys = set()
    for c in class_names:
        names = taxonomy.names_of(c) if taxonomy is not None and c in taxonomy else (c,)
        # "crane (n02012849)" (a WordNet homonym) also blocks a proposed "crane"
        keys.update(k for n in names for k in label_variants(n) | label_variants(drop_parentheses(n)))
    return keys


def filter_proposals(proposals: Sequence[Sequence[str] | None], class_names: Sequence[str], budget: Sequence[int],
                     taxonomy: Taxonomy | None = None, backend: str = "",
                     order: Sequence[int] | None = None) -> list[Row]:
    """The leak filter: up to budget[t] new names per class; every drop says why. Rows and aux ids in class order."""
    if not len(proposals) == len(class_names) == len(budget):
        raise ValueError(f"{len(proposals)} proposals, {len(class_names)} classes and {len(budget)} budgets differ")
    labels, owner, L = label_keys(class_names, taxonomy), {}, len(class_names)
    per_class: dict[int, list[Row]] = {}
    # `order` decides who claims a name two classes propose (search_neighbours: the rarest class first)
    for t in (range(L) if order is None else order):
        rows, kept_here = per_class.setdefault(t, []), 0
        for name in proposals[t] or ():
            name, key = name.strip(), name_key(name)
            reason = ("empty" if not key else "in_label_set" if label_variants(name) & labels
                      else f"duplicate_of:{owner[key]}" if key in owner
                      else "over_budget" if kept_here >= budget[t] else "")
            if not reason:
                owner[key], kept_here = class_names[t], kept_here + 1
            rows.append(Row(t, class_names[t], name, None, backend, "dropped" if reason else "kept", reason))
    out = [r for t in sorted(per_class) for r in per_class[t]]
    for i, r in enumerate(r for r in out if r.status == "kept"):
        r.aux_id = L + i
    return out


@dataclass
class SearchResult:
    """Everything one search produced."""

    rows: list[Row]
    answers: dict[int, Answer]
    budget: np.ndarray
    tally: Tally
    out_dir: Path
    warnings: list[str] = field(default_factory=list)
    cache_path: Path | None = None  # default: llm_cache.jsonl in out_dir

    def __post_init__(self) -> None:
        self.cache_path = Path(self.cache_path) if self.cache_path else self.out_dir / CACHE_FILE

    @property
    def csv_path(self) -> Path:
        return self.out_dir / MAP_FILE

    def drop_counts(self) -> dict[str, int]:
        """Dropped rows per reason ('duplicate_of:<class>' counted as 'duplicate_of')."""
        return dict(Counter(r.reason.split(":")[0] for r in self.rows if r.status == "dropped"))

    def summary(self) -> dict:
        """Counts a researcher checks first."""
        kept = Counter(r.target_id for r in self.rows if r.status == "kept")
        t = self.tally
        return {"classes": len(self.budget), "expanded": int((self.budget > 0).sum()),
                "proposed": len(self.rows), "kept": sum(kept.values()), "dropped": self.drop_counts(),
                "under_budget": int(sum(kept[c] < b for c, b in enumerate(self.budget) if b > 0)),
                "requests": t.requests, "cached": t.cached, "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens, "tokens": t.tokens, "cost": t.cost,
                "warnings": len(self.warnings)}

    def format_summary(self) -> str:
        """The summary as a few lines of text."""
        s = self.summary()
        drops = ", ".join(f"{k} {v}" for k, v in sorted(s["dropped"].items())) or "none"
        cost = "" if s["cost"] is None else f", cost {s['cost']:.4f}"
        return (f"classes expanded: {s['expanded']} of {s['classes']} (under budget: {s['under_budget']})\n"
                f"names proposed: {s['proposed']}, kept: {s['kept']}, dropped: {drops}\n"
                f"requests: {s['requests']} new, {s['cached']} from cache; tokens: {s['tokens']} "
                f"({s['prompt_tokens']} prompt + {s['completion_tokens']} completion){cost}\n"
                f"wrote {self.csv_path} and {self.cache_path}")


def format_rows(rows: Sequence[Row], limit: int | None = 20) -> str:
    """A plain-text table of neighbour rows (notebooks and the CLI; no pandas needed)."""
    cols = ("target_id", "target_name", "aux_name", "aux_id", "status", "reason")
    cells = [cols] + [tuple("" if getattr(r, c) is None else str(getattr(r, c)) for c in cols)
                      for r in list(rows)[:limit]]
    width = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, width)).rstrip() for row in cells]
    more = len(rows) - len(cells) + 1
    return "\n".join(lines + ([f"... {more} more rows"] if more > 0 else []))


def _ask_all(backend: Backend, names: list[str], k: int, cache: AnswerCache, tally: Tally, workers: int,
             progress: Callable[[str], None] | None) -> dict[str, Answer]:
    """`ask` for every name, up to `workers` at a time; the first failure stops the rest (answers so far stay cached)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out: dict[str, Answer] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(ask, backend, n, k, cache, tally): n for n in names}
        try:
            for i, f in enumerate(as_completed(futures), 1):
                out[futures[f]] = f.result()
                if progress is not None and (i == len(names) or i % 10 == 0):
                    progress(f"{i}/{len(names)} classes, {tally.requests} new requests, {tally.tokens} tokens")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out


def search_neighbours(backend: Backend, class_names: Sequence[str], train_counts: Sequence[int] | None,
                      out_dir: str | os.PathLike, k: int = 5, ratio: str | Sequence[float] | None = None,
                      taxonomy: Taxonomy | None = None, price_per_1k: float | tuple[float, float] | None = None,
                      progress: Callable[[str], None] | None = None, many: int = 100, few: int = 20,
                      cache_path: str | os.PathLike | None = None, workers: int = 8) -> SearchResult:
    """Ask for every class with a non-zero budget (cached), filter leaks, write neighbours.csv.

    The budget per class is `aux_budget(train_counts, k, ratio, many, few)`, the one the sampler
    applies; without train counts every class gets k. Answers are cached in `cache_path`
    (default `out_dir/llm_cache.jsonl`). Up to `workers` requests run at once (threads: the
    backends wait on the network); each distinct class name is asked once.
    """
    out = Path(out_dir)
    budget = (np.full(len(class_names), k, dtype=int) if train_counts is None
              else aux_budget(train_counts, k, ratio, many, few))
    cache_path = Path(cache_path) if cache_path else out / CACHE_FILE
    cache, tally = AnswerCache(cache_path), Tally(price_per_1k)
    answers, warnings = {}, []
    todo = [t for t in range(len(class_names)) if budget[t] > 0]
    by_name = _ask_all(backend, list(dict.fromkeys(class_names[t] for t in todo)), k, cache, tally, workers, progress)
    for t in todo:
        a = answers[t] = by_name[class_names[t]]
        if a.warning:
            warnings.append(f"{class_names[t]}: {a.warning}")
    proposals = [answers[t].names if t in answers else None for t in range(len(class_names))]
    # rarer classes choose first: the tail needs the auxiliary data most
    order = None if train_counts is None else [int(i) for i in np.argsort(train_counts, kind="stable")]
    rows = filter_proposals(proposals, class_names, budget, taxonomy, backend.name, order)
    kept = Counter(r.target_id for r in rows if r.status == "kept")
    warnings += [f"{class_names[t]}: kept {kept[t]} of budget {budget[t]}" for t in todo if kept[t] < budget[t]]
    write_neighbour_csv(out / MAP_FILE, rows)
    return SearchResult(rows, answers, budget, tally, out, warnings, cache_path)

