"""Execute the numbered notebooks headless, with parameters injected after the `parameters` cell.

Same convention as papermill (a cell tagged `parameters` holds the defaults; an inserted cell tagged
`injected-parameters` overrides them), done with nbclient directly so the tests and the main job
need nothing more than a kernel.
"""
from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path
from typing import Any

import nbformat

from ltkit.io import atomic_write_text

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


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


def inject_parameters(nb: nbformat.NotebookNode, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """Insert an `injected-parameters` cell after the `parameters` cell (or first, if none)."""
    src = "# injected by ltkit.notebooks\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]})
    at = next((i + 1 for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), 0)
    nb.cells.insert(at, cell)
    return nb


def execute(path: str | os.PathLike, out_path: str | os.PathLike | None = None, parameters: dict | None = None,
            cwd: str | os.PathLike | None = None, timeout: int = 3600, only_known: bool = True) -> nbformat.NotebookNode:
    """Run a notebook with a fresh kernel; the executed copy is written to out_path even on failure.

    With `only_known`, parameters the notebook does not declare are left out, so one set of
    parameters (e.g. the preset) can be offered to every notebook.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    params = dict(parameters or {})
    if only_known:
        known = set(parameter_names(nb))
        params = {k: v for k, v in params.items() if k in known}
    if params:
        inject_parameters(nb, params)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or Path(path).parent)}})
    try:
        client.execute()
    finally:
        if out_path is not None:
            atomic_write_text(out_path, nbformat.writes(nb))
    return nb


def run_all(parameters: dict, out_dir: str | os.PathLike, cwd: str | os.PathLike,
            folder: str | os.PathLike = NOTEBOOK_DIR) -> list[dict]:
    """Execute every numbered notebook in order; returns name and seconds for each."""
    done = []
    for nb_path in numbered_notebooks(folder):
        t = time.time()
        print(f"[notebooks] running {nb_path.name} ...", flush=True)
        execute(nb_path, Path(out_dir) / nb_path.name, parameters, cwd)
        done.append({"notebook": nb_path.name, "seconds": round(time.time() - t, 1)})
        print(f"[notebooks] {nb_path.name} done in {done[-1]['seconds']}s", flush=True)
    return done
