"""Shared fixtures: an isolated cache, offline hubs, the tiny world and its encoder made once per run, the main
job run once for the tests that read it; slow tests first, so that parallel workers start on them.

Under pytest-xdist (`make test` runs two workers) the workers of one run share the cache folder: what one worker
renders or trains, the other reads. Each expensive item is made under a file lock, so a worker that needs it
while another makes it waits for that one instead of making it a second time.
"""
import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ltkit.io import atomic_write_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One torch thread per process: on 2 cores, two processes with 2 OpenMP threads each (DDP tests, a
# notebook kernel beside pytest, two xdist workers) spin against each other and run 20x slower than with one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# numba's OpenMP layer starts as many threads as cores; one each here, as for torch (umap_panels.embed itself
# restores torch's count, which that layer resets: tests/test_viz.py checks it without this variable)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "ltkit-numba"))

# the main job's notebook parameters: one ablation keeps it short; k=3 is the preset's own run
MAIN_JOB_PARAMS = {"preset": "builtin-tiny", "ablations": {"k": [1, 3]},
                   "overrides": {"steps": 30, "warmup_steps": 4}}  # equal steps, as configs/builtin.yaml trains the demo


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on `path` (created if missing) inside the block; other processes wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_folder(tmp_path_factory, name: str) -> Path:
    """A folder of this run: shared by every xdist worker of the run (the parent of the workers' temp
    folders), else the session's own."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / name
        path.mkdir(exist_ok=True)
        return path
    return tmp_path_factory.mktemp(name, numbered=False)


@pytest.fixture(scope="session", autouse=True)
def world_cache(tmp_path_factory):
    """The cache of this run (LTKIT_CACHE) for every test: never the user's ~/.cache/ltkit, shared by the workers."""
    path = run_folder(tmp_path_factory, "ltkit-cache")
    os.environ["LTKIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_world(world_cache):
    """The builtin-tiny world, rendered once per run."""
    from ltkit.world import PRESETS, load_world

    with locked(world_cache / ".tiny-world.lock"):
        return load_world(PRESETS["builtin-tiny"], world_cache)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_world, world_cache):
    """The tiny preset's filter encoder (`filter.encoder: pool:epochs=6`), trained once per run; its weights file."""
    from ltkit.pretrain import pool_pretrained

    with locked(world_cache / ".tiny-encoder.lock"):
        return pool_pretrained(tiny_world, epochs=6)


@pytest.fixture(scope="session")
def main_job(tiny_world, tiny_encoder, tmp_path_factory):
    """`python -m ltkit demo` on builtin-tiny, run once: its folders (figures, executed notebooks, runs; read-only
    to the tests) and the notebook parameters it ran with.

    Its readers (the main job's test, notebook 01's and notebook 04's in the browser) are in the xdist group
    "main-job", so one worker runs it; another that asks anyway waits on the lock and reads the same folder.
    """
    from ltkit import demo

    root = run_folder(tmp_path_factory, "main-job")
    job = SimpleNamespace(figures=root / "figures", executed=root / "executed", runs=root / "runs",
                          timings=root / "timings.json", params=MAIN_JOB_PARAMS)
    with locked(root / ".lock"):
        if not (root / "done").exists():
            shutil.rmtree(job.figures, ignore_errors=True)  # a run that failed half-way: start again
            params = {**MAIN_JOB_PARAMS, "out_dir": str(job.runs), "figures_dir": str(job.figures)}
            with pytest.MonkeyPatch.context() as m:
                m.setattr(demo, "_notebook_parameters", lambda preset: params)
                argv = ["--preset", "builtin-tiny", "--figures", str(job.figures), "--executed", str(job.executed),
                        "--timings", str(job.timings)]
                assert demo.main(argv) == 0
            (root / "done").touch()
    return job


# ---------------------------------------------------------------------------------------------
# order and xdist groups

# Where the workers of a `--dist loadgroup` run write which xdist_group each test is in. xdist itself marks
# a group by renaming the test's node id, which pytest 9 no longer allows: its groups would be ignored.
GROUPS_ENV = "LTKIT_XDIST_GROUPS"


def pytest_configure(config):
    """In the controller of a `--dist loadgroup` run: the folder the workers (started after this) write into."""
    if getattr(config.option, "dist", "no") == "loadgroup" and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[GROUPS_ENV] = tempfile.mkdtemp(prefix="ltkit-xdist-groups-")


def pytest_unconfigure(config):
    if os.environ.get(GROUPS_ENV) and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ.pop(GROUPS_ENV), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Slow tests first: parallel workers start on the long ones and the short ones fill the gaps at the end.
    A worker then writes the xdist_group of each test for the controller's scheduler (below)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    folder, worker = os.environ.get(GROUPS_ENV), os.environ.get("PYTEST_XDIST_WORKER")
    if folder and worker:
        groups = {item.nodeid: _group_name(mark) for item in items if (mark := item.get_closest_marker("xdist_group"))}
        atomic_write_text(Path(folder) / f"{worker}.json", json.dumps(groups))


def _group_name(mark) -> str:
    """The name of an `xdist_group(name)` mark, as xdist reads it."""
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with the groups the workers wrote: each group on one worker, every other test on its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class MarkedGroups(LoadGroupScheduling):
        groups: dict | None = None

        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)  # a node id xdist could rename (pytest < 9)
            if scope != nodeid:
                return scope
            if self.groups is None:  # every worker has collected (and written) by the time tests are split
                self.groups = {k: v for f in Path(os.environ[GROUPS_ENV]).glob("*.json")
                               for k, v in json.loads(f.read_text()).items()}
            return self.groups.get(nodeid, nodeid)

    return MarkedGroups(config, log)
