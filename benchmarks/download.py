"""ltkit's downloader against img2dataset: images per second on the same local servers and URL list.

    python benchmarks/download.py [--images 3000] [--hosts 4] [--repeat 3]

Both sides fetch the same URLs from the same HTTP servers (one aiohttp process serving 127.0.0.2,
.3, ... as separate hosts), with the same timeout and no retries, both decoding every image and
re-encoding it as JPEG without resizing (img2dataset: resize_mode="no", which decodes with OpenCV
and re-encodes; ltkit: Pillow, RGB, JPEG). Each side runs as a fresh process, timed end to end
(interpreter start, imports, writes and manifest/parquet included). img2dataset lives in its own
virtual environment, never the project's: created at --venv (default /tmp/img2dataset-venv) on first
use with `python -m venv` and `pip install img2dataset`. Target: ratio >= 1.0.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    """n distinct 160x120 JPEGs (gradients and rectangles, a few KB each, like small web thumbnails)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:120, 0:160] / 160.0
    for i in range(n):
        img = (rng.uniform(0, 255, 3) * xx[..., None] + rng.uniform(0, 255, 3) * yy[..., None]) / 1.5
        for _ in range(3):
            x0, y0 = rng.integers(0, 140), rng.integers(0, 100)
            img[y0:y0 + rng.integers(10, 60), x0:x0 + rng.integers(10, 60)] = rng.uniform(0, 255, 3)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        (folder / f"{i}.jpg").write_bytes(buf.getvalue())


def serve(folder: str, hosts: list[str], ready: str) -> None:
    """The image servers (run in their own process): every host serves /<i>.jpg from memory."""
    import asyncio

    from aiohttp import web

    images = {p.name: p.read_bytes() for p in Path(folder).glob("*.jpg")}

    async def handle(request: web.Request) -> web.Response:
        body = images.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="image/jpeg")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        addrs = []
        for h in hosts:
            site = web.TCPSite(runner, h, 0)
            await site.start()
            addrs.append(f"{h}:{site._server.sockets[0].getsockname()[1]}")
        Path(ready).write_text("\n".join(addrs))
        await asyncio.Event().wait()

    asyncio.run(main())


def img2dataset_python(venv: Path) -> Path:
    """The benchmark's own environment with img2dataset (created on first use)."""
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"creating {venv} and installing img2dataset (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "img2dataset"], check=True)
    return py


I2D = """
import json, sys, img2dataset
a = json.loads(sys.argv[1])
img2dataset.download(url_list=a["urls"], input_format="txt", output_folder=a["out"], output_format="files",
                     processes_count=a["processes"], thread_count=a["threads"], timeout=a["timeout"], retries=0,
                     resize_mode="no", encode_format="jpg", compute_hash="sha256", incremental_mode="incremental",
                     distributor="multiprocessing", enable_wandb=False)
"""

LTKIT = """
import json, sys
from ltkit.crawl.download import DownloadSettings
from ltkit.crawl.retrieve import read_url_list, run_crawl
a = json.loads(sys.argv[1])
names, batches = read_url_list(a["urls"])
s = DownloadSettings(concurrency=a["concurrency"], per_host=a["per_host"], host_interval=0.0, retries=0,
                     connect_timeout=a["timeout"], read_timeout=a["timeout"], total_timeout=a["timeout"],
                     allow_loopback=True)
run_crawl(a["out"], batches, list(range(len(names))), s, progress=False)
"""


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{cmd[0]} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def count_ok_ltkit(out: Path) -> int:
    return sum(json.loads(line)["status"] == "ok" for line in (out / "manifest.jsonl").read_text().splitlines())


def count_ok_img2dataset(out: Path) -> int:
    return sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--hosts", type=int, default=4, help="servers on 127.0.0.2, .3, ...")
    p.add_argument("--repeat", type=int, default=3, help="runs per side (alternating); the median is reported")
    p.add_argument("--timeout", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=64, help="ltkit: requests in flight")
    p.add_argument("--per-host", type=int, default=16, help="ltkit: connections per host")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="img2dataset: processes")
    p.add_argument("--threads", type=int, default=64, help="img2dataset: threads per process")
    p.add_argument("--venv", default="/tmp/img2dataset-venv", help="img2dataset's own virtual environment")
    args = p.parse_args()

    i2d = img2dataset_python(Path(args.venv))
    work = Path(tempfile.mkdtemp(prefix="ltkit-bench-dl-"))
    server = None
    try:
        make_images(work / "served", args.images)
        hosts = [f"127.0.0.{2 + i}" for i in range(args.hosts)]
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "served"), str(work / "ready"),
                                   *hosts])
        while not (work / "ready").exists():
            if server.poll() is not None:
                raise RuntimeError("image server did not start")
            time.sleep(0.1)
        addrs = (work / "ready").read_text().split()
        urls = [f"http://{addrs[i % len(addrs)]}/{i}.jpg" for i in range(args.images)]
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        (work / "urls.csv").write_text("aux_name,url\n" + "".join(f"class {i % 30},{u}\n" for i, u in enumerate(urls)))
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
        times: dict[str, list[float]] = {"ltkit": [], "img2dataset": []}
        for r in range(args.repeat):
            for side in ("img2dataset", "ltkit") if r % 2 else ("ltkit", "img2dataset"):
                out = work / f"{side}-{r}"
                if side == "ltkit":
                    a = {"urls": str(work / "urls.csv"), "out": str(out), "concurrency": args.concurrency,
                         "per_host": args.per_host, "timeout": args.timeout}
                    t = timed([sys.executable, "-c", LTKIT, json.dumps(a)], env)
                    ok = count_ok_ltkit(out)
                else:
                    a = {"urls": str(work / "urls.txt"), "out": str(out), "processes": args.processes,
                         "threads": args.threads, "timeout": args.timeout}
                    t = timed([str(i2d), "-c", I2D, json.dumps(a)], env)
                    ok = count_ok_img2dataset(out)
                if ok != args.images:
                    raise RuntimeError(f"{side}: {ok} of {args.images} images downloaded")
                times[side].append(t)
                print(f"run {r + 1} {side:<12} {args.images / t:8.1f} images/s ({t:.2f}s)", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        rate = {k: args.images / statistics.median(v) for k, v in times.items()}
        print(f"\n{args.images} images over {args.hosts} hosts, timeout {args.timeout}s, no resize, both decoding; "
              f"ltkit concurrency {args.concurrency} / {args.per_host} per host, img2dataset {args.processes} "
              f"processes x {args.threads} threads; {os.cpu_count()} CPUs")
        print(f"ltkit        {rate['ltkit']:8.1f} images/s (median of {args.repeat})")
        print(f"img2dataset  {rate['img2dataset']:8.1f} images/s (median of {args.repeat})")
        print(f"ratio        {rate['ltkit'] / rate['img2dataset']:8.2f}x")
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[4:], sys.argv[3])
    else:
        main()
