"""Atomic file writes and append-only JSONL: every artifact is either whole or absent."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from ltkit.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the artifact a plain file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Serialise with `write(buffer)` (torch.save, np.save, savefig, ...) into memory, then write atomically.

    A writer that fails half-way leaves no file behind, because nothing touches the disk until it returns.
    """
    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic write of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic, indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing file or bad JSON is an error that names the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None


def read_text(path: str | os.PathLike) -> str:
    """A user's text file (config, CSV, list) as UTF-8 with any BOM dropped; another encoding is a UserError."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")  # Excel and Notepad write a BOM, which would glue onto the first key
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8") from None


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one JSON line and fsync, so a crash loses at most the line being written.

    A last line without its newline is finished first: ended with one if it is a whole JSON row,
    cut off if it is torn (appending after it would glue the new row onto it and turn it into a bad
    middle line that `read_jsonl` rejects).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            start = last_line_start(f, size)
            f.seek(start)
            last = f.read()
            if last and not last.endswith(b"\n"):
                try:
                    json.loads(last)
                    f.write(b"\n")
                except ValueError:
                    f.truncate(start)
        f.write((json.dumps(row, default=_jsonable) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def last_line_start(f, size: int) -> int:
    """Offset just after the last newline of a file, read backwards in blocks (0 if none)."""
    end = size
    while end > 0:
        begin = max(0, end - 65536)
        f.seek(begin)
        cut = f.read(end - begin).rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        end = begin
    return 0


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Rows of a JSONL file; a torn last line (crash mid-write) is ignored, any other bad line raises."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                return
            raise UserError(f"{path}: line {i}: invalid JSON ({e.msg})") from None


def _jsonable(o: Any) -> Any:
    """numpy scalars/arrays and paths to plain JSON."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
