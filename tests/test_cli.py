"""`python -m ltkit STAGE` as real subprocesses: a user mistake in any stage is one `error:` line and exit 2."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltkit.cli import STAGES, error_line

ROOT = Path(__file__).resolve().parent.parent

# the same mistake (a path that is not there) in every stage
MISTAKES = {
    "world": ["world", "--preset", "builtin-tiny", "--cache", "/dev/null/cache"],
    "neighbours": ["neighbours", "dataset=folders", "data_root=/nonexistent"],
    "train": ["train", "data_root=/nonexistent", "dataset=folders"],
    "compare": ["compare", "--config", "configs/builtin-tiny.yaml", "dataset=folders", "data_root=/nonexistent"],
    "demo": ["demo", "--preset", "builtin-tiny", "--figures", "/dev/null/figures"],
    # stages that join STAGES get their case run here as soon as they do
    "crawl": ["crawl", "dataset=folders", "data_root=/nonexistent"],
    "filter": ["filter", "dataset=folders", "data_root=/nonexistent"],
    "pilot": ["pilot", "dataset=folders", "data_root=/nonexistent"],
    "photos": ["photos", "--config", "configs/photos.yaml", "photos.sources=[/nonexistent.tar.gz]"],
    "bad key": ["train", "--config", "configs/builtin-tiny.yaml", "neighbours.backnd=openai"],
    "bad option": ["world", "--preset", "nope"],
    "debug": ["train", "data_root=/nonexistent", "dataset=folders", "--debug"],
}


@pytest.fixture(scope="module")
def runs(world_cache, tmp_path_factory):
    """Every command at once (each pays the import of torch), from a folder outside the repository."""
    env = {**os.environ, "LTKIT_CACHE": str(world_cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    cwd = tmp_path_factory.mktemp("cwd")
    procs = {k: subprocess.Popen([sys.executable, "-m", "ltkit", *args], env=env, cwd=cwd, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, args in MISTAKES.items() if args[0] in STAGES}
    return {k: (p.wait(timeout=300), *p.communicate()) for k, p in procs.items()}


def test_every_stage_has_a_mistake_case():
    assert set(STAGES) <= set(MISTAKES), f"add a mistake for {sorted(set(STAGES) - set(MISTAKES))}"


@pytest.mark.parametrize("case", [k for k, args in MISTAKES.items() if k != "debug" and args[0] in STAGES])
def test_user_mistake_is_one_error_line_and_status_2(runs, case):
    rc, out, err = runs[case]
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("ltkit.")]  # log lines are fine
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err[-2000:])
    assert "Traceback" not in err
    expect = {"world": "/dev/null/cache", "demo": "/dev/null/figures", "bad key": "'neighbours.backnd'",
              "bad option": "invalid choice: 'nope'"}
    assert expect.get(case, "/nonexistent") in lines[0]


def test_debug_shows_the_traceback(runs):
    rc, out, err = runs["debug"]
    assert rc != 0 and "Traceback" in err and "FileNotFoundError" in err


def test_error_line_is_one_line():
    assert error_line(ValueError("a\nb")) == "error: a b"
    assert error_line(NotADirectoryError(20, "Not a directory", "/x/y")) == "error: Not a directory: /x/y"
