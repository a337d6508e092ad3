"""`python -m ltkit crawl`: search every auxiliary class by name and download what the engine returns.

    python -m ltkit crawl --config configs/builtin.yaml                       # the world's pool, offline
    python -m ltkit crawl --config configs/imagenet-lt.yaml crawl.engine=ddgs crawl.per_class=100
    python -m ltkit crawl --config configs/imagenet-lt.yaml crawl.engine=ddgs --shard 3/8   # one of 8 jobs
    python -m ltkit crawl --config configs/imagenet-lt.yaml --merge                          # join the shards
    python -m ltkit crawl --urls hits.csv --out crawl/mine                   # a URL list (aux_name,url[,caption][,target])

Searches run one class at a time in a background thread and feed the downloader as they finish; both
are resumable (search cache, manifest), so a killed crawl is simply started again. `crawl_neighbours` is
the stage in one call (a neighbour map, a crawl section, a folder), the one this command and notebook 02 make.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ltkit.artifacts.layout import CLASSES, MANIFEST, crawl_dir, neighbour_dir, neighbour_map_path
from ltkit.artifacts.manifest import (CrawlReport, ManifestWriter, crawl_lock, folder_counts, manifest_files,
                                      merge_manifests, parse_shard, read_manifest, record_classes, resume_state,
                                      shard_manifest, storage_errors, write_report)
from ltkit.artifacts.neighbour_map import NeighbourMap, load_neighbour_map
from ltkit.config import Config, CrawlConfig, load_config, no_stray_arguments, split_overrides
from ltkit.crawl.download import Downloader, DownloadSettings, Job
from ltkit.crawl.image_search import DDGSEngine, Engine, PoolEngine, SearchCache, SearchError, csv_rows
from ltkit.crawl.pool_server import PoolServer
from ltkit.crawl.store import clean_partial
from ltkit.data import datasets
from ltkit.data.classnames import same_class
from ltkit.errors import ArgumentParser, UserError
from ltkit.world import World

log = logging.getLogger(__name__)
SEARCH_CACHE = "search_cache.jsonl"


def search_jobs(aux_names: Sequence[str], aux_parent: Sequence[int], target_names: Sequence[str], engine: Engine,
                cache: SearchCache, aux_ids: Iterable[int], per_class: int, query: str = "{name}",
                failures: list[str] | None = None, give_up_after: int = 3) -> Iterator[list[Job]]:
    """One batch of jobs per auxiliary class, searched (or read from the cache) as the downloader asks for it.

    A failed search is recorded in `failures` (a re-run tries it again); `give_up_after` failures in
    a row stop the searching, since an engine that blocks us would answer every query with an error.
    """
    failures = [] if failures is None else failures
    in_a_row = 0
    for a in aux_ids:
        name, t = aux_names[a], int(aux_parent[a])
        q = query.replace("{name}", name)
        try:
            hits = cache.search(engine, q, per_class)
            in_a_row = 0
        except SearchError as e:
            failures.append(f"{name}: {e}")
            log.warning("%s", e)
            in_a_row += 1
            if in_a_row >= give_up_after:
                failures.append(f"stopped searching after {in_a_row} failures in a row")
                return
            continue
        batch = []
        for rank, h in enumerate(hits):
            row = {"aux_name": name, "target_id": t, "target_name": target_names[t] if t >= 0 else None,
                   "query": q, "engine": h.engine, "rank": rank, "caption": h.caption, "source_page": h.source_page}
            if h.truth is not None:
                row["truth"] = h.truth
            batch.append(Job(h.url, a, row))
        yield batch


def read_url_list(path: str | os.PathLike, target_names: Callable[[], Sequence[str]] | None = None
                  ) -> tuple[list[tuple[str, int | None]], list[list[Job]]]:
    """A CSV of `aux_name,url[,caption][,target]`: (name, target id) per auxiliary id in order of first
    appearance, and one batch per class. `target` names the target class an auxiliary class belongs to
    (what the filter's similarity window needs); `target_names()` gives the dataset's class names for it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"URL list not found: {path}")
    classes: dict[str, tuple[str, int | None]] = {}
    ids: dict[str, int] = {}
    batches: list[list[Job]] = []
    names = None
    for n, row in csv_rows(path, ("aux_name", "url")):
        name, url = (row["aux_name"] or "").strip(), (row["url"] or "").strip()
        if not name or not url:
            raise UserError(f"{path}: line {n}: field {'aux_name' if not name else 'url'}: empty")
        t, target = None, (row.get("target") or "").strip()
        if target:
            names = names if names is not None else list(target_names() if target_names else [])
            t = next((i for i, c in enumerate(names) if same_class(target, c)), None)
            if t is None:
                raise UserError(f"{path}: line {n}: field target: {target!r} is no class of the dataset")
        if classes.setdefault(name, (name, t))[1] != t:
            raise UserError(f"{path}: line {n}: field target: {name!r} belongs to {classes[name][1]} on an earlier line")
        a = ids.setdefault(name, len(ids))
        if a == len(batches):
            batches.append([])
        meta = {"aux_name": name, "target_id": t, "target_name": names[t] if t is not None else None, "query": None,
                "engine": "urls", "rank": len(batches[a]), "caption": row.get("caption") or "",
                "source_page": str(path)}
        batches[a].append(Job(url, a, meta))
    return list(classes.values()), batches


def run_crawl(crawl_dir: str | os.PathLike, batches: Iterable[list[Job]], aux_ids: Sequence[int],
              settings: DownloadSettings | None = None, shard: tuple[int, int] = (0, 1), retry_failed: bool = False,
              progress: bool = True, search_failures: list[str] | None = None,
              classes: Sequence[tuple[str, int | None]] | None = None, source: str = "this crawl") -> CrawlReport:
    """Download the batches into a crawl folder, resuming it; returns the report (also written to report.json).

    The folder is locked before anything in it is touched, and `classes` ((aux_name, target_id) per
    auxiliary id, from `source`) must agree with the list the folder was crawled for (`record_classes`).
    """
    d, (i, n) = Path(crawl_dir), shard
    manifest = d / (MANIFEST if n == 1 else shard_manifest(i, n))
    with crawl_lock(d, shard):
        with storage_errors(d / CLASSES):
            if classes is not None:
                record_classes(d, classes, source)
        with ManifestWriter(manifest) as writer:
            state = resume_state(d, retry_failed)
            if clean_partial(d, aux_ids):
                log.info("removed temporary files of an interrupted run")
            stats = Downloader(d, settings).run(batches, writer, state, progress)
        if n == 1 and len(manifest_files(d)) > 1:  # shards crawled earlier: one manifest again
            with storage_errors(d / MANIFEST):
                merge_manifests(d)
        status, reasons = folder_counts(read_manifest(d))
        report = CrawlReport(sum(status.values()), status, reasons, stats.fetched, stats.skipped, stats.kept,
                             stats.bytes, stats.seconds, stats.hosts, list(search_failures or []))
        name = "report.json" if n == 1 else f"report.shard-{i}-of-{n}.json"
        with storage_errors(d / name):
            write_report(d, report, name)
    return report


def crawl_classes(aux_names: Sequence[str], aux_parent: Sequence[int], target_names: Sequence[str], engine: Engine,
                  crawl_dir: str | os.PathLike, settings: DownloadSettings | None = None, per_class: int = 50,
                  query: str = "{name}", shard: tuple[int, int] = (0, 1), retry_failed: bool = False,
                  progress: bool = True) -> CrawlReport:
    """Search and download every auxiliary class of this shard (classes a with a % n == i)."""
    i, n = shard
    aux_ids = [a for a in range(len(aux_names)) if a % n == i]
    cache, failures = SearchCache(Path(crawl_dir) / SEARCH_CACHE), []
    jobs = search_jobs(aux_names, aux_parent, target_names, engine, cache, aux_ids, per_class, query, failures)
    report = run_crawl(crawl_dir, jobs, aux_ids, settings, shard, retry_failed, progress, failures,
                       list(zip(aux_names, (int(t) for t in aux_parent))), "the neighbour map")
    report.searches = {"new": cache.searched, "cached": cache.cached}
    return report


# ---------------------------------------------------------------------------------------------
# the config


def download_settings(c, **over) -> DownloadSettings:
    """DownloadSettings from the config's crawl section (fields of the same name)."""
    names = {f.name for f in fields(DownloadSettings)}
    values = {k: getattr(c, k) for k in names if hasattr(c, k)}
    return DownloadSettings(**{**values, **over})


def crawl_neighbours(nmap: NeighbourMap, target_names: Sequence[str], out_dir: str | os.PathLike,
                     settings: CrawlConfig | None = None, world: World | None = None, shard: tuple[int, int] = (0, 1),
                     retry_failed: bool = False, progress: bool | None = None) -> CrawlReport:
    """The crawl stage: search every auxiliary class of `nmap` and download the hits into `out_dir` (resumable).

    `settings` is a crawl section (default: its defaults). Its engine `ddgs` searches the web and downloads
    with the section's politeness limits; `pool` searches `settings.pool_dir`, else `world`'s open pool,
    served over HTTP on 127.0.0.1 for the length of the crawl.
    """
    c = check_crawl_config(settings or CrawlConfig())
    progress = c.progress if progress is None else progress
    engine, server = search_engine(c, world)
    with server or contextlib.nullcontext():
        # the pool server is ours and local: the web's politeness limits would only slow it down
        download = (download_settings(c) if server is None else
                    download_settings(c, allow_loopback=True, resolve=server.resolve, per_host=c.concurrency,
                                      host_interval=0.0, rate_limit=0.0))
        return crawl_classes(nmap.aux_names, nmap.aux_parent, target_names, engine, out_dir, download, c.per_class,
                             c.query, shard, retry_failed, progress)


def search_engine(c: CrawlConfig, world: World | None = None) -> tuple[Engine, PoolServer | None]:
    """The engine `c.engine` names, and for the pool the (started) server its hit URLs resolve to."""
    if c.engine == "ddgs":
        return DDGSEngine(c.ddgs_backend, c.region, c.safesearch, c.license, interval=c.search_interval,
                          retries=c.search_retries), None
    if c.pool_dir:
        return PoolEngine.from_folder(c.pool_dir), PoolServer(folder=c.pool_dir)
    if world is not None:
        return PoolEngine.from_world(world), PoolServer(world)
    raise UserError("crawl.engine=pool needs crawl.pool_dir=FOLDER (images with a captions.csv of "
                    "path,caption[,label]) unless the dataset is a built-in world")


def crawl_config(cfg: Config, shard: tuple[int, int] = (0, 1), retry_failed: bool = False,
                 progress: bool | None = None) -> tuple[CrawlReport, Path]:
    """The crawl of a config: its neighbour map and crawl section, into `crawl_dir(cfg)` (`crawl_neighbours`)."""
    check_crawl_config(cfg.crawl)  # before the dataset is loaded
    data, world = datasets.build_target_data(cfg)
    names = list(data.class_names)
    nmap = load_neighbour_map(neighbour_map_path(cfg), len(names))
    out = crawl_dir(cfg)
    return crawl_neighbours(nmap, names, out, cfg.crawl, world, shard, retry_failed, progress), out


def check_crawl_config(c):
    """The crawl section, or a UserError naming the field that cannot work."""
    if c.engine not in ("pool", "ddgs"):
        raise UserError(f"crawl.engine={c.engine!r}: expected pool or ddgs")
    if c.safesearch not in ("on", "moderate", "off"):
        raise UserError(f"crawl.safesearch={c.safesearch!r}: expected on, moderate or off")
    if c.per_class < 1:
        raise UserError(f"crawl.per_class={c.per_class}: must be >= 1")
    if "{name}" not in c.query:
        raise UserError(f"crawl.query={c.query!r}: must contain {{name}}, the auxiliary class name")
    download_settings(c).check()  # the downloader's own checks (ValueError naming the field)
    return c


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m ltkit crawl", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    p.add_argument("--config", help="YAML preset (configs/*.yaml); default: the built-in world")
    p.add_argument("--out", help="crawl folder (sets crawl.out_dir)")
    p.add_argument("--urls", help="crawl a CSV of aux_name,url[,caption][,target] instead of searching (needs --out; "
                   "the filter needs target, the target class of each auxiliary class)")
    p.add_argument("--shard", default="0/1", help="i/n: crawl the auxiliary classes a with a %% n == i")
    p.add_argument("--retry-failed", action="store_true", help="fetch URLs that failed before again")
    p.add_argument("--merge", action="store_true", help="join the shard manifests into manifest.jsonl and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="key=value anywhere, e.g. crawl.engine=ddgs crawl.per_class=100 k=3")
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit crawl [--config PRESET] [key=value | crawl.key=value ...]`."""
    options, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(options)
    no_stray_arguments(args.overrides)
    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        raise UserError(f"--{e}") from None
    if args.merge:
        out = Path(args.out) if args.out else crawl_dir(load_config(args.config, overrides))
        if not out.is_dir():
            raise UserError(f"--merge: no crawl folder {out}")
        res = merge_manifests(out)
        print(f"merged {res['shards_merged']} shard manifests into {out / MANIFEST}: {res['rows']} rows"
              + (f"; missing shards {res['missing_shards']}" if res["missing_shards"] else ""))
        return 0
    if args.urls:
        if not args.out:
            raise UserError("--urls needs --out FOLDER")
        cfg = load_config(args.config, overrides)
        c = check_crawl_config(cfg.crawl)
        classes, batches = read_url_list(args.urls, lambda: datasets.build_target_data(cfg)[0].class_names)
        out = Path(args.out)
        aux_ids = [a for a in range(len(classes)) if a % shard[1] == shard[0]]
        report = run_crawl(out, [batches[a] for a in aux_ids], aux_ids, download_settings(c), shard,
                           args.retry_failed, not args.no_progress and c.progress, classes=classes,
                           source=f"the URL list {args.urls}")
    else:
        cfg = load_config(args.config, overrides + ([f"crawl.out_dir={args.out}"] if args.out else []))
        report, out = crawl_config(cfg, shard, args.retry_failed, False if args.no_progress else None)
    print(report.format())
    where = out / (MANIFEST if shard[1] == 1 else shard_manifest(*shard))
    print(f"manifest: {where}")
    if shard[1] > 1:
        again = " ".join(["python -m ltkit crawl", *(["--config", args.config] if args.config else []),
                          *(["--out", args.out] if args.out else []), *overrides, "--merge"])
        print(f"when every shard is done: {again}")
    return 0
