"""The figures folder's catalogue: each figure with the numbers that produced it and one sentence.

Notebooks run in separate kernels, so each one records its figures in `<folder>/catalogue.json`
(read-modify-write, atomic; the main job runs notebooks one after another). `write_readme` then
renders `<folder>/README.md` from it. Nothing time-dependent goes in, so an unchanged figure keeps
an unchanged entry.
"""
from __future__ import annotations

import os
from pathlib import Path

from ltkit.io import atomic_write_text, read_json, write_json

CATALOGUE = "catalogue.json"


def record(folder: str | os.PathLike, name: str, sentence: str, numbers: str = "", source: str = "",
           order: float | None = None) -> dict:
    """Add or replace a figure's entry: `sentence` says what it shows, `numbers` (Markdown) what produced it."""
    if not sentence.strip():
        raise ValueError(f"figure {name!r}: say in one sentence what it shows")
    path = Path(folder) / CATALOGUE
    entries = read_json(path, "figure catalogue") if path.exists() else {}
    entry = dict(name=name, sentence=sentence.strip(), numbers=numbers.strip(), source=source,
                 order=order if order is not None else entries.get(name, {}).get("order", len(entries)))
    entries[name] = entry
    write_json(path, dict(sorted(entries.items(), key=lambda kv: (kv[1]["order"], kv[0]))))
    return entry


def write_readme(folder: str | os.PathLike, title: str = "Figures", intro: str = "") -> Path:
    """Render `<folder>/README.md`: every catalogued figure that exists, then any uncatalogued ones."""
    folder = Path(folder)
    path = folder / CATALOGUE
    entries = read_json(path, "figure catalogue") if path.exists() else {}
    lines = [f"# {title}", ""]
    if intro:
        lines += [intro.strip(), ""]
    shown = set()
    for e in sorted(entries.values(), key=lambda e: (e["order"], e["name"])):
        png = folder / f"{e['name']}.png"
        if not png.exists():
            continue
        shown.add(png.name)
        lines += [f"## {e['name']}", "", f"![{e['name']}]({png.name})", "", e["sentence"], ""]
        if e["numbers"]:
            lines += [e["numbers"], ""]
        files = ", ".join(f"`{e['name']}.{x}`" for x in ("pdf", "png") if (folder / f"{e['name']}.{x}").exists())
        lines += [f"Files: {files}" + (f"; made by {e['source']}." if e["source"] else "."), ""]
    rest = sorted(p.name for p in folder.glob("*.png") if p.name not in shown)
    if rest:
        lines += ["## Other figures in this folder", "", "Drawn by other steps without a catalogue entry:", ""]
        lines += [f"- [{n}]({n})" for n in rest] + [""]
    out = folder / "README.md"
    atomic_write_text(out, "\n".join(lines))
    return out
