"""Neighbour category search (paper Sec. 3.1): ask a backend for fine-grained classes related to each
target class, drop leaks into the label set and duplicates, and write the neighbour map.

Backends share one small interface (`prompt`, `propose`): an OpenAI-compatible chat endpoint (the
paper's LLM; any local vLLM / Ollama / llama.cpp server too), a `Taxonomy` (offline: siblings, then
cousins) and a file the user wrote. Every answer goes through one on-disk cache, so a re-run asks
nothing twice, and one leak filter, so every dropped name carries its reason.

Artifacts in `crawl/<name>/`: `llm_cache.jsonl` (every prompt and answer) and `neighbours.csv`
(one row per proposed name; kept rows get auxiliary class ids L..L+K-1).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from ltkit.budget import aux_budget
from ltkit.io import append_jsonl, atomic_write_text, read_jsonl
from ltkit.taxonomy import Taxonomy, normalise

log = logging.getLogger(__name__)

PAPER_TEMPLATE = (
    "Task: Given a category name, please list out {K} classes that are fine-grained categories related to "
    "the provided classes.\n\nQuery: sports car\n\nResponse: sedan, coupe, SUV, luxury car, electric car\n\n"
    "Query: {CLS}\n\nResponse:"
)
CSV_COLUMNS = ("target_id", "target_name", "aux_name", "aux_id", "backend", "status", "reason")
CACHE_FILE, MAP_FILE = "llm_cache.jsonl", "neighbours.csv"


class NeighbourSearchError(RuntimeError):
    """A backend could not produce an answer (after retries); the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# prompt and parsing


def build_prompt(template: str, class_name: str, k: int) -> str:
    """Fill `{CLS}` and `{K}` (plain replacement, so other braces in a user template are literal)."""
    if "{CLS}" not in template:
        raise ValueError("prompt template must contain the placeholder {CLS} (and may contain {K})")
    return template.replace("{K}", str(k)).replace("{CLS}", class_name)


def _singular(word: str) -> str:
    """Crude English singular, only for comparing names ('Sedans' == 'sedan', 'berries' == 'berry')."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def name_key(name: str) -> str:
    """Comparison key: `normalise` plus a singular last word."""
    words = normalise(name).split()
    return " ".join(words[:-1] + [_singular(words[-1])]) if words else ""


_MARKER = re.compile(r"(?i)\bresponse\s*:")
_NEXT_BLOCK = re.compile(r"(?im)^\s*(?:query|task)\s*:")
_BULLET = re.compile(r"^\s*(?:[-*•·‣◦+–—>]+|\(?\d{1,3}\s*[.):\]]|#+)\s*")
_INLINE_NUMBER = re.compile(r"\s+(?=\(?\d{1,2}[.)]\s)")
_DESCRIPTION = re.compile(r"\s+[-–—]\s+|:\s")
_PAREN = re.compile(r"\s*\([^)]*\)")
_QUOTES = "\"'`“”‘’«»*_"


def _clean_item(item: str) -> str:
    """One proposed name without numbering, bullets, markdown, quotes, descriptions or end punctuation."""
    s = _BULLET.sub("", item.strip())
    s = _DESCRIPTION.split(s, maxsplit=1)[0]
    s = _PAREN.sub("", s).strip().strip(_QUOTES + " ").rstrip(".,;:!?").strip(_QUOTES + " ")
    s = re.sub(r"(?i)^(?:and|or)\s+", "", s)
    return " ".join(s.split())


def parse_names(text: str | None, max_words: int = 6) -> list[str]:
    """Names from free LLM text: commas, lines, numbering, bullets, quotes, echoes; deduplicated by `name_key`."""
    text = (text or "").replace("\r", "")
    if re.match(r"(?i)\s*task\s*:", text):  # the whole prompt echoed back: the answer is after the last marker
        text = _MARKER.split(text)[-1]
    text = _NEXT_BLOCK.split(text)[0]  # a model continuing the in-context pattern: keep the first answer only
    text = _MARKER.split(text, maxsplit=1)[-1]  # an echoed "Response:" prefix, or a preamble before it
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # "Here are 5 categories related to X:"
        lines = lines[1:]
    out, seen = [], set()
    for line in lines:
        for chunk in _INLINE_NUMBER.split(line):
            for item in re.split(r"[,;]", chunk):
                name = _clean_item(item)
                key = name_key(name)
                # a sentence ("I hope this helps") is not a class name
                if key and key not in seen and len(name.split()) <= max_words:
                    seen.add(key)
                    out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# backends


@dataclass
class Answer:
    """What a backend proposed for one class: raw text, parsed names and how they were obtained."""

    class_name: str
    k: int
    names: list[str]
    raw: str
    backend: str
    model: str
    prompt: str
    template: str = ""
    usage: dict[str, int] | None = None
    elapsed_s: float = 0.0
    warning: str = ""
    cached: bool = False

    @property
    def short(self) -> int:
        """How many fewer than k usable names came back."""
        return max(0, self.k - len(self.names))


class Backend(Protocol):
    """Anything that proposes neighbour names; `name` + `model` + `prompt` + `params` key the cache."""

    name: str
    model: str
    template: str
    params: dict

    def prompt(self, class_name: str, k: int) -> str: ...

    def propose(self, class_name: str, k: int) -> Answer: ...


def _fingerprint(obj: object) -> str:
    """Short content hash, so cached offline answers go stale when their source changes."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _scrub(text: str, secret: str | None) -> str:
    """Remove a secret from a message before it is raised, logged or stored."""
    return text.replace(secret, "***") if secret else text


class OpenAIBackend:
    """OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp) with retries and backoff."""

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 template: str = PAPER_TEMPLATE, temperature: float | None = 0.0, seed: int | None = 0,
                 max_tokens: int | None = 256, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        import openai

        build_prompt(template, "x", 1)  # fail early on a template without {CLS}
        self.model, self.template = model, template
        self.params = {k: v for k, v in (("temperature", temperature), ("seed", seed), ("max_tokens", max_tokens))
                       if v is not None}
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        try:
            # our own loop retries (configurable, fast in tests), so the client's is off
            self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        except openai.OpenAIError as e:
            raise NeighbourSearchError(
                "openai backend needs an API key: set OPENAI_API_KEY (any dummy string such as 'local' works "
                f"for a local vLLM / Ollama / llama.cpp server) or pass api_key= ({e.__class__.__name__})") from None
        self.base_url = str(self._client.base_url)

    def __repr__(self) -> str:  # never show the key (notebooks print reprs)
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, params={self.params})"

    def prompt(self, class_name: str, k: int) -> str:
        """The template filled for one class."""
        return build_prompt(self.template, class_name, k)

    def _fail(self, class_name: str, what: str) -> NeighbourSearchError:
        msg = f"openai backend ({self.model} at {self.base_url}), class {class_name!r}: {what}"
        return NeighbourSearchError(_scrub(msg, self._client.api_key))

    def _wait(self, attempt: int, err: Exception) -> float:
        """Exponential backoff with jitter; a server's Retry-After wins when it is sane."""
        resp = getattr(err, "response", None)
        try:
            after = float(resp.headers.get("retry-after", "")) if resp is not None else -1.0
        except ValueError:
            after = -1.0
        if 0 < after <= self.max_backoff:
            return after
        return min(self.backoff * 2 ** attempt, self.max_backoff) * (0.75 + 0.25 * random.random())

    def _create(self, class_name: str, prompt: str):
        """One chat completion, retried on 429, 408, 5xx, timeouts and connection errors."""
        import openai

        for attempt in range(self.retries + 1):
            try:
                return self._client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], timeout=self.timeout,
                    **self.params)
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                err: Exception = e
            except openai.APIStatusError as e:
                if e.status_code != 408:
                    hint = " (check OPENAI_API_KEY)" if e.status_code in (401, 403) else \
                        " (check the model name and --base-url, which usually ends in /v1)" if e.status_code == 404 else ""
                    raise self._fail(class_name, f"HTTP {e.status_code}: {e.message}{hint}") from e
                err = e
            except (openai.OpenAIError, ValueError) as e:  # e.g. a 200 whose body is broken JSON
                raise self._fail(class_name, f"unreadable response ({type(e).__name__}: {e})") from e
            if attempt < self.retries:
                wait = self._wait(attempt, err)
                log.warning("%s", _scrub(f"{self.model}: {type(err).__name__} on {class_name!r}, retry "
                                         f"{attempt + 1}/{self.retries} in {wait:.2f}s", self._client.api_key))
                time.sleep(wait)
        raise self._fail(class_name, f"gave up after {self.retries + 1} attempts: {type(err).__name__}: {err}")

    def propose(self, class_name: str, k: int) -> Answer:
        """Ask the model; raw text, parsed names and token usage."""
        prompt, t0 = self.prompt(class_name, k), time.monotonic()
        resp = self._create(class_name, prompt)
        try:
            raw = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):  # the client hands back non-JSON bodies as str
            raise self._fail(class_name, f"not a chat completion: {str(resp)[:200]!r}") from None
        u = getattr(resp, "usage", None)
        usage = {f: int(getattr(u, f, 0) or 0) for f in ("prompt_tokens", "completion_tokens", "total_tokens")} \
            if u is not None else None
        names = parse_names(raw)
        warn = "" if len(names) >= k else f"{len(names)} of {k} usable names" + ("" if raw.strip() else " (empty answer)")
        return Answer(class_name, k, names, raw, self.name, self.model, prompt, self.template, usage,
                      time.monotonic() - t0, warn)


class TaxonomyBackend:
    """Offline neighbours from a hierarchy: siblings first, then cousins, each in a seeded order."""

    name = "taxonomy"
    template = ""

    def __init__(self, taxonomy: Taxonomy, seed: int = 0, overfetch: int = 3) -> None:
        # it is free, so propose more than k: the leak filter then drops target classes and names
        # another class already took, and still fills the budget
        self.taxonomy, self.seed, self.overfetch = taxonomy, seed, overfetch
        self.model = f"taxonomy-{_fingerprint([taxonomy.paths, taxonomy.synonyms])}"
        self.params = {"seed": seed, "overfetch": overfetch}
        # index once: Taxonomy.siblings/cousins scan every class per call (quadratic on iNat or WordNet)
        self._by_path: dict[tuple, list[str]] = {}
        self._by_grand: dict[tuple, list[str]] = {}
        for c, p in taxonomy.paths.items():
            self._by_path.setdefault(p, []).append(c)
            if len(p) >= 2:
                self._by_grand.setdefault(p[:-1], []).append(c)

    def __repr__(self) -> str:
        return f"TaxonomyBackend({len(self.taxonomy.paths)} classes, seed={self.seed}, overfetch={self.overfetch})"

    def prompt(self, class_name: str, k: int) -> str:
        """What is asked, for the cache record."""
        return f"siblings then cousins of {class_name!r}, up to {k * self.overfetch}"

    def _shuffled(self, names: list[str], class_name: str, part: int) -> list[str]:
        """Seeded order that depends on the class, not on the order classes are asked in."""
        h = int.from_bytes(hashlib.sha256(class_name.encode()).digest()[:4], "little")
        return [names[i] for i in np.random.default_rng([self.seed, h, part]).permutation(len(names))]

    def propose(self, class_name: str, k: int) -> Answer:
        """Up to k * overfetch neighbour names."""
        if class_name not in self.taxonomy:
            return Answer(class_name, k, [], "", self.name, self.model, self.prompt(class_name, k),
                          warning=f"{class_name!r} is not in the taxonomy")
        p = self.taxonomy.path(class_name)
        siblings = [c for c in self._by_path[p] if c != class_name]
        cousins = [c for c in self._by_grand.get(p[:-1], []) if len(p) >= 2 and self.taxonomy.paths[c][-1] != p[-1]]
        names = (self._shuffled(siblings, class_name, 0) + self._shuffled(cousins, class_name, 1))[:k * self.overfetch]
        warn = "" if len(names) >= k else f"only {len(names)} siblings and cousins"
        return Answer(class_name, k, names, "\n".join(names), self.name, self.model, self.prompt(class_name, k),
                      warning=warn)


def read_manual(path: str | os.PathLike) -> dict[str, list[str]]:
    """A user's neighbour list: JSON `{class: [names]}` or CSV rows `class,neighbour` (header optional)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    out: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected an object mapping class name -> list of neighbour names")
        for cls, names in obj.items():
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list):
                raise ValueError(f"{path}: field {cls!r}: expected a list of names, got {type(names).__name__}")
            for i, n in enumerate(names):
                if not isinstance(n, str) or not n.strip():
                    raise ValueError(f"{path}: field {cls!r}[{i}]: expected a non-empty string, got {n!r}")
            out.setdefault(normalise(cls), []).extend(n.strip() for n in names)
        return out
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if lineno == 1 and [c.strip().lower() for c in row] in (["class", "neighbour"], ["class", "neighbor"]):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}: line {lineno}: expected 'class,neighbour' with both fields non-empty, got {row}")
        out.setdefault(normalise(row[0]), []).append(row[1].strip())
    return out


class ManualBackend:
    """Neighbours the user wrote down (see `read_manual`); classes absent from the file get none, with a warning."""

    name = "manual"
    template = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.table = read_manual(self.path)
        self.model = f"{self.path.name}-{_fingerprint(self.table)}"
        self.params: dict = {}

    def __repr__(self) -> str:
        return f"ManualBackend({str(self.path)!r}, {len(self.table)} classes)"

    def prompt(self, class_name: str, k: int) -> str:
        """What is asked, for the cache record."""
        return f"entry {class_name!r} of {self.path.name}"

    def propose(self, class_name: str, k: int) -> Answer:
        """The file's names for this class (all of them; the filter applies the budget)."""
        names = self.table.get(normalise(class_name), [])
        warn = "" if len(names) >= k else f"{len(names)} of {k} names in {self.path.name}"
        return Answer(class_name, k, list(names), "\n".join(names), self.name, self.model,
                      self.prompt(class_name, k), warning=warn)


# ---------------------------------------------------------------------------------------------
# cache and token tally


def cache_key(backend: str, model: str, prompt: str, params: dict) -> str:
    """Identity of one question: the same key is never asked twice."""
    return hashlib.sha256(json.dumps([backend, model, prompt, params], sort_keys=True).encode()).hexdigest()


class AnswerCache:
    """Append-only JSONL of every prompt and answer, indexed by `cache_key`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows = {r["key"]: r for r in read_jsonl(self.path) if "key" in r}

    def get(self, key: str) -> dict | None:
        """The stored record, or None."""
        return self.rows.get(key)

    def put(self, key: str, answer: Answer, params: dict, base_url: str | None = None) -> dict:
        """Store an answer (never credentials: only what is listed here is written)."""
        row = {"key": key, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **{k: v for k, v in asdict(answer).items() if k != "cached"},
               "short": answer.short, "params": params, "base_url": base_url}
        append_jsonl(self.path, row)
        self.rows[key] = row
        return row


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
        self.requests += 1
        if usage:
            self.prompt_tokens += usage.get("prompt_tokens", 0)
            self.completion_tokens += usage.get("completion_tokens", 0)

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
            tally.cached += 1
        return Answer(row["class_name"], row["k"], list(row["names"]), row["raw"], row["backend"], row["model"],
                      row["prompt"], row.get("template", ""), row.get("usage"), row.get("elapsed_s", 0.0),
                      row.get("warning", ""), cached=True)
    answer = backend.propose(class_name, k)
    cache.put(key, answer, backend.params, getattr(backend, "base_url", None))
    if tally is not None:
        tally.add(answer.usage)
    return answer


# ---------------------------------------------------------------------------------------------
# leak filter and the neighbour map


@dataclass
class Row:
    """One proposed name and what became of it (a line of neighbours.csv)."""

    target_id: int
    target_name: str
    aux_name: str
    aux_id: int | None
    backend: str
    status: str  # kept | dropped
    reason: str = ""


def label_keys(class_names: Sequence[str], taxonomy: Taxonomy | None = None) -> set[str]:
    """Comparison keys of every target class and, where the taxonomy knows them, its synonyms."""
    keys = set()
    for c in class_names:
        names = taxonomy.names_of(c) if taxonomy is not None and c in taxonomy else (c,)
        # "crane (n02012849)" (a WordNet homonym) also blocks a proposed "crane"
        keys.update(k for n in names for k in (name_key(n), name_key(_PAREN.sub("", n))))
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
            reason = ("empty" if not key else "in_label_set" if key in labels
                      else f"duplicate_of:{owner[key]}" if key in owner
                      else "over_budget" if kept_here >= budget[t] else "")
            if not reason:
                owner[key], kept_here = class_names[t], kept_here + 1
            rows.append(Row(t, class_names[t], name, None, backend, "dropped" if reason else "kept", reason))
    out = [r for t in sorted(per_class) for r in per_class[t]]
    for i, r in enumerate(r for r in out if r.status == "kept"):
        r.aux_id = L + i
    return out


def write_neighbour_csv(path: str | os.PathLike, rows: Sequence[Row]) -> None:
    """neighbours.csv, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.target_id, r.target_name, r.aux_name, "" if r.aux_id is None else r.aux_id, r.backend,
                    r.status, r.reason])
    atomic_write_text(path, buf.getvalue())


@dataclass
class NeighbourMap:
    """Auxiliary classes L..L+K-1: their names and the target class each was queried from."""

    aux_names: list[str]
    aux_parent: np.ndarray  # (K,) int, target id in 0..L-1
    num_targets: int

    @property
    def num_aux(self) -> int:
        return len(self.aux_names)

    @property
    def num_classes(self) -> int:
        """L + K, the classifier width during training."""
        return self.num_targets + self.num_aux


def _field_int(path: Path, lineno: int, field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}: line {lineno}: field {field}: not an integer: {text!r}") from None


def load_neighbour_map(path: str | os.PathLike, num_targets: int) -> NeighbourMap:
    """Read and validate neighbours.csv; errors name the file, line and field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no neighbour map (run `python -m ltkit neighbours --out {path.parent}`)")
    with open(path, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    if not lines or tuple(h.strip() for h in lines[0]) != CSV_COLUMNS:
        raise ValueError(f"{path}: line 1: expected header {','.join(CSV_COLUMNS)}, got {lines[:1]}")
    kept: dict[int, tuple[str, int]] = {}
    seen: dict[str, int] = {}
    target_name: dict[int, str] = {}
    for n, row in enumerate(lines[1:], 2):
        if not row:
            continue
        if len(row) != len(CSV_COLUMNS):
            raise ValueError(f"{path}: line {n}: expected {len(CSV_COLUMNS)} fields, got {len(row)}")
        r = dict(zip(CSV_COLUMNS, row))
        t, name, err = _field_int(path, n, "target_id", r["target_id"]), r["aux_name"].strip(), ""
        if not 0 <= t < num_targets:
            err = f"target_id: {t} outside 0..{num_targets - 1}"
        elif target_name.setdefault(t, r["target_name"]) != r["target_name"]:
            err = f"target_name: {r['target_name']!r} but target {t} was {target_name[t]!r} earlier"
        elif r["status"] not in ("kept", "dropped"):
            err = f"status: expected kept or dropped, got {r['status']!r}"
        elif r["status"] == "dropped":
            err = "aux_id: must be empty on a dropped row" if r["aux_id"] else ""
        elif not name:
            err = "aux_name: empty on a kept row"
        elif (a := _field_int(path, n, "aux_id", r["aux_id"])) < num_targets or a in kept:
            err = (f"aux_id: {a} is {'a target id' if a < num_targets else 'used twice'} "
                   f"(auxiliary ids start at num_targets={num_targets}; is that right?)")
        elif name_key(name) in seen:
            err = f"aux_name: {name!r} duplicates line {seen[name_key(name)]}"
        else:
            seen[name_key(name)], kept[a] = n, (name, t)
        if err:
            raise ValueError(f"{path}: line {n}: field {err}")
    ids = sorted(kept)
    if ids != list(range(num_targets, num_targets + len(ids))):
        missing = sorted(set(range(num_targets, num_targets + len(ids))) - set(ids))
        raise ValueError(f"{path}: aux_id must be exactly {num_targets}..{num_targets + len(ids) - 1}; "
                         f"missing {missing[:5]}")
    return NeighbourMap([kept[a][0] for a in ids], np.array([kept[a][1] for a in ids], dtype=np.int64), num_targets)


# ---------------------------------------------------------------------------------------------
# the search


@dataclass
class SearchResult:
    """Everything one search produced."""

    rows: list[Row]
    answers: dict[int, Answer]
    budget: np.ndarray
    tally: Tally
    out_dir: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def csv_path(self) -> Path:
        return self.out_dir / MAP_FILE

    @property
    def cache_path(self) -> Path:
        return self.out_dir / CACHE_FILE

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


def search_neighbours(backend: Backend, class_names: Sequence[str], train_counts: Sequence[int] | None,
                      out_dir: str | os.PathLike, k: int = 5, ratio: str | Sequence[float] | None = None,
                      taxonomy: Taxonomy | None = None, price_per_1k: float | tuple[float, float] | None = None,
                      progress: Callable[[str], None] | None = None, many: int = 100, few: int = 20) -> SearchResult:
    """Ask for every class with a non-zero budget (cached), filter leaks, write neighbours.csv."""
    out = Path(out_dir)
    budget = (np.full(len(class_names), k, dtype=int) if train_counts is None
              else aux_budget(train_counts, k, ratio, many, few))
    cache, tally = AnswerCache(out / CACHE_FILE), Tally(price_per_1k)
    answers, warnings = {}, []
    todo = [t for t in range(len(class_names)) if budget[t] > 0]
    for i, t in enumerate(todo):
        a = answers[t] = ask(backend, class_names[t], k, cache, tally)
        if a.warning:
            warnings.append(f"{class_names[t]}: {a.warning}")
        if progress is not None and (i + 1 == len(todo) or (i + 1) % 10 == 0):
            progress(f"{i + 1}/{len(todo)} classes, {tally.requests} new requests, {tally.tokens} tokens")
    proposals = [answers[t].names if t in answers else None for t in range(len(class_names))]
    # rarer classes choose first: the tail needs the auxiliary data most
    order = None if train_counts is None else [int(i) for i in np.argsort(train_counts, kind="stable")]
    rows = filter_proposals(proposals, class_names, budget, taxonomy, backend.name, order)
    kept = Counter(r.target_id for r in rows if r.status == "kept")
    warnings += [f"{class_names[t]}: kept {kept[t]} of budget {budget[t]}" for t in todo if kept[t] < budget[t]]
    write_neighbour_csv(out / MAP_FILE, rows)
    return SearchResult(rows, answers, budget, tally, out, warnings)


# ---------------------------------------------------------------------------------------------
# command line


def read_classes(path: str | os.PathLike) -> tuple[list[str], list[int] | None]:
    """Target classes file: one name per line, optionally 'name,train_count' (all lines or none)."""
    path = Path(path)
    names, counts = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, count = line.rpartition(",") if "," in line else (line, "", "")
        if count:
            try:
                counts.append(int(count))
            except ValueError:
                raise ValueError(f"{path}: line {lineno}: train count {count.strip()!r} is not an integer") from None
        names.append(name.strip())
    if counts and len(counts) != len(names):
        raise ValueError(f"{path}: either every line or none has ',train_count'")
    if not names:
        raise ValueError(f"{path}: no class names")
    return names, counts or None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ltkit neighbours", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-preset", default="builtin", help="builtin or builtin-tiny: target classes and taxonomy")
    p.add_argument("--backend", choices=("taxonomy", "openai", "manual"), default="taxonomy", help="default: taxonomy")
    p.add_argument("--model", help="openai: model name (e.g. gpt-4o-mini, or a local server's model)")
    p.add_argument("--base-url", help="openai: endpoint, e.g. http://localhost:8000/v1 (default OPENAI_BASE_URL)")
    p.add_argument("--template-file", help="openai: prompt template with {CLS} and optionally {K}")
    p.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request")
    p.add_argument("--retries", type=int, default=4, help="openai: retries on 429, 5xx, timeouts")
    p.add_argument("--price-per-1k", type=float, help="price per 1K tokens, to show the cost")
    p.add_argument("--file", help="manual: JSON {class: [names]} or CSV class,neighbour")
    p.add_argument("--taxonomy-json", help="taxonomy: a Taxonomy JSON instead of the world's")
    p.add_argument("--classes-file", help="target classes (one per line, optionally name,train_count)")
    p.add_argument("--k", type=int, default=5, help="names asked per class and the budget cap")
    p.add_argument("--ratio", help="head:medium:tail budget ratio, e.g. 1:1:3 or 0:1:1 (default: the paper's)")
    p.add_argument("--seed", type=int, default=0, help="LLM sampling seed / taxonomy order")
    p.add_argument("--out", help="output folder (default crawl/<preset>)")
    p.add_argument("--show", type=int, default=10, help="rows of the table to print")
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit neighbours ...`."""
    args = _parser().parse_args(argv)
    try:
        taxonomy = Taxonomy.from_json(args.taxonomy_json) if args.taxonomy_json else None
        if args.classes_file:
            class_names, counts = read_classes(args.classes_file)
        else:
            from ltkit.world import PRESETS, load_world

            if args.world_preset not in PRESETS:
                raise ValueError(f"--world-preset {args.world_preset!r}: expected one of {', '.join(PRESETS)}")
            world = load_world(PRESETS[args.world_preset])
            class_names, counts = world.class_names, list(world.train_counts)
            taxonomy = taxonomy or world.taxonomy
        if args.backend == "openai":
            if not args.model:
                raise ValueError("--backend openai needs --model")
            template = Path(args.template_file).read_text(encoding="utf-8") if args.template_file else PAPER_TEMPLATE
            backend: Backend = OpenAIBackend(args.model, args.base_url, template=template, seed=args.seed,
                                             timeout=args.timeout, retries=args.retries)
        elif args.backend == "manual":
            if not args.file:
                raise ValueError("--backend manual needs --file")
            backend = ManualBackend(args.file)
        else:
            if taxonomy is None:
                raise ValueError("--backend taxonomy with --classes-file needs --taxonomy-json")
            backend = TaxonomyBackend(taxonomy, seed=args.seed)
        out = args.out or f"crawl/{args.world_preset if not args.classes_file else 'custom'}"
        res = search_neighbours(backend, class_names, counts, out, args.k, args.ratio, taxonomy, args.price_per_1k,
                                progress=lambda m: print(m, file=sys.stderr))
    except (NeighbourSearchError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_rows([r for r in res.rows if r.status == "kept"], args.show))
    for w in res.warnings[:10]:
        print(f"warning: {w}")
    if len(res.warnings) > 10:
        print(f"... {len(res.warnings) - 10} more warnings")
    print(res.format_summary())
    return 0
