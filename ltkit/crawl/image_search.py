"""Image search by class name (paper Sec. 3.1: "the remaining class names are fed to an image-searching
engine"), behind one small interface: `engine.search(query, max_results) -> list[Hit]`.

Engines: `DDGSEngine` (the web, through the `ddgs` package) and `PoolEngine` (a local captioned pool:
the built-in world's, or any folder of images with a captions CSV). Every answer goes through one
on-disk `SearchCache`, so a re-run searches nothing twice and a crawl can be repeated exactly.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence
from urllib.parse import quote

from ltkit.artifacts.manifest import storage_errors
from ltkit.errors import UserError
from ltkit.io import append_jsonl, read_jsonl, read_text
from ltkit.words import caption_match, name_key

log = logging.getLogger(__name__)

# Host name of the local pool in hit URLs. `.invalid` never resolves (RFC 2606), so the URL is stable
# across runs (resume keys hash it) and the downloader maps it to the pool server's port (`resolve`).
POOL_HOST = "ltkit-pool.invalid"
POOL_URL = f"http://{POOL_HOST}"


class SearchError(RuntimeError):
    """A search failed after its retries; the message says what to do."""


@dataclass(frozen=True)
class Hit:
    """One search result: what to download and what the engine said about it."""

    url: str
    caption: str = ""
    source_page: str = ""
    width: int | None = None
    height: int | None = None
    engine: str = ""
    truth: str | None = None  # a pool that records it (the world's; a folder CSV's truth column): the item's
                              # noise kind, for measuring filters


class Engine(Protocol):
    """What the crawl needs from a search engine."""

    name: str

    def params(self) -> dict: ...

    def search(self, query: str, max_results: int) -> list[Hit]: ...


def _int_or_none(v: object) -> int | None:
    """Bing gives sizes as strings, DDG as ints, some results none at all."""
    try:
        return int(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# ddgs


class DDGSEngine:
    """Web image search through `ddgs.DDGS().images` with pacing, retries and backoff.

    `backend` is pinned ("duckduckgo") because "auto" picks DDG or Bing at random and Bing ignores
    region, safesearch and the licence filter: the same query would give different hits run to run.
    ddgs 9.x reports rate limits as a plain `DDGSException`, so every one is retried with backoff.
    """

    name = "ddgs"

    def __init__(self, backend: str = "duckduckgo", region: str = "us-en", safesearch: str = "moderate",
                 license_image: str | None = None, timeout: float = 10.0, retries: int = 4, backoff: float = 5.0,
                 interval: float = 1.5, proxy: str | None = None, ddgs_factory: Callable | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if ddgs_factory is None:
            from ddgs import DDGS

            ddgs_factory = DDGS
        self.backend, self.region, self.safesearch, self.license_image = backend, region, safesearch, license_image
        self.timeout, self.retries, self.backoff, self.interval, self.proxy = timeout, retries, backoff, interval, proxy
        self._factory, self._sleep, self._last = ddgs_factory, sleep, -1e9

    def params(self) -> dict:
        """What changes the answer (the cache key includes it)."""
        return {"backend": self.backend, "region": self.region, "safesearch": self.safesearch,
                "license_image": self.license_image}

    def _pace(self) -> None:
        """At least `interval` seconds between requests: bursts are what gets an IP blocked."""
        wait = self._last + self.interval - time.monotonic()
        if wait > 0:
            self._sleep(wait)
        self._last = time.monotonic()

    def search(self, query: str, max_results: int) -> list[Hit]:
        """Up to `max_results` hits; a `SearchError` with advice after `retries` failed tries."""
        from ddgs.exceptions import DDGSException

        kwargs = {"region": self.region, "safesearch": self.safesearch, "max_results": max_results,
                  "backend": self.backend}
        if self.license_image:
            kwargs["license_image"] = self.license_image
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            self._pace()
            try:
                with self._factory(proxy=self.proxy, timeout=self.timeout) as d:
                    rows = d.images(query, **kwargs)
                return [self._hit(r) for r in rows or [] if r.get("image")][:max_results]
            except DDGSException as e:
                if "no results found" in str(e).lower():  # ddgs raises instead of returning []
                    return []
                last = e
                if attempt < self.retries:
                    delay = self.backoff * 2 ** attempt * random.uniform(0.75, 1.25)
                    log.warning("ddgs %r: %s: %s; retry %d/%d in %.0fs", query, type(e).__name__, e, attempt + 1,
                                self.retries, delay)
                    self._sleep(delay)
        raise SearchError(
            f"ddgs image search for {query!r} failed {self.retries + 1} times ({type(last).__name__}: {last}). "
            "DuckDuckGo limits bursts and ddgs reports that as a plain DDGSException: wait a few minutes and "
            "re-run (finished queries are cached), raise the search interval (crawl.search_interval), or set "
            "DDGS_PROXY to route through a proxy.")

    def _hit(self, r: dict) -> Hit:
        return Hit(url=str(r["image"]), caption=str(r.get("title") or ""), source_page=str(r.get("url") or ""),
                   width=_int_or_none(r.get("width")), height=_int_or_none(r.get("height")),
                   engine=f"ddgs:{self.backend}")


# ---------------------------------------------------------------------------------------------
# local captioned pool


@dataclass(frozen=True)
class PoolItem:
    """One image of a local pool: its URL path on the pool server, caption, and the label it is filed under."""

    url_path: str
    caption: str
    label: str = ""
    truth: str | None = None


def caption_mentions(caption: str, name: str) -> bool:
    """True if the caption contains the class name as a phrase of whole words (the caption filter's rule)."""
    return caption_match(caption, name, "phrase")


class PoolEngine:
    """Search a local captioned pool by class name.

    Items filed under a label (the world's pool: the class a search for which returns the item;
    a folder CSV with a `label` column) are matched by `name_key(label) == name_key(query)`, so a
    search returns the item's noisy caption as the web would. Without labels the caption itself
    must mention the name (`caption_mentions`).
    """

    name = "pool"

    def __init__(self, items: Sequence[PoolItem], base_url: str = POOL_URL, source: str = "pool") -> None:
        self.items, self.base_url, self.source = list(items), base_url.rstrip("/"), source
        self._by_label: dict[str, list[int]] = {}
        for j, it in enumerate(self.items):
            if it.label:
                self._by_label.setdefault(name_key(it.label), []).append(j)

    def params(self) -> dict:
        return {"source": self.source, "items": len(self.items)}

    def search(self, query: str, max_results: int) -> list[Hit]:
        """Items filed under the query's name, else items whose caption mentions it; in pool order."""
        if self._by_label:
            found = self._by_label.get(name_key(query), [])
        else:
            found = [j for j, it in enumerate(self.items) if caption_mentions(it.caption, query)]
        return [Hit(url=self.base_url + self.items[j].url_path, caption=self.items[j].caption,
                    source_page=f"{self.source}#{j}", engine="pool", truth=self.items[j].truth)
                for j in found[:max_results]]

    @classmethod
    def from_world(cls, world, base_url: str = POOL_URL) -> "PoolEngine":
        """The built-in world's pool: item j is served at /pool/<j>.png."""
        names = world.all_names
        items = [PoolItem(f"/pool/{j}.png", world.pool_captions[j], names[int(q)], world.pool_noise[j])
                 for j, q in enumerate(world.pool_query)]
        return cls(items, base_url, source=f"world:{world.config.key()}")

    @classmethod
    def from_folder(cls, root: str | os.PathLike, captions_csv: str | os.PathLike | None = None,
                    base_url: str = POOL_URL) -> "PoolEngine":
        """A folder of images with a CSV of `path,caption[,label][,truth]` (paths relative to the folder).

        `truth`, when present, is each item's noise kind (`ltkit.curate.quality.KINDS`): the crawl's
        manifest carries it, so the filters' precision and recall can be measured on that pool.
        """
        root = Path(root)
        csv_path = Path(captions_csv) if captions_csv else root / "captions.csv"
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path}: no captions CSV (columns path,caption and optionally label)")
        items = []
        for n, row in csv_rows(csv_path, ("path", "caption")):
            rel = (row["path"] or "").strip()
            if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise UserError(f"{csv_path}: line {n}: field path: {rel!r} must be relative, inside the folder")
            items.append(PoolItem("/files/" + quote(rel), row["caption"] or "", (row.get("label") or "").strip(),
                                  (row.get("truth") or "").strip() or None))
        return cls(items, base_url, source=f"folder:{root.resolve()}")


def csv_rows(path: str | os.PathLike, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a CSV with a header that has the `required` columns (else a UserError)."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))  # UTF-8 with or without a BOM
    missing = set(required) - set(reader.fieldnames or [])
    if missing:
        raise UserError(f"{path}: line 1: missing column(s) {', '.join(sorted(missing))} "
                        f"(need {','.join(required)})")
    yield from enumerate(reader, 2)


# ---------------------------------------------------------------------------------------------
# the cache


def search_key(engine: str, params: dict, query: str, max_results: int) -> str:
    """Cache key of one search."""
    blob = json.dumps([engine, params, query, max_results], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class SearchCache:
    """Every answer of every engine, one JSONL row per search: a re-run searches nothing twice."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._rows = {r["key"]: r for r in read_jsonl(self.path) if "key" in r}
        self.searched = self.cached = 0

    def search(self, engine: Engine, query: str, max_results: int) -> list[Hit]:
        """The cached hits, or the engine's (then cached)."""
        key = search_key(engine.name, engine.params(), query, max_results)
        if key in self._rows:
            self.cached += 1
            return [Hit(**h) for h in self._rows[key]["hits"]]
        hits = engine.search(query, max_results)
        row = {"key": key, "engine": engine.name, "params": engine.params(), "query": query,
               "max_results": max_results, "hits": [asdict(h) for h in hits], "time": time.time()}
        with storage_errors(self.path):
            append_jsonl(self.path, row)
        self._rows[key] = row
        self.searched += 1
        return hits
