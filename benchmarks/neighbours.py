"""Neighbour search throughput: concurrent requests against one at a time, on a local fake LLM server.

    python benchmarks/neighbours.py [--classes 100] [--latency 1.0] [--workers 8]

The server (tests/fake_llm.py, real HTTP on 127.0.0.1, driven through the real openai client)
answers every request after `--latency` seconds, as a remote model would. Both runs search the
same classes from an empty cache; the speed-up is sequential time / concurrent time. Target: >= 6x
at 8 workers for 100 classes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_llm import FakeLLM  # noqa: E402
from ltkit.neighbours.backends import OpenAIBackend  # noqa: E402
from ltkit.neighbours.search import search_neighbours  # noqa: E402


def run(srv: FakeLLM, classes: list[str], workers: int) -> tuple[float, int, int]:
    """(seconds, requests the server saw, most requests in flight at once) for one search from an empty cache."""
    backend = OpenAIBackend("fake-model", srv.url, api_key="local", timeout=30.0, retries=0)
    before, srv.peak = len(srv.requests), 0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = search_neighbours(backend, classes, None, out, k=5, workers=workers)
        dt = time.perf_counter() - t0
    assert res.tally.requests == len(classes), res.tally
    return dt, len(srv.requests) - before, srv.peak


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--latency", type=float, default=1.0, help="seconds the server takes per answer")
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    classes = [f"class {i:03d}" for i in range(args.classes)]
    with FakeLLM("slow", delay=args.latency) as srv:
        rows = {w: run(srv, classes, w) for w in (1, args.workers)}
    print(f"{args.classes} classes, {args.latency:g} s per answer (fake server on 127.0.0.1)\n")
    print(f"{'workers':>7} {'seconds':>8} {'requests':>9} {'peak in flight':>15}")
    for w, (dt, n, peak) in rows.items():
        print(f"{w:>7} {dt:8.1f} {n:9d} {peak:15d}")
    speedup = rows[1][0] / rows[args.workers][0]
    print(f"\nspeed-up with {args.workers} workers: {speedup:.2f}x (target >= 6x: {'ok' if speedup >= 6 else 'UNDER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
