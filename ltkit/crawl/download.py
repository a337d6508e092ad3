"""The downloader: asyncio + aiohttp, polite per host, safe by default, and every URL accounted for.

One event loop holds the connections; a small thread pool decodes (Pillow releases the GIL) and
writes. Per host: at most `per_host` connections and `host_interval` seconds between request starts,
pushed back by `Retry-After`; overall: `concurrency` requests in flight and an optional `rate_limit`.
Jobs wait in per-host queues served by `per_host` workers each, so one slow host never blocks the
others (img2dataset#62, #375: no per-domain limiter; #74, #164: crawls that hang near the end).

Safety: only http(s); no private, loopback, link-local, multicast or reserved address, checked on
every redirect hop and on every DNS answer (the resolver itself filters, so a name cannot resolve to
a checked address and connect to another); bodies streamed under `max_bytes` whether or not a
Content-Length is sent; images decoded under a pixel limit before any pixel is allocated, converted
to RGB and re-encoded, so the stored file is a plain JPEG named by its hash, never by the URL.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

import aiohttp
from yarl import URL

from ltkit.errors import UserError
import ltkit
from ltkit.artifacts.manifest import ManifestWriter, ResumeState, StorageError, hit_key
from ltkit.config import CrawlConfig, check_value
from ltkit.crawl.policy import (AddressRefused, Failure, GuardedResolver, check_url, retry_after, robots_forbid,
                                split_hostport)
from ltkit.crawl.store import Stored, store_image

log = logging.getLogger(__name__)

USER_AGENT = f"ltkit/{ltkit.__version__} (research image crawler; honours X-Robots-Tag noai)"
REDIRECTS = (301, 302, 303, 307, 308)


# allowed values (`ltkit.config.in_interval`): the crawl section's, and those of the settings only code sets;
# NaN, inf or a rate of 1e-6 would switch a limit off or hang the crawl
_WITHIN = {**{f.name: f.metadata["within"] for f in fields(CrawlConfig) if "within" in f.metadata},
           "max_retry_after": "[0, 86400]", "jpeg_quality": "[1, 100]", "threads": "[1, 256]"}


@dataclass
class DownloadSettings:
    """Politeness, limits and safety of the downloader (the `crawl` section of the config sets them)."""

    concurrency: int = 64           # requests in flight overall
    per_host: int = 2               # connections per host at most
    host_interval: float = 0.2      # seconds between request starts to one host
    rate_limit: float = 0.0         # requests per second overall; 0 = no limit
    connect_timeout: float = 10.0
    read_timeout: float = 20.0      # longest silence while reading
    total_timeout: float = 60.0     # longest request (ends slow drips that never stall)
    retries: int = 2                # on 429, 5xx and connection errors
    backoff: float = 1.0            # seconds, doubled each retry (jittered) when no Retry-After is sent
    max_retry_after: float = 120.0  # a longer Retry-After gives up on the URL instead of waiting
    retry_timeouts: bool = False    # a timed-out URL usually times out again
    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000    # decompression-bomb limit (width x height)
    max_redirects: int = 5
    resize: int | None = None       # longest side, down only; None keeps the size
    jpeg_quality: int = 95
    allow_loopback: bool = False    # 127.0.0.0/8 and ::1: tests and the local pool server only
    resolve: dict[str, str] = field(default_factory=dict)  # host -> "ip:port", like curl --connect-to
    user_agent: str = USER_AGENT
    robots_directives: tuple[str, ...] = ("noai", "noimageai")  # X-Robots-Tag values that forbid use
    threads: int = 4                # decode and write threads

    def check(self) -> "DownloadSettings":
        """Raise a ConfigError naming the field of an impossible setting (types, finite values, ranges)."""
        for f in fields(self):
            if f.name in _WITHIN or f.type == "bool":
                setattr(self, f.name, check_value(f"crawl.{f.name}", getattr(self, f.name), f.type, _WITHIN.get(f.name)))
        for host, target in self.resolve.items():
            if not split_hostport(target):
                raise UserError(f"crawl.resolve: {host!r} -> {target!r}: expected ip:port")
        return self


@dataclass
class Job:
    """One URL to fetch for one auxiliary class; `row` carries the search fields into the manifest."""

    url: str
    aux_id: int
    row: dict = field(default_factory=dict)

    @cached_property
    def key(self) -> str:
        """The hit's manifest key, derived so that it can never disagree with the class and URL."""
        return hit_key(self.aux_id, self.url)


class _Retry(Exception):
    """A transient failure: 429, 5xx or a dropped connection."""

    def __init__(self, reason: str, retry_after: float | None = None, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after, self.http_status = reason, retry_after, http_status
        self.host: str | None = None  # the host that answered (set by `_fetch`): Retry-After applies to it


# ---------------------------------------------------------------------------------------------
# politeness


class _Pacer:
    """Request starts at least `interval` apart; `push_back` honours a server's Retry-After.

    `wait` sleeps and claims (the global rate); a host uses `ready`, then `claim` once it holds a
    global slot, so that a host told to wait does so without holding a slot other hosts could use.
    """

    def __init__(self, interval: float) -> None:
        self.interval, self.next, self.lock = interval, 0.0, asyncio.Lock()

    async def wait(self) -> None:
        """Sleep until a start is due and claim it (callers queue on the lock)."""
        async with self.lock:
            delay = self.next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.next = max(self.next, time.monotonic()) + self.interval

    async def ready(self) -> None:
        """Sleep until a start is due, claiming nothing (so a long Retry-After is waited out holding nothing)."""
        while (delay := self.next - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    def claim(self) -> bool:
        """Take the next start if it is due now (no await in between: atomic within the event loop)."""
        now = time.monotonic()
        if self.next > now:
            return False
        self.next = now + self.interval
        return True

    def push_back(self, until: float) -> None:
        """No start before `until` (a server's Retry-After)."""
        self.next = max(self.next, until)


class _Host:
    def __init__(self, s: DownloadSettings) -> None:
        self.sem, self.pacer = asyncio.Semaphore(s.per_host), _Pacer(s.host_interval)
        self.queue: asyncio.Queue = asyncio.Queue()


# ---------------------------------------------------------------------------------------------
# the downloader


@dataclass
class RunStats:
    """What one `Downloader.run` did."""

    fetched: int = 0
    skipped: int = 0
    kept: int = 0
    bytes: int = 0
    seconds: float = 0.0
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)


class Downloader:
    """Fetch jobs, store images and append one manifest row per job (see module docstring)."""

    def __init__(self, crawl_dir: str | os.PathLike, settings: DownloadSettings | None = None) -> None:
        self.dir, self.s = Path(crawl_dir), (settings or DownloadSettings()).check()

    def run(self, batches: Iterable[list[Job]], manifest: str | os.PathLike | ManifestWriter,
            state: ResumeState | None = None, progress: bool = True) -> RunStats:
        """Download every job not in `state.done`; `batches` may be a lazy generator (searches feed it).

        `manifest` is a path or a writer the caller already holds (and closes). A full disk or a read-only
        folder stops the run with a StorageError; the URLs it did not finish have no row, so the next run
        fetches them.
        """
        def main() -> RunStats:
            return asyncio.run(self._run(iter(batches), manifest, state or ResumeState(), progress))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return main()
        with ThreadPoolExecutor(1, thread_name_prefix="ltkit-crawl") as ex:  # Jupyter runs a loop already
            return ex.submit(main).result()

    async def _run(self, batches: Iterator[list[Job]], manifest: str | os.PathLike | ManifestWriter, state: ResumeState,
                   progress: bool) -> RunStats:
        from tqdm.auto import tqdm

        s, stats, self._state, self._fatal = self.s, RunStats(), state, None
        self._mapped = {h.lower() for h in s.resolve}
        self._hosts: dict[str, _Host] = {}
        self._inflight = asyncio.Semaphore(s.concurrency)
        self._rate = _Pacer(1.0 / s.rate_limit) if s.rate_limit > 0 else None
        self._pool = ThreadPoolExecutor(s.threads, thread_name_prefix="ltkit-decode")
        feeder = ThreadPoolExecutor(1, thread_name_prefix="ltkit-search")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout, sock_read=s.read_timeout)
        connector = aiohttp.TCPConnector(limit=s.concurrency, limit_per_host=s.per_host, resolver=GuardedResolver(s.allow_loopback, s.resolve),
                                         ttl_dns_cache=300)
        self._bar = tqdm(total=0, unit="url", disable=not progress, dynamic_ncols=True, leave=True)
        workers: list[asyncio.Task] = []
        queued: set[str] = set()
        t0 = time.monotonic()
        try:
            held = isinstance(manifest, ManifestWriter)
            with contextlib.nullcontext(manifest) if held else ManifestWriter(manifest) as self._writer:
                async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                                 headers={"User-Agent": s.user_agent},
                                                 cookie_jar=aiohttp.DummyCookieJar()) as self._session:
                    loop = asyncio.get_running_loop()
                    while self._fatal is None and (
                            batch := await loop.run_in_executor(feeder, next, batches, None)) is not None:
                        for job in batch:
                            if job.key in state.done or job.key in queued:
                                stats.skipped += job.key in state.done
                                continue
                            queued.add(job.key)
                            self._bar.total += 1
                            try:
                                host = check_url(job.url, s.allow_loopback, self._mapped).host.lower()
                            except Failure as f:
                                self._record(job, stats, f.status, f.reason, t0=time.monotonic())
                                continue
                            if host not in self._hosts:
                                h = self._hosts[host] = _Host(s)
                                workers += [asyncio.create_task(self._worker(h, stats)) for _ in range(s.per_host)]
                            self._hosts[host].queue.put_nowait(job)
                        self._bar.refresh()
                    for h in self._hosts.values():
                        for _ in range(s.per_host):
                            h.queue.put_nowait(None)
                    await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            self._bar.close()
            self._pool.shutdown(wait=True)
            feeder.shutdown(wait=False)
        if self._fatal is not None:
            raise self._fatal
        stats.seconds = time.monotonic() - t0
        return stats

    async def _worker(self, host: _Host, stats: RunStats) -> None:
        """Serve one host's queue until its end marker (None); after a storage fault, drain it unrecorded."""
        while (job := await host.queue.get()) is not None:
            if self._fatal is not None:
                continue  # no row: the next run fetches it
            t0 = time.monotonic()
            try:
                await self._download(job, stats, t0)
            except StorageError as e:  # the folder takes no more: every other URL would fail the same way
                self._fatal = self._fatal or e
            except Exception as e:  # a bug must not stop a crawl of a million URLs; it is logged and recorded
                log.exception("ltkit crawl: unexpected error on %s", job.url)
                try:
                    self._record(job, stats, "failed", f"internal_error:{type(e).__name__}", t0=t0)
                except StorageError as fault:
                    self._fatal = self._fatal or fault

    async def _download(self, job: Job, stats: RunStats, t0: float) -> None:
        """Fetch with retries, store, dedup within the class, record."""
        s, attempts, http_status = self.s, 0, None
        while True:
            attempts += 1
            try:
                final_url, body, http_status = await self._fetch(job.url)
                break
            except Failure as f:
                return self._record(job, stats, f.status, f.reason, attempts, f.http_status, t0=t0)
            except _Retry as r:
                if attempts > s.retries or (r.retry_after or 0) > s.max_retry_after:
                    return self._record(job, stats, "failed", r.reason, attempts, r.http_status, t0=t0)
                delay = r.retry_after if r.retry_after is not None else s.backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.5)
                if r.retry_after is not None and r.host in self._hosts:  # the whole host waits, not just this URL
                    self._hosts[r.host].pacer.push_back(time.monotonic() + delay)
                await asyncio.sleep(delay)
        stats.bytes += len(body)
        try:
            stored = await asyncio.get_running_loop().run_in_executor(
                self._pool, store_image, body, self.dir, job.aux_id, s.max_pixels, s.resize, s.jpeg_quality)
        except Failure as f:
            return self._record(job, stats, f.status, f.reason, attempts, http_status, len(body), t0=t0)
        kept = self._state.kept[job.aux_id]
        first = kept.setdefault(stored.sha256, job.key)
        if first != job.key:
            return self._record(job, stats, "duplicate", f"same_image_as:{first}", attempts, http_status, len(body),
                                stored, t0=t0, final_url=final_url)
        self._record(job, stats, "ok", "", attempts, http_status, len(body), stored, t0=t0, final_url=final_url)

    async def _fetch(self, url: str) -> tuple[str, bytes, int]:
        """GET following redirects by hand, each hop checked; returns (final URL, body, status)."""
        s, visited = self.s, set()
        for _ in range(s.max_redirects + 1):
            u = check_url(url, s.allow_loopback, self._mapped)
            if url in visited:
                raise Failure("failed", "redirect_loop")
            visited.add(url)
            host = self._hosts.get(u.host.lower()) or self._hosts.setdefault(u.host.lower(), _Host(s))
            location, body, status = await self._paced_hop(host, url, u.host.lower())
            if location is None:
                return url, body, status
            url = location
        raise Failure("failed", "too_many_redirects")

    async def _paced_hop(self, host: _Host, url: str, name: str) -> tuple[str | None, bytes, int]:
        """One hop when the host is due and a global slot is free; a host that is not due holds no slot."""
        async with host.sem:
            while True:
                await host.pacer.ready()
                async with self._inflight:
                    if self._rate is not None:
                        await self._rate.wait()
                    # another start, or a Retry-After, may have come while this one waited for the slot
                    if host.pacer.claim():
                        return await self._checked_hop(url, name)

    async def _checked_hop(self, url: str, host: str) -> tuple[str | None, bytes, int]:
        """`_hop` under the total timeout, its errors mapped to a Failure (final) or a _Retry (transient)."""
        s = self.s
        try:
            async with asyncio.timeout(s.total_timeout):
                return await self._hop(url)
        except Failure:
            raise
        except _Retry as r:
            r.host = host
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            if s.retry_timeouts:
                raise _Retry("timeout") from None
            raise Failure("failed", "timeout") from None
        except aiohttp.ClientConnectorDNSError as e:
            if isinstance(e.os_error, AddressRefused):
                raise Failure("refused", "disallowed_address") from None
            raise Failure("failed", "dns_error") from None
        except (aiohttp.InvalidURL, ValueError):
            raise Failure("failed", "bad_url") from None
        except aiohttp.ClientSSLError:  # a bad certificate stays bad: no retry
            raise Failure("failed", "tls_error") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            raise _Retry("connection_error") from None
        except aiohttp.ClientResponseError:
            raise Failure("failed", "bad_response") from None

    async def _hop(self, url: str) -> tuple[str | None, bytes, int]:
        """One request: (redirect target, b"", status) or (None, body, 200)."""
        s = self.s
        async with self._session.get(url, allow_redirects=False) as r:
            if r.status in REDIRECTS:
                loc = r.headers.get("Location")
                if not loc:
                    raise Failure("failed", "redirect_without_location", r.status)
                return str(r.url.join(URL(loc))), b"", r.status
            if r.status == 429 or r.status >= 500:
                raise _Retry(f"http_{r.status}", retry_after(r.headers.get("Retry-After")), r.status)
            if r.status != 200:
                raise Failure("failed", f"http_{r.status}", r.status)
            if robots_forbid(r.headers.getall("X-Robots-Tag", []), s.robots_directives):
                raise Failure("refused", "x_robots_tag", r.status)
            if r.content_length is not None and r.content_length > s.max_bytes:
                raise Failure("failed", "too_large", r.status)
            body = bytearray()
            async for chunk in r.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > s.max_bytes:  # no or a false Content-Length: stop reading at the limit
                    raise Failure("failed", "too_large", r.status)
            return None, bytes(body), r.status

    def _record(self, job: Job, stats: RunStats, status: str, reason: str, attempts: int = 0,
                http_status: int | None = None, nbytes: int = 0, stored: Stored | None = None, *, t0: float,
                final_url: str | None = None) -> None:
        """Append the job's manifest row and count it."""
        try:
            host = URL(job.url).host or ""
        except (ValueError, TypeError):  # a URL too broken to parse still gets its row
            host = ""
        row = {**job.row, "key": job.key, "aux_id": job.aux_id, "url": job.url, "status": status, "reason": reason,
               "path": stored.path if stored and status == "ok" else None, "sha256": stored.sha256 if stored else None,
               "width": stored.width if stored else None, "height": stored.height if stored else None,
               "bytes": nbytes, "host": host, "http_status": http_status, "attempts": attempts,
               "seconds": round(time.monotonic() - t0, 4), "finished": time.time()}
        if final_url and final_url != job.url:
            row["final_url"] = final_url
        self._writer.write(row)
        stats.fetched += attempts > 0
        stats.kept += status == "ok"
        counts = stats.hosts.setdefault(host, {})
        counts[status] = counts.get(status, 0) + 1
        self._bar.update(1)
