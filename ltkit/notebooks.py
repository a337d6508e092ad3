"""Execute the numbered notebooks headless with papermill, parameters injected after the `parameters` cell.

The same as `papermill notebooks/03_training.ipynb out.ipynb -p preset builtin-tiny`: the executed copy
records its parameters (an `injected-parameters` cell and the notebook's papermill metadata) and
papermill shows a progress bar per cell. Values must be literals (str, int, float, bool, None, and
lists / dicts of them): paths and numpy scalars are converted here, anything else is refused,
because papermill would inject it as a string.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import papermill

from ltkit.errors import UserError
from ltkit.paths import repo_root

NOTEBOOK_DIR = repo_root() / "notebooks"


def numbered_notebooks(folder: str | os.PathLike = NOTEBOOK_DIR) -> list[Path]:
    """`NN_name.ipynb` files of a folder, in order."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if re.match(r"\d\d_", p.name))


def parameter_names(nb: nbformat.NotebookNode) -> list[str]:
    """Names assigned in the cell tagged `parameters` (empty if there is none)."""
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse(cell.source)
            return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return []


def literal(value: Any, name: str = "parameter") -> Any:
    """A parameter value as a plain literal: paths to str, numpy scalars and arrays to Python, tuples to lists."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar or 0-d array
        return literal(value.item(), name)
    if hasattr(value, "tolist"):
        return literal(value.tolist(), name)
    if isinstance(value, (list, tuple)):
        return [literal(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise UserError(f"notebook parameter {name}: dict keys must be strings, got {bad[0]!r}")
        return {k: literal(v, f"{name}[{k!r}]") for k, v in value.items()}
    raise UserError(f"notebook parameter {name}: {type(value).__name__} is not a literal "
                    "(use str, int, float, bool, None, or lists / dicts of them)")


def execute(path: str | os.PathLike, out_path: str | os.PathLike, parameters: dict | None = None,
            cwd: str | os.PathLike | None = None, timeout: int = 3600, only_known: bool = True,
            progress: bool = True) -> nbformat.NotebookNode:
    """Run a notebook with papermill in a fresh kernel; the executed copy is written to out_path, even on failure.

    With `only_known`, parameters the notebook does not declare are left out, so one set of
    parameters (e.g. the preset) can be offered to every notebook. `widgets` is False unless given.
    """
    # headless: no front end draws a widget, and nbclient can hang on a cell whose widget captures output
    # (jupyter/nbclient#312); a notebook that declares `widgets` draws its figure once instead
    params = {k: literal(v, k) for k, v in {"widgets": False, **(parameters or {})}.items()}
    if only_known:
        known = set(parameter_names(nbformat.read(path, as_version=4)))
        params = {k: v for k, v in params.items() if k in known}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    return papermill.execute_notebook(str(path), str(out_path), parameters=params, kernel_name="python3",
                                      cwd=str(cwd or Path(path).parent), progress_bar=progress,
                                      execution_timeout=timeout)
