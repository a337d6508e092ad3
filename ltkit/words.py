"""Words shared by every stage: what "the same class name" means, and whether a caption names a class.

`name_key` is the notion of "the same name" in ltkit: the neighbour search's duplicate check, the
neighbour map, the class-name files and the caption filter all compare names through it. The label-set
check is stricter (`same_label`: a proposal that is a target class in any spelling must never become an
auxiliary class). This module sits at the bottom of the package: of ltkit it imports only `errors`.
"""
from __future__ import annotations

import re

from ltkit.errors import UserError


def normalise(name: str) -> str:
    """Canonical form of a class name for comparisons: lower case, single spaces, no '_' or '-'."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


_PAREN = re.compile(r"\s*\([^)]*\)")


def drop_parentheses(name: str) -> str:
    """'crane (n02012849)' -> 'crane' (WordNet homonyms carry their synset in parentheses)."""
    return _PAREN.sub("", name)


# ---------------------------------------------------------------------------------------------
# singular forms, for comparison keys

_INVARIANT = frozenset(
    "species series news means corps chassis swiss lens canvas gas atlas bus iris axis aircraft spacecraft hovercraft "
    "sheep deer fish moose bison salmon trout offspring headquarters mathematics physics economics athletics "
    "gymnastics billiards measles mumps scissors trousers tweezers pliers binoculars jeans shorts pants".split())
_IRREGULAR = {"mice": "mouse", "geese": "goose", "children": "child", "people": "person", "teeth": "tooth",
              "feet": "foot", "oxen": "ox", "lice": "louse", "dice": "die", "buses": "bus", "gases": "gas",
              "lenses": "lens", "canvases": "canvas", "atlases": "atlas", "irises": "iris", "axes": "axe"}
_F_PLURALS = frozenset("wolf knife leaf loaf half shelf calf wife life thief sheaf elf scarf hoof dwarf wharf".split())
_O_PLURALS = frozenset("potato tomato hero mango volcano mosquito echo torpedo buffalo domino tornado".split())


def singular(word: str) -> str:
    """English singular of one lower-case word, for comparing names ('houses' -> 'house', 'boxes' -> 'box').

    Suffix rules with small exception lists: invariant words ('species', 'bus', 'glass'), irregular
    plurals ('mice'), -ves of -f/-fe words ('wolves'), -oes of -o words ('potatoes', but 'shoes').
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _INVARIANT or len(word) <= 3 or word.endswith(("ss", "us", "is", "ics")):
        return word
    if word.endswith("men") and len(word) > 4:  # firemen, women
        return word[:-3] + "man"
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ves"):
        for stem in (word[:-3] + "f", word[:-3] + "fe"):
            if stem in _F_PLURALS or stem.split()[-1] in _F_PLURALS:
                return stem
    if word.endswith("oes") and word[:-2] in _O_PLURALS:
        return word[:-2]
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith("uses") and not word.endswith("ouses"):  # octopuses, viruses (houses, blouses: -e)
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def name_key(name: str) -> str:
    """Comparison key: `normalise` plus a singular last word."""
    words = normalise(name).split()
    return " ".join(words[:-1] + [singular(words[-1])]) if words else ""


# ---------------------------------------------------------------------------------------------
# the label set: a stricter notion of "the same class" for what must never be an auxiliary class

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def label_variants(name: str, max_words: int = 6) -> frozenset[str]:
    """Every spelling-free key of a name: camel case split ('SportsCar'), case, spaces, '-' and '_' dropped,
    and each word either as written or singular ('Sport Car', 'sports-cars' and 'sports car' share 'sportcar').

    Two names are the same label when their variants meet (`same_label`). Each word may or may not be
    singularised (2^words keys, all-or-none past `max_words`) because a join hides the word boundaries
    that `singular` needs: 'sportscar' meets 'sports car' only as written.
    """
    words = normalise(_CAMEL.sub(" ", name)).split()
    if not words:
        return frozenset()
    if len(words) > max_words:
        return frozenset({"".join(words), "".join(singular(w) for w in words)})
    keys = [""]
    for w in words:
        keys = [k + v for k in keys for v in {w, singular(w)}]
    return frozenset(keys)


def same_label(a: str, b: str) -> bool:
    """Whether two names differ only by plurals of any word, spacing, hyphens, case or camel case."""
    return bool(label_variants(a) & label_variants(b))


# ---------------------------------------------------------------------------------------------
# captions: the caption filter and the pool search match names the same way

CAPTION_MODES = ("phrase", "words", "off")


def caption_words(text: str) -> list[str]:
    """Caption or name as comparison words: punctuation to spaces, then `name_key` on each word."""
    return [name_key(w) for w in re.sub(r"[^\w\s]|_", " ", text).split()]


def caption_match(caption: str, name: str, mode: str = "phrase") -> bool:
    """Whether a caption names a class: the whole phrase in order, all its words anywhere, or always (off)."""
    if mode == "off":
        return True
    words, want = caption_words(caption or ""), caption_words(name)
    if not want:
        return False
    if mode == "words":
        return set(want) <= set(words)
    if mode == "phrase":
        n = len(want)
        return any(words[i:i + n] == want for i in range(len(words) - n + 1))
    raise UserError(f"caption mode {mode!r}: expected one of {', '.join(CAPTION_MODES)}")
