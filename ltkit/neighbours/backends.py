"""Neighbour backends: one small interface (`prompt`, `propose`) over an OpenAI-compatible chat endpoint
(the paper's LLM; any local vLLM / Ollama / llama.cpp server too), a `Taxonomy` (offline: siblings,
then cousins) and a file the user wrote.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ltkit.neighbours.parse import json_names, parse_answer
from ltkit.neighbours.prompt import PAPER_TEMPLATE, build_prompt
from ltkit.errors import UserError
from ltkit.data.taxonomy import Taxonomy
from ltkit.words import normalise

log = logging.getLogger(__name__)


class NeighbourSearchError(UserError, RuntimeError):
    """A backend could not produce an answer (after retries); the message says why and what to do."""


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
    mode: str = "text"  # "json" when the answer came back as structured output
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


class _StructuredUnsupported(Exception):
    """The server refused `response_format` (HTTP 400 / 422): ask again with the prompt alone."""


def json_schema_format() -> dict:
    """`response_format` asking for {"names": [str, ...]} (OpenAI structured outputs; vLLM, llama.cpp, Ollama)."""
    schema = {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}}},
              "required": ["names"], "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": "neighbour_names", "strict": True, "schema": schema}}


def _scrub(text: str, secret: str | None) -> str:
    """Remove a secret from a message before it is raised, logged or stored."""
    return text.replace(secret, "***") if secret else text


class OpenAIBackend:
    """OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp) with retries and backoff."""

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 template: str = PAPER_TEMPLATE, temperature: float | None = 0.0, seed: int | None = 0,
                 max_tokens: int | None = 256, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 30.0, structured: bool = False) -> None:
        """`structured`: ask for a JSON list of names through `response_format` (the prompt stays the
        paper's); a server that refuses it gets the prompt alone from then on, with a warning."""
        import openai

        build_prompt(template, "x", 1)  # fail early on a template without {CLS}
        self.model, self.template = model, template
        self.params = {k: v for k, v in (("temperature", temperature), ("seed", seed), ("max_tokens", max_tokens))
                       if v is not None}
        if structured:  # part of the cache key: a JSON-mode answer is another answer
            self.params["response_format"] = "json_schema"
        self.structured, self._structured_ok = structured, True
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

    def _create(self, class_name: str, prompt: str, response_format: dict | None = None):
        """One chat completion, retried on 429, 408, 5xx, timeouts and connection errors."""
        import openai

        params = {k: v for k, v in self.params.items() if k != "response_format"}
        if response_format is not None:
            params["response_format"] = response_format
        for attempt in range(self.retries + 1):
            try:
                return self._client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], timeout=self.timeout,
                    **params)
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                err: Exception = e
            except openai.APIStatusError as e:
                if response_format is not None and e.status_code in (400, 422):
                    raise _StructuredUnsupported(_scrub(f"HTTP {e.status_code}: {e.message}",
                                                        self._client.api_key)) from e
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
        notes: list[str] = []
        fmt = json_schema_format() if self.structured and self._structured_ok else None
        if self.structured and fmt is None:
            notes.append("the server refused response_format earlier: asked with the prompt alone")
        try:
            resp = self._create(class_name, prompt, fmt)
        except _StructuredUnsupported as e:
            if self._structured_ok:
                log.warning("%s: the server refused response_format json_schema (%s); asking with the prompt alone",
                            self.model, e)
            self._structured_ok, fmt = False, None
            notes.append(f"the server refused response_format ({e}): asked with the prompt alone")
            resp = self._create(class_name, prompt)
        try:
            raw = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):  # the client hands back non-JSON bodies as str
            raise self._fail(class_name, f"not a chat completion: {str(resp)[:200]!r}") from None
        u = getattr(resp, "usage", None)
        usage = {f: int(getattr(u, f, 0) or 0) for f in ("prompt_tokens", "completion_tokens", "total_tokens")} \
            if u is not None else None
        parsed = parse_answer(raw, class_name=class_name, template=self.template)
        names = parsed.names
        why = notes + (parsed.notes or ([] if raw.strip() else ["empty answer"]))
        # a refusal, prose or a copied example never becomes a name: fewer names, and the reason
        warn = "" if len(names) >= k else f"{len(names)} of {k} usable names" + (f": {'; '.join(why)}" if why else "")
        mode = "json" if fmt is not None and json_names(raw) is not None else "text"
        return Answer(class_name, k, names, raw, self.name, self.model, prompt, self.template, usage,
                      time.monotonic() - t0, warn, mode)


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
            raise UserError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}: expected an object mapping class name -> list of neighbour names")
        for cls, names in obj.items():
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list):
                raise UserError(f"{path}: field {cls!r}: expected a list of names, got {type(names).__name__}")
            for i, n in enumerate(names):
                if not isinstance(n, str) or not n.strip():
                    raise UserError(f"{path}: field {cls!r}[{i}]: expected a non-empty string, got {n!r}")
            out.setdefault(normalise(cls), []).extend(n.strip() for n in names)
        return out
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if lineno == 1 and [c.strip().lower() for c in row] in (["class", "neighbour"], ["class", "neighbor"]):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"{path}: line {lineno}: expected 'class,neighbour' with both fields non-empty, got {row}")
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

