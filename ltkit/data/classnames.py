"""Class-name files of the real benchmarks, in label order, and the rule for "the same class name".

Accepted lines (one class per line, label order; blank lines and `#` comments skipped):
  - a plain name, or ImageNet-style synonyms: `tabby, tabby cat`;
  - a WordNet id before the names (`LOC_synset_mapping.txt`, `synset_words.txt`): `n02123045 tabby, tabby cat`;
  - a Places365 category and its index (`categories_places365.txt`): `/a/apartment_building/outdoor 8`,
    read as `apartment building (outdoor)`; the index must equal the line's label.
A neighbour map's `target_name` matches a class when any synonym of one equals any synonym of the
other under `name_key` ('tabby' matches 'tabby, tabby cat').
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from ltkit.errors import UserError
from ltkit.words import name_key

_WNID = re.compile(r"^n\d{8}\s+(.+)$")
_PLACES = re.compile(r"^/[a-z]/(\S+)\s+(\d+)$")

# where the dataset loaders look for a class-name file, in this order, under splits_dir then data_root
CANDIDATES = {
    "imagenet-lt": ("classnames.txt", "ImageNet_LT_classnames.txt", "LOC_synset_mapping.txt", "synset_words.txt"),
    "places-lt": ("classnames.txt", "Places_LT_classnames.txt", "categories_places365.txt"),
}


def _places_name(category: str) -> str:
    """'apartment_building/outdoor' -> 'apartment building (outdoor)'."""
    head, *rest = category.split("/")
    return head.replace("_", " ") + "".join(f" ({r.replace('_', ' ')})" for r in rest)


def read_class_names(path: str | os.PathLike, num_classes: int | None = None) -> list[str]:
    """Class names in label order from a class-name file (formats in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {path}")
    names: list[str] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if (m := _PLACES.match(line)) is not None:
            if int(m.group(2)) != len(names):
                raise UserError(f"{path}: line {n}: index {m.group(2)} but this is class {len(names)}")
            name = _places_name(m.group(1))
        elif (m := _WNID.match(line)) is not None:
            name = m.group(1).strip()
        else:
            name = line
        key = name_key(name)
        if key in seen:
            raise UserError(f"{path}: line {n}: class name {name!r} repeats line {seen[key]}")
        seen[key] = n
        names.append(name)
    if not names:
        raise UserError(f"{path}: no class names")
    if num_classes is not None and len(names) != num_classes:
        raise UserError(f"{path}: {len(names)} class names, but the dataset has {num_classes} classes")
    return names


def find_class_names(dataset: str, *folders: str | os.PathLike | None) -> Path | None:
    """The first class-name file of `CANDIDATES[dataset]` in `folders` (skipping None), or None."""
    for folder in folders:
        for name in CANDIDATES.get(dataset, ()):
            if folder is not None and (Path(folder) / name).is_file():
                return Path(folder) / name
    return None


def synonyms(name: str) -> set[str]:
    """Comparison keys of every comma-separated synonym of a class name."""
    return {k for k in (name_key(s) for s in name.split(",")) if k}


def same_class(a: str, b: str) -> bool:
    """Whether two class names denote the same class: a shared synonym under `name_key`."""
    return name_key(a) == name_key(b) or bool(synonyms(a) & synonyms(b))


def check_target_names(rows: Sequence[tuple[int, int, str]], class_names: Sequence[str], where: str) -> None:
    """Every (line, target_id, target_name) row names class target_id; the first that does not is an error."""
    numeric = all(str(c) == str(i) for i, c in enumerate(class_names))
    for line, t, name in rows:
        if not same_class(name, class_names[t]):
            hint = (" (the dataset has no class names: put a class-name file next to its split files, see"
                    " ltkit.data.classnames)" if numeric else "; the map was written for another class list or order")
            raise UserError(f"{where}: line {line}: field target_name: {name!r} is not class {t} of the dataset,"
                             f" {class_names[t]!r}{hint}")
