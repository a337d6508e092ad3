"""The crawl manifest: one JSON row per search hit, appended as each URL finishes, so a crawl killed at
any moment resumes where it stopped and every URL ends with a status and a reason.

Layout of a crawl folder (shared with the filter stage, schema in docs/crawl.md):
    manifest.jsonl                      rows of unsharded runs (and of `merge`)
    manifest.shard-<i>-of-<n>.jsonl     rows of `--shard i/n` runs, joined by `merge_manifests`
    images/<aux_id:05d>/<sha256>.jpg    every kept image, named by the hash of its stored bytes
A key can appear in several rows (a retry, a shard, a merge): the row that finished last wins.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ltkit.artifacts.layout import CLASSES, LOCK, MANIFEST
from ltkit.errors import UserError
from ltkit.io import atomic_write_text, last_line_start, read_json, read_jsonl, write_json

# every row has these; `truth` only on hits of the built-in world's pool (for measuring filters)
FIELDS = ("key", "aux_id", "aux_name", "target_id", "target_name", "query", "engine", "rank", "url", "caption",
          "source_page", "status", "reason", "path", "sha256", "width", "height", "bytes", "host",
          "http_status", "attempts", "seconds", "finished")
STATUSES = ("ok", "failed", "duplicate", "refused")


class ManifestBusy(UserError, RuntimeError):
    """Another process holds a manifest's lock: a crawl (or a merge) is still writing it."""


class StorageError(UserError):
    """The crawl folder takes no more (full disk, read-only, quota): the crawl stops; what finished is kept."""


@contextmanager
def storage_errors(what: str | os.PathLike) -> Iterator[None]:
    """An OSError while writing `what` becomes one StorageError that says how to go on."""
    try:
        yield
    except OSError as e:
        raise StorageError(f"{what}: {e.strerror or e}; the crawl stopped. Make room (or make the folder writable) "
                           "and run the same command again: finished URLs are kept, the rest are fetched") from None


def hit_key(aux_id: int, url: str) -> str:
    """Stable id of a hit: sha1 of the auxiliary class and the URL (the same URL may serve two classes)."""
    return hashlib.sha1(f"{aux_id}\t{url}".encode("utf-8")).hexdigest()


def image_path(aux_id: int, sha256: str) -> str:
    """Where a kept image lives, relative to the crawl folder: nothing from the URL reaches it."""
    return f"images/{aux_id:05d}/{sha256}.jpg"


def inside(root: str | os.PathLike, rel: object) -> Path | None:
    """root/rel if `rel` is a relative path that stays inside `root` (no '..', not absolute, no link out), else None."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    root = Path(root)
    path = root / rel
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return None  # a symlink that leads out
    return path


def shard_manifest(i: int, n: int) -> str:
    """File name of shard i of n's manifest."""
    return f"manifest.shard-{i}-of-{n}.jsonl"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise UserError(f"shard: expected i/n such as 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise UserError(f"shard: {text!r} needs 0 <= i < n")
    return i, n


def manifest_files(crawl_dir: str | os.PathLike) -> list[Path]:
    """manifest.jsonl and every shard manifest in a crawl folder."""
    d = Path(crawl_dir)
    return [p for p in [d / MANIFEST] + sorted(d.glob("manifest.shard-*-of-*.jsonl")) if p.exists()]


def read_manifest(crawl_dir: str | os.PathLike) -> list[dict]:
    """The final row per key over all manifests of a crawl folder, in first-seen order (pandas: `DataFrame(rows)`)."""
    final: dict[str, dict] = {}
    for path in manifest_files(crawl_dir):
        for n, row in enumerate(read_jsonl(path), 1):
            if not isinstance(row, dict) or "key" not in row:
                raise UserError(f"{path}: row {n}: not a manifest row (no 'key')")
            old = final.get(row["key"])
            if old is None or row.get("finished", 0) >= old.get("finished", 0):
                final[row["key"]] = row
    return list(final.values())


class ManifestWriter:
    """Append-only JSONL writer that holds an exclusive lock on its file while a crawl runs.

    Rows are flushed one by one (a kill -9 loses at most the row being written; `read_jsonl` skips a
    torn last line) and fsynced every `sync_every` seconds and at close (power loss, not kills).
    """

    def __init__(self, path: str | os.PathLike, sync_every: float = 2.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a+b")
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise ManifestBusy(f"{self.path}: another crawl is writing this manifest (one process per shard)") from None
        self._cut_torn_tail()
        self.sync_every, self._synced = sync_every, time.monotonic()

    def _cut_torn_tail(self) -> None:
        """A row cut off by a kill would glue onto the next one: drop it (its URL is simply fetched again)."""
        size = self._f.seek(0, os.SEEK_END)
        if not size:
            return
        self._f.seek(max(0, size - 1))
        if self._f.read(1) == b"\n":
            return
        self._f.truncate(last_line_start(self._f, size))
        self._f.seek(0, os.SEEK_END)

    def write(self, row: dict) -> None:
        """Append one row and flush it to the OS."""
        # ASCII (non-ASCII captions as \u escapes): a row cut by a kill can then never end inside a UTF-8
        # character, which would make the whole file undecodable instead of leaving a torn last line
        with storage_errors(self.path):
            self._f.write((json.dumps(row) + "\n").encode("ascii"))
            self._f.flush()
            if time.monotonic() - self._synced > self.sync_every:
                os.fsync(self._f.fileno())
                self._synced = time.monotonic()

    def close(self) -> None:
        """fsync, unlock and close."""
        if not self._f.closed:
            try:
                with storage_errors(self.path):
                    self._f.flush()
                    os.fsync(self._f.fileno())
            finally:
                self._f.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ResumeState:
    """What earlier runs finished: keys not to fetch again and, per class, the image hashes already kept."""

    done: set[str] = field(default_factory=set)
    kept: dict[int, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))  # aux_id -> sha -> key


def resume_state(crawl_dir: str | os.PathLike, retry_failed: bool = False) -> ResumeState:
    """Keys that are finished: ok with the file still on disk, duplicate, refused, and failed unless retried."""
    state, root, lost = ResumeState(), Path(crawl_dir), set()
    rows = read_manifest(crawl_dir)
    for row in rows:
        status = row.get("status")
        if status == "ok":
            path = inside(root, row.get("path"))
            if path is None or not path.is_file():
                lost.add(row["key"])  # deleted, or a path that leaves the folder: fetch it again
                continue
            state.kept[int(row["aux_id"])].setdefault(row["sha256"], row["key"])
        elif status == "failed" and retry_failed:
            continue
        elif status not in STATUSES:
            continue
        state.done.add(row["key"])
    # a duplicate of a lost image is fetched again too: if the lost one's URL now fails, it keeps the image
    state.done -= {r["key"] for r in rows if r.get("status") == "duplicate"
                   and str(r.get("reason", "")).removeprefix("same_image_as:") in lost}
    return state


@contextmanager
def crawl_lock(crawl_dir: str | os.PathLike, shard: tuple[int, int] = (0, 1)) -> Iterator[None]:
    """Hold the crawl folder before anything in it is touched (temp files cleaned, ids recorded).

    An unsharded crawl holds the folder alone; shards of one split share it (each cleans only its
    own classes) and each holds its own shard lock, so a second copy of a shard is refused too.
    """
    d, (i, n) = Path(crawl_dir), shard
    with storage_errors(d):
        d.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for name, mode in [(LOCK, fcntl.LOCK_EX if n == 1 else fcntl.LOCK_SH)] + (
                [(f"{LOCK}.shard-{i}-of-{n}", fcntl.LOCK_EX)] if n > 1 else []):
            with storage_errors(d / name):  # a read-only folder: one line, not a traceback
                f = stack.enter_context(open(d / name, "a+b"))
            try:
                fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ManifestBusy(f"{d}: another crawl is running in this folder (one process per shard); "
                                   "nothing was touched") from None
        yield


def record_classes(crawl_dir: str | os.PathLike, classes: Sequence[tuple[str, int | None]], source: str) -> None:
    """Tie the folder's auxiliary ids to the class list it is crawled for: (aux_name, target_id) per id.

    Ids are positions in a neighbour map or a URL list, so crawling into the same folder for another
    list (say k=3, then k=2) would file two classes under one id. The first crawl records the list in
    classes.json; a later one must agree on every id both have (a longer list may add classes). A
    folder crawled before the record existed is checked against its manifest's rows.
    """
    d = Path(crawl_dir)
    want = [[str(name), None if t is None else int(t)] for name, t in classes]
    if (d / CLASSES).is_file():
        have = read_json(d / CLASSES, "class list")["classes"]
    else:
        by_id = {int(r["aux_id"]): [r.get("aux_name"), r.get("target_id")] for r in read_manifest(d)}
        have = [by_id.get(a) for a in range(max(by_id, default=-1) + 1)]
    for a, (old, new) in enumerate(zip(have, want)):
        if old is not None and list(old) != new:
            raise UserError(f"{d}: auxiliary id {a} was crawled as {old[0]!r} (target {old[1]}), but {source} makes it "
                            f"{new[0]!r} (target {new[1]}): the folder belongs to another class list; crawl into "
                            "another folder (--out / crawl.out_dir)")
    merged = want + have[len(want):]  # null: an id no crawl has named yet
    if merged != have:
        write_json(d / CLASSES, {"source": source, "classes": merged})


def merge_manifests(crawl_dir: str | os.PathLike) -> dict:
    """Join manifest.jsonl and every shard manifest into manifest.jsonl (final row per key), then remove the shards."""
    d = Path(crawl_dir)
    if not manifest_files(d):  # `--merge --out typo` must not leave an empty crawl behind
        raise UserError(f"{d}: no crawl manifest to merge")
    with ExitStack() as locks:
        for p in manifest_files(d):  # a shard still crawling raises ManifestBusy: its rows would go to a removed file
            locks.enter_context(ManifestWriter(p))
        shards = [p for p in manifest_files(d) if p.name != MANIFEST]
        seen_n = {p.name.split("-of-")[1].split(".")[0] for p in shards}
        if len(seen_n) > 1:
            raise UserError(f"{d}: shard manifests of different splits ({', '.join(sorted(seen_n))}); merge one split at a time")
        missing = []
        if shards:
            n = int(next(iter(seen_n)))
            missing = [i for i in range(n) if not (d / shard_manifest(i, n)).exists()]
        rows = read_manifest(d)
        atomic_write_text(d / MANIFEST, "".join(json.dumps(row) + "\n" for row in rows))
        for p in shards:
            p.unlink()
    return {"rows": len(rows), "shards_merged": len(shards), "missing_shards": missing}


# ---------------------------------------------------------------------------------------------
# the report


@dataclass
class CrawlReport:
    """What a crawl did (this run) and where the crawl folder stands (all runs)."""

    total: int                      # rows in the crawl folder after this run
    status: dict[str, int]          # rows per status, all runs
    reasons: dict[str, int]         # failed / refused rows per reason, all runs
    fetched: int                    # URLs fetched by this run
    skipped: int                    # URLs already finished by earlier runs
    kept: int                       # images kept by this run
    bytes: int                      # body bytes downloaded by this run
    seconds: float                  # wall time of this run's downloads
    hosts: dict[str, dict[str, int]]  # this run: host -> {"ok": .., "failed": .., ...}
    search_failures: list[str] = field(default_factory=list)
    searches: dict[str, int] = field(default_factory=dict)  # {"new": .., "cached": ..}

    @property
    def images_per_s(self) -> float:
        return self.kept / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "images_per_s": round(self.images_per_s, 2)}

    def format(self, top_hosts: int = 5) -> str:
        """A few lines for the terminal and the notebook."""
        st = ", ".join(f"{k} {v}" for k, v in sorted(self.status.items())) or "none"
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1])) or "none"
        busiest = sorted(self.hosts.items(), key=lambda kv: -sum(kv[1].values()))[:top_hosts]
        hosts = ", ".join(f"{h} {sum(c.values())} ({c.get('ok', 0)} ok)" for h, c in busiest) or "none"
        lines = [f"this run: fetched {self.fetched} URLs ({self.skipped} already done), kept {self.kept} images, "
                 f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f}s ({self.images_per_s:.1f} images/s)",
                 f"crawl folder: {self.total} hits; {st}",
                 f"failed or refused, by reason: {why}",
                 f"hosts this run ({len(self.hosts)}): {hosts}"]
        if self.searches:
            lines.append(f"searches: {self.searches.get('new', 0)} new, {self.searches.get('cached', 0)} from the cache")
        if self.search_failures:
            lines.append(f"searches that failed ({len(self.search_failures)}; re-run to retry): "
                         + "; ".join(self.search_failures[:3]))
        return "\n".join(lines)


def folder_counts(rows: Iterable[dict]) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per status and failed/refused rows per reason."""
    rows = list(rows)
    status = Counter(r.get("status", "?") for r in rows)
    reasons = Counter(r.get("reason") or "?" for r in rows if r.get("status") in ("failed", "refused"))
    return dict(status), dict(reasons)


def write_report(crawl_dir: str | os.PathLike, report: CrawlReport, name: str = "report.json") -> None:
    """The report as JSON beside the manifest (atomic)."""
    write_json(Path(crawl_dir) / name, report.to_dict())
