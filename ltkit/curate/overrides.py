"""A curator's manual overrides: images whose kept / dropped decision a person flipped by hand.

Thresholds decide most images; a curator looking at the tuner's grids sees the ones they get wrong
and clicks them. Each click appends one line to `overrides.jsonl` in the crawl folder:

    {"key": "...", "sha256": "...", "decision": "keep" | "drop" | "auto", "by": "alice", "time": "2026-...Z"}

The file is append-only (the history of who changed what stays), and the last line of a key wins;
"auto" withdraws an earlier override, so clicking an image twice gives it back to the thresholds.
An override forces the decision whatever the thresholds are later moved to, and it applies only to the
same bytes (`sha256`): a re-crawled key with another image is decided by the thresholds again.
`python -m ltkit filter` and the tuner both read this file, so the command line and the notebook agree.
"""
from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ltkit.errors import UserError
from ltkit.io import append_jsonl, read_jsonl

OVERRIDES = "overrides.jsonl"
DECISIONS = ("keep", "drop", "auto")


@dataclass(frozen=True)
class Override:
    """One curator decision on one crawled image."""

    key: str
    sha256: str
    decision: str  # keep | drop | auto
    by: str
    time: str


def read_overrides(crawl_dir: str | Path) -> dict[str, Override]:
    """The overrides in force, by manifest key (last line of a key wins; "auto" removes it); {} without a file."""
    path = Path(crawl_dir) / OVERRIDES
    out: dict[str, Override] = {}
    try:
        rows = list(read_jsonl(path))
    except ValueError as e:  # a bad middle line: the file was edited by hand
        raise UserError(str(e)) from None
    for n, row in enumerate(rows, 1):
        missing = [f for f in ("key", "decision") if not row.get(f)]
        if missing or row["decision"] not in DECISIONS:
            what = f"field {missing[0]} missing" if missing else f"decision {row['decision']!r} is not one of {DECISIONS}"
            raise UserError(f"{path}: override {n}: {what}")
        o = Override(str(row["key"]), str(row.get("sha256") or ""), row["decision"], str(row.get("by") or ""),
                     str(row.get("time") or ""))
        if o.decision == "auto":
            out.pop(o.key, None)
        else:
            out[o.key] = o
    return out


def record_override(crawl_dir: str | Path, key: str, sha256: str, decision: str, by: str | None = None) -> Override:
    """Append one override (who: `by`, default the login name; when: now, UTC) and return it."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
    o = Override(key, sha256, decision, by or getpass.getuser(),
                 datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"))
    append_jsonl(Path(crawl_dir) / OVERRIDES, asdict(o))
    return o


def match_overrides(rows: list[dict], overrides: dict[str, Override]) -> dict[int, Override]:
    """Row index -> override in force for it (same key and, when recorded, the same image bytes)."""
    out = {}
    for i, r in enumerate(rows):
        o = overrides.get(r["key"])
        if o is not None and (not o.sha256 or o.sha256 == r.get("sha256")):
            out[i] = o
    return out


def flip_decision(auto_keep: bool, keep: bool) -> str:
    """What a click records on an image now kept (`keep`) whose thresholds alone say `auto_keep`.

    The click turns kept into dropped and back; when that is what the thresholds say anyway the
    override is withdrawn ("auto") rather than stacked.
    """
    want = not keep
    return "auto" if want == auto_keep else ("keep" if want else "drop")
