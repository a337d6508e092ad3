"""Class hierarchies: superclass at a level, siblings and cousins, synonyms.

A taxonomy stores, for every class name, its ancestor path from the root (coarsest) down to its
parent. Every source (the built-in world, CIFAR-100 coarse labels, iNat supercategories, a JSON
file, WordNet) is turned into that one shape, so the neighbour search and the granularity pilot
never care where the hierarchy came from.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ltkit.errors import UserError
from ltkit.io import atomic_write_text, read_json
from ltkit.words import normalise




@dataclass
class Taxonomy:
    """Ancestor paths (root first, parent last) for each class, plus optional synonyms."""

    paths: dict[str, tuple[str, ...]]
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paths = {c: tuple(p) for c, p in self.paths.items()}
        for c, p in self.paths.items():
            if not p:
                raise UserError(f"taxonomy: class {c!r} has an empty ancestor path")
        # a lone string is one synonym, not a sequence of one-letter synonyms
        self.synonyms = {c: (s,) if isinstance(s, str) else tuple(s) for c, s in self.synonyms.items()}

    @property
    def classes(self) -> list[str]:
        """All leaf class names, in insertion order."""
        return list(self.paths)

    def __contains__(self, name: str) -> bool:
        return name in self.paths

    def path(self, name: str) -> tuple[str, ...]:
        """Ancestor path of a class; a clear KeyError for an unknown class."""
        try:
            return self.paths[name]
        except KeyError:
            raise KeyError(f"taxonomy: unknown class {name!r}") from None

    def depth(self, name: str) -> int:
        """Number of ancestors above a class."""
        return len(self.path(name))

    def superclass(self, name: str, level: int = 0) -> str:
        """Ancestor at `level` (0 = coarsest); clamps to the parent for shallow classes."""
        p = self.path(name)
        return p[min(level, len(p) - 1)]

    def parent(self, name: str) -> str:
        """Immediate parent of a class."""
        return self.path(name)[-1]

    def superclasses(self, level: int = 0) -> list[str]:
        """Distinct superclasses at a level, in first-seen order."""
        return list(dict.fromkeys(self.superclass(c, level) for c in self.paths))

    def members(self, superclass: str, level: int = 0) -> list[str]:
        """Classes whose ancestor at `level` is `superclass`."""
        return [c for c in self.paths if self.superclass(c, level) == superclass]

    def siblings(self, name: str) -> list[str]:
        """Other classes with the same parent."""
        p = self.path(name)
        return [c for c, q in self.paths.items() if q == p and c != name]

    def cousins(self, name: str) -> list[str]:
        """Classes sharing the grandparent but not the parent (empty for two-level trees)."""
        p = self.path(name)
        if len(p) < 2:
            return []
        return [c for c, q in self.paths.items() if len(q) >= 2 and q[:-1] == p[:-1] and q[-1] != p[-1]]

    def names_of(self, name: str) -> tuple[str, ...]:
        """The class name and its synonyms."""
        return (name, *self.synonyms.get(name, ()))

    def subset(self, names: list[str]) -> "Taxonomy":
        """Restriction to some classes."""
        return Taxonomy({n: self.path(n) for n in names}, {n: self.synonyms[n] for n in names if n in self.synonyms})

    # --- sources -----------------------------------------------------------------------------

    @classmethod
    def from_parents(cls, parents: dict[str, str]) -> "Taxonomy":
        """Two-level taxonomy from a class -> superclass map (CIFAR coarse labels, iNat supercategories)."""
        return cls({c: (p,) for c, p in parents.items()})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Taxonomy":
        """Read `{"classes": {name: [root, ..., parent]}, "synonyms": {name: [...]}}`."""
        path = Path(path)
        obj = read_json(path, "taxonomy file")
        if not isinstance(obj, dict) or not isinstance(obj.get("classes"), dict):
            raise UserError(f"{path}: expected an object with a 'classes' mapping of name -> ancestor list")
        for name, anc in obj["classes"].items():
            if isinstance(anc, str):
                anc = [anc]
            if not isinstance(anc, list) or not anc or not all(isinstance(a, str) for a in anc):
                raise UserError(f"{path}: classes[{name!r}]: expected a non-empty list of ancestor names")
            obj["classes"][name] = anc
        syn = obj.get("synonyms", {})
        if not isinstance(syn, dict):
            raise UserError(f"{path}: 'synonyms' must map a class name to a list of names")
        for name, names in syn.items():
            if name not in obj["classes"]:
                raise UserError(f"{path}: synonyms[{name!r}]: not a class of this taxonomy")
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise UserError(f"{path}: synonyms[{name!r}]: expected a list of names")
            syn[name] = names
        return cls(obj["classes"], syn)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the JSON form that `from_json` reads (atomically)."""
        obj = {"classes": {c: list(p) for c, p in self.paths.items()},
               "synonyms": {c: list(s) for c, s in self.synonyms.items()}}
        atomic_write_text(path, json.dumps(obj, indent=1))

    @classmethod
    def from_wordnet(cls, wnids: list[str], data_dir: str | os.PathLike | None = None) -> "Taxonomy":
        """Hypernym paths of ImageNet wnids through nltk's WordNet 3.0 (needs its data installed)."""
        try:
            import nltk
            from nltk.corpus import wordnet as wn
        except ImportError:
            raise RuntimeError("WordNet taxonomy needs nltk: pip install nltk") from None
        if data_dir is not None and str(data_dir) not in nltk.data.path:
            nltk.data.path.insert(0, str(data_dir))
        try:
            wn.ensure_loaded()
        except LookupError:
            raise RuntimeError(
                "WordNet data not found. Install it where nltk looks (NLTK_DATA or ~/nltk_data) as "
                "corpora/wordnet/, e.g. python -c \"import nltk; nltk.download('wordnet')\" on a machine "
                "with internet, or pass data_dir=") from None
        synsets = []
        for wnid in wnids:
            if len(wnid) < 2 or wnid[0] != "n" or not wnid[1:].isdigit():
                raise UserError(f"not an ImageNet wnid: {wnid!r} (expected 'n' and 8 digits)")
            s = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
            if s is None:
                raise UserError(f"wnid {wnid} is not in WordNet 3.0")
            synsets.append((wnid, s, [normalise(lemma) for lemma in s.lemma_names()]))
        # ImageNet has homonyms ("crane" the bird and the machine): each becomes "crane (<wnid>)"
        first = [lemmas[0] for _, _, lemmas in synsets]
        paths, syn = {}, {}
        for wnid, s, lemmas in synsets:
            name = lemmas[0] if first.count(lemmas[0]) == 1 else f"{lemmas[0]} ({wnid})"
            # the first hypernym path is the conventional one; drop the leaf itself
            paths[name] = tuple(normalise(h.lemma_names()[0]) for h in s.hypernym_paths()[0][:-1])
            syn[name] = tuple(lemmas[1:])
        return cls(paths, syn)
