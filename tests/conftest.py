"""Shared fixtures: an isolated cache, offline hubs, and the tiny world generated once per session."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One torch thread per process: on 2 cores, two processes with 2 OpenMP threads each (DDP tests, a
# notebook kernel beside pytest) spin against each other and run 20x slower than with one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "ltkit-numba"))


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory):
    """A cache folder shared by the whole session (the tiny world is rendered once)."""
    path = tmp_path_factory.mktemp("ltkit-cache")
    os.environ["LTKIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_world(world_cache):
    """The builtin-tiny world."""
    from ltkit.world import PRESETS, load_world

    return load_world(PRESETS["builtin-tiny"], world_cache)
