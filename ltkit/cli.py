"""`python -m ltkit STAGE ... [--debug]`: each stage's module owns its arguments through a `main(argv)`.

User errors (a missing file, a bad config key, a malformed line) end as one `error: ...` line on
stderr and exit status 2; `--debug` shows the traceback instead. Progress and notes go through
`logging` (one logger per module), at INFO to stderr.
"""
from __future__ import annotations

import importlib
import logging
import sys

from ltkit.errors import UserError

STAGES = {
    "world": ("ltkit.world", "generate the built-in world and print its summary"),
    "photos": ("ltkit.data.photos", "cut a long-tailed task and a captioned pool from labelled photo sets"),
    "demo": ("ltkit.demo", "the main job: world, figures, every numbered notebook in order"),
    "neighbours": ("ltkit.neighbours.cli", "search neighbour categories for target classes"),
    "crawl": ("ltkit.crawl.retrieve", "search images of the auxiliary categories and download them (resumable)"),
    "train": ("ltkit.pipeline:train_main", "train a model from a config (target + auxiliary classes)"),
    "compare": ("ltkit.report", "the paper's method table (Tab. 2 / Tab. 6) on a preset, as markdown"),
    "filter": ("ltkit.curate.cli", "filter a crawl (caption, similarity window, test leaks); write the accepted set"),
    "pilot": ("ltkit.pilot", "granularity pilot (Fig. 3): head-tail gap over superclasses x imbalance ratios"),
}

# What a user can cause and fix: a setting, a path or a file's contents (UserError, which every stage
# raises for its input, and the OS's file errors). Anything else, a plain ValueError or KeyError included,
# is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def usage() -> str:
    """The list of stages."""
    lines = ["usage: ltkit [--debug] STAGE [args...]    (the same as python -m ltkit ...)", "", "stages:"]
    return "\n".join(lines + [f"  {name:<12} {text}" for name, (_, text) in STAGES.items()])


def error_line(e: BaseException) -> str:
    """One line for a user error: its message, with the path for OS errors that carry one."""
    if isinstance(e, OSError) and e.strerror and e.filename:  # not "[Errno 20] Not a directory: '/x'"
        msg = f"{e.strerror}: {e.filename}"
    else:
        msg = str(e) or type(e).__name__
    return "error: " + " ".join(msg.split())


def setup_logging(debug: bool = False) -> None:
    """ltkit's loggers at INFO (DEBUG with --debug) to stderr; other libraries stay at WARNING."""
    log = logging.getLogger("ltkit")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    for handler in log.handlers:  # called again in one process (tests, a notebook): today's stderr, not a closed one
        if type(handler) is logging.StreamHandler:
            handler.stream = sys.stderr  # not setStream: it would flush the old stream, which may be closed
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a stage; `python -m ltkit` alone lists them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in STAGES:
        print(f"error: unknown stage {argv[0]!r}; expected one of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    setup_logging(debug)
    try:
        module, _, func = STAGES[argv[0]][0].partition(":")  # "module" (its main) or "module:function"
        return int(getattr(importlib.import_module(module), func or "main")(argv[1:]) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        print(error_line(e), file=sys.stderr)
        return 2

