"""Where things are: the repository root, against which notebooks and the main job resolve relative paths,
and the cache of generated worlds, encoders, features and datasets."""
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


def cache_root() -> Path:
    """LTKIT_CACHE, or ~/.cache/ltkit."""
    return Path(os.environ.get("LTKIT_CACHE", Path.home() / ".cache" / "ltkit"))
