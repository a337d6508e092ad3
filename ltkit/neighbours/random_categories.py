"""RD, the paper's random-category baseline, as a neighbour backend: random names from a vocabulary.

It proposes, for each target class, names drawn at random from a candidate vocabulary (a names
file, a taxonomy or iNat categories file, WordNet's nouns, or the built-in world's classes), so the
search's leak filter drops any name in the label set, its budget applies, and it writes the same
`neighbours.csv` as the neighbour (SD) search. Crawl and trainer then use it exactly like SD's:

    python -m ltkit neighbours --config configs/imagenet-lt.yaml neighbours.backend=random \\
        neighbours.file=names.txt
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ltkit.neighbours.backends import Answer
from ltkit.errors import UserError
from ltkit.io import read_json
from ltkit.data.taxonomy import Taxonomy


def read_vocabulary(source: str | os.PathLike) -> list[str]:
    """Candidate names, in file order without repeats.

    `wordnet`: every WordNet noun (first lemma of each synset, via nltk). A `.json` file: a taxonomy
    file's classes, or iNat's categories (a list of objects with a `name`, or {"categories": [...]}).
    Any other file: one name per line; blank lines and `#` comments are skipped.
    """
    if str(source) == "wordnet":
        return _wordnet_nouns()
    path = Path(source)
    if not path.is_file():
        raise UserError(f"vocabulary file not found: {path}")
    if path.suffix.lower() == ".json":
        obj = read_json(path, "vocabulary file")
        if isinstance(obj, dict) and "classes" in obj:
            names = Taxonomy.from_json(path).classes
        else:
            cats = obj.get("categories") if isinstance(obj, dict) else obj
            if not isinstance(cats, list):
                raise UserError(f"{path}: expected a taxonomy file ({{\"classes\": ...}}) or a list of categories")
            for i, c in enumerate(cats):
                if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
                    raise UserError(f"{path}: categories[{i}]: expected an object with a non-empty 'name'")
            names = [c["name"] for c in cats]
    else:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    names = list(dict.fromkeys(n.strip() for n in names))
    if not names:
        raise UserError(f"{path}: the vocabulary is empty")
    return names


def _wordnet_nouns() -> list[str]:
    """First lemma of every WordNet noun synset, underscores as spaces."""
    try:
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
    except (ImportError, LookupError):
        raise UserError("neighbours.file=wordnet needs nltk and its WordNet data "
                        "(python -c \"import nltk; nltk.download('wordnet')\" where there is internet)") from None
    return list(dict.fromkeys(s.lemma_names()[0].replace("_", " ") for s in wn.all_synsets("n")))


class RandomBackend:
    """Random categories from a vocabulary, a seeded draw per class (the leak filter drops label-set names)."""

    name = "random"
    template = ""

    def __init__(self, vocabulary: Sequence[str], seed: int = 0, overfetch: int = 3, source: str = "") -> None:
        # overfetch: names in the label set or already taken by another class are dropped by the
        # search's filter, and the budget should still fill
        self.vocabulary, self.seed, self.overfetch = list(vocabulary), seed, overfetch
        digest = hashlib.sha256("\n".join(self.vocabulary).encode()).hexdigest()[:12]
        self.model = f"random-{Path(source).name if source else 'vocabulary'}-{digest}"
        self.params = {"seed": seed, "overfetch": overfetch}

    def __repr__(self) -> str:
        return f"RandomBackend({len(self.vocabulary)} names, seed={self.seed}, overfetch={self.overfetch})"

    def prompt(self, class_name: str, k: int) -> str:
        """What is asked, for the cache record."""
        return f"{k * self.overfetch} random names for {class_name!r}"

    def propose(self, class_name: str, k: int) -> Answer:
        """Up to k * overfetch names, seeded by (seed, class name): independent of the order classes are asked in."""
        h = int.from_bytes(hashlib.sha256(class_name.encode()).digest()[:4], "little")
        n = min(k * self.overfetch, len(self.vocabulary))
        idx = np.random.default_rng([self.seed, h]).choice(len(self.vocabulary), size=n, replace=False)
        names = [self.vocabulary[i] for i in idx]
        warn = "" if len(names) >= k else f"the vocabulary has only {len(names)} names"
        return Answer(class_name, k, names, "\n".join(names), self.name, self.model, self.prompt(class_name, k),
                      warning=warn)
