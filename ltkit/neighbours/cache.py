"""Every backend answer goes through one on-disk cache (a re-run asks nothing twice) and one token tally."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ltkit.neighbours.backends import Answer, Backend
from ltkit.io import append_jsonl, read_jsonl


def cache_key(backend: str, model: str, prompt: str, params: dict) -> str:
    """Identity of one question: the same key is never asked twice."""
    return hashlib.sha256(json.dumps([backend, model, prompt, params], sort_keys=True).encode()).hexdigest()


class AnswerCache:
    """Append-only JSONL of every prompt and answer, indexed by `cache_key`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows = {r["key"]: r for r in read_jsonl(self.path) if "key" in r}
        self._lock = threading.Lock()  # concurrent searches append from several threads

    def get(self, key: str) -> dict | None:
        """The stored record, or None."""
        return self.rows.get(key)

    def put(self, key: str, answer: Answer, params: dict, base_url: str | None = None) -> dict:
        """Store an answer (never credentials: only what is listed here is written)."""
        row = {"key": key, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **{k: v for k, v in asdict(answer).items() if k != "cached"},
               "short": answer.short, "params": params, "base_url": base_url}
        with self._lock:
            append_jsonl(self.path, row)
            self.rows[key] = row
        return row


_TALLY_LOCK = threading.Lock()


@dataclass
class Tally:
    """Requests and tokens of one search; cost when a price per 1K tokens is given."""

    price_per_1k: float | tuple[float, float] | None = None
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: dict[str, int] | None) -> None:
        """Count one new request."""
        with _TALLY_LOCK:
            self.requests += 1
            if usage:
                self.prompt_tokens += usage.get("prompt_tokens", 0)
                self.completion_tokens += usage.get("completion_tokens", 0)

    def hit(self) -> None:
        """Count one answer served from the cache."""
        with _TALLY_LOCK:
            self.cached += 1

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        """Spent this run, in the unit of the price; a pair prices prompt and completion tokens apart."""
        p = self.price_per_1k
        if p is None:
            return None
        pin, pout = p if isinstance(p, (tuple, list)) else (p, p)
        return (self.prompt_tokens * pin + self.completion_tokens * pout) / 1000


def ask(backend: Backend, class_name: str, k: int, cache: AnswerCache, tally: Tally | None = None) -> Answer:
    """An answer from the cache, or from the backend (then cached)."""
    prompt = backend.prompt(class_name, k)
    key = cache_key(backend.name, backend.model, prompt, backend.params)
    row = cache.get(key)
    if row is not None:
        if tally is not None:
            tally.hit()
        return Answer(row["class_name"], row["k"], list(row["names"]), row["raw"], row["backend"], row["model"],
                      row["prompt"], row.get("template", ""), row.get("usage"), row.get("elapsed_s", 0.0),
                      row.get("warning", ""), row.get("mode", "text"), cached=True)
    answer = backend.propose(class_name, k)
    cache.put(key, answer, backend.params, getattr(backend, "base_url", None))
    if tally is not None:
        tally.add(answer.usage)
    return answer
