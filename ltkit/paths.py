"""Where things are: the repository root, against which notebooks and the main job resolve relative paths."""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout ltkit is imported from (the folder holding `ltkit/`, `configs/` and `notebooks/`)."""
    return Path(__file__).resolve().parent.parent


def from_root(path: str | os.PathLike) -> Path:
    """`path` as is when absolute, else relative to the repository root (wherever the kernel was started)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p
