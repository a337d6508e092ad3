"""`python -m ltkit STAGE`: a user mistake in any stage is one `error:` line and exit 2, a bug a traceback.

Every stage is called in-process through `ltkit.cli.main` (what `python -m ltkit` runs); one test crosses the
real process boundary.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltkit import cli
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


def _run(args: list[str], capsys) -> tuple[int, str]:
    """`python -m ltkit ARGS` in this process (every stage's `main(argv)`): exit status and stderr."""
    rc = cli.main(args)
    return rc, capsys.readouterr().err


def test_every_stage_has_a_mistake_case():
    assert set(STAGES) <= set(MISTAKES), f"add a mistake for {sorted(set(STAGES) - set(MISTAKES))}"


@pytest.mark.parametrize("case", [k for k, args in MISTAKES.items() if k != "debug" and args[0] in STAGES])
def test_user_mistake_is_one_error_line_and_status_2(world_cache, tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)  # from a folder outside the repository
    if MISTAKES[case][:2] == ["compare", "--config"] or MISTAKES[case][1:2] == ["--config"]:
        monkeypatch.chdir(ROOT)  # the preset path is relative to the repository
    rc, err = _run(MISTAKES[case], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("ltkit.")]  # log lines are fine
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err[-2000:])
    expect = {"world": "/dev/null/cache", "demo": "/dev/null/figures", "bad key": "'neighbours.backnd'",
              "bad option": "invalid choice: 'nope'"}
    assert expect.get(case, "/nonexistent") in lines[0]


def test_debug_raises_the_error_itself(world_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="/nonexistent"):
        cli.main(MISTAKES["debug"])


def test_a_bug_is_a_traceback_not_an_error_line(monkeypatch, capsys):
    """Only what a user can fix becomes one line: an error from a bug keeps its traceback."""
    def broken(argv):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(importlib.import_module(STAGES["world"][0]), "main", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["world"])


def test_the_real_command_line(world_cache, tmp_path):
    """`python -m ltkit` in a real process: one user mistake and one --debug (the process boundary itself).

    On the neighbours stage, which fails before importing torch: a stage that imports it (train) costs each
    process about 6 s of CPU, and the in-process cases above already run every stage's mistake."""
    env = {**os.environ, "LTKIT_CACHE": str(world_cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    argv = {"mistake": MISTAKES["neighbours"], "debug": [*MISTAKES["neighbours"], "--debug"]}
    procs = {k: subprocess.Popen([sys.executable, "-m", "ltkit", *a], env=env, cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k, a in argv.items()}
    (rc, _, err), (drc, _, derr) = [(p.wait(timeout=300), *p.communicate()) for p in procs.values()]
    assert rc == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ")
    assert "/nonexistent" in err.strip().splitlines()[-1]
    assert drc != 0 and "Traceback" in derr and "FileNotFoundError" in derr


def test_error_line_is_one_line():
    assert error_line(ValueError("a\nb")) == "error: a b"
    assert error_line(NotADirectoryError(20, "Not a directory", "/x/y")) == "error: Not a directory: /x/y"


def test_ltkit_console_command_is_installed_and_dispatches():
    """`ltkit STAGE` (the installed console script) is `python -m ltkit STAGE`."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "ltkit"]
    assert script.load() is cli.main
    assert script.load()(["--help"]) == 0
