"""Class names as text: comparison keys (`name_key`) and names parsed out of free LLM answers.

`name_key` is the one notion of "the same name" in ltkit: the leak filter, the neighbour map and the
caption filter all compare names through it.
"""
from __future__ import annotations

import re

from ltkit.taxonomy import normalise


def singular(word: str) -> str:
    """Crude English singular, only for comparing names ('Sedans' == 'sedan', 'berries' == 'berry')."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def name_key(name: str) -> str:
    """Comparison key: `normalise` plus a singular last word."""
    words = normalise(name).split()
    return " ".join(words[:-1] + [singular(words[-1])]) if words else ""


_MARKER = re.compile(r"(?i)\bresponse\s*:")
_NEXT_BLOCK = re.compile(r"(?im)^\s*(?:query|task)\s*:")
_BULLET = re.compile(r"^\s*(?:[-*•·‣◦+–—>]+|\(?\d{1,3}\s*[.):\]]|#+)\s*")
_INLINE_NUMBER = re.compile(r"\s+(?=\(?\d{1,2}[.)]\s)")
_DESCRIPTION = re.compile(r"\s+[-–—]\s+|:\s")
_PAREN = re.compile(r"\s*\([^)]*\)")
_QUOTES = "\"'`“”‘’«»*_"


def _clean_item(item: str) -> str:
    """One proposed name without numbering, bullets, markdown, quotes, descriptions or end punctuation."""
    s = _BULLET.sub("", item.strip())
    s = _DESCRIPTION.split(s, maxsplit=1)[0]
    s = _PAREN.sub("", s).strip().strip(_QUOTES + " ").rstrip(".,;:!?").strip(_QUOTES + " ")
    s = re.sub(r"(?i)^(?:and|or)\s+", "", s)
    return " ".join(s.split())


def parse_names(text: str | None, max_words: int = 6) -> list[str]:
    """Names from free LLM text: commas, lines, numbering, bullets, quotes, echoes; deduplicated by `name_key`."""
    text = (text or "").replace("\r", "")
    if re.match(r"(?i)\s*task\s*:", text):  # the whole prompt echoed back: the answer is after the last marker
        text = _MARKER.split(text)[-1]
    text = _NEXT_BLOCK.split(text)[0]  # a model continuing the in-context pattern: keep the first answer only
    text = _MARKER.split(text, maxsplit=1)[-1]  # an echoed "Response:" prefix, or a preamble before it
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # "Here are 5 categories related to X:"
        lines = lines[1:]
    out, seen = [], set()
    for line in lines:
        for chunk in _INLINE_NUMBER.split(line):
            for item in re.split(r"[,;]", chunk):
                name = _clean_item(item)
                key = name_key(name)
                # a sentence ("I hope this helps") is not a class name
                if key and key not in seen and len(name.split()) <= max_words:
                    seen.add(key)
                    out.append(name)
    return out



def drop_parentheses(name: str) -> str:
    """'crane (n02012849)' -> 'crane' (WordNet homonyms carry their synset in parentheses)."""
    return _PAREN.sub("", name)
