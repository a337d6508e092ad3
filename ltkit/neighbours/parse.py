"""Names parsed out of free LLM answers (comparison keys live in `ltkit.words`).

`parse_answer` reads what real chat models send back: reasoning blocks (`<think>...</think>`), a
preamble ending in a colon, echoes of the prompt's `Query:` / `Response:` lines, markdown, numbered
or bulleted lists, a sentence of explanation after the list, refusals, and copies of the prompt's
own worked example. Prose never becomes a name: it is dropped and a note says what was dropped.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ltkit.words import drop_parentheses, name_key

# ---------------------------------------------------------------------------------------------
# reading answers

_THINK = re.compile(r"(?is)<(think|thinking|reasoning|reflection)>.*?</\1>")
_THINK_OPEN = re.compile(r"(?is)<(think|thinking|reasoning|reflection)>")
_MARKER = re.compile(r"(?i)\bresponse\s*:")
_QUERY_LINE = re.compile(r"(?im)^\s*\**\s*query\s*:\**.*$")
_NEXT_BLOCK = re.compile(r"(?im)^\s*\**\s*(?:query|task)\s*:")
_FENCE = re.compile(r"(?m)^\s*```\w*\s*$")
_HEADER = re.compile(r"^\s*#{1,6}\s")
_BULLET = re.compile(r"^\s*(?:[-*•·‣◦+–—>]+|\(?\d{1,3}\s*[.):\]]|#+)\s*")
_INLINE_NUMBER = re.compile(r"\s+(?=\(?\d{1,2}[.)]\s)")
_SENTENCE_END = re.compile(r"(?<=[^\s.])[.!?]\s+(?=[A-Z][a-z])")
_ABBREVIATION = re.compile(r"(?i)(?:^|\s)(?:st|mt|dr|mr|mrs|ms|ft|jr|sr|no|vs|var|ssp|subsp|sp|cf|e\.g|i\.e)$")
_DESCRIPTION = re.compile(r"\s+[-–—]\s+|:\s")
_QUOTES = "\"'`“”‘’«»*_"
_REFUSAL = re.compile(
    r"(?i)\b(?:i'?m sorry|i am sorry|i apologi[sz]e|i can(?:'|no)?t|i am unable|i'?m unable|i'?m not able|"
    r"i am not able|as an ai|as a language model|i do(?:n'|n)?o?t (?:have|know)|not familiar with|"
    r"unable to (?:provide|help|assist|find)|no (?:known|such) (?:fine-grained )?(?:categor|class))")
# words that make an item a sentence rather than a class name ("These are all types of towers"): one
# strong word in two or more words, or two of either in three or more
_PROSE_STRONG = frozenset(
    "i i'm i'd i've you your we these those they them are is was were sorry please hope cannot can't don't "
    "here following categories examples provided".split())
_PROSE_WEAK = frozenset("this it its be been being am can could would should will include includes including "
                        "related given note let me class classes category our their all".split())
_FILLER = frozenset(("sure", "certainly", "of course", "okay", "ok", "yes", "none", "n/a", "here you go"))
_JSON_KEYS = ("names", "categories", "classes", "items")
_LABELS = frozenset("answer answers categories classes names output result results list neighbours neighbors".split())
_COMMENT = re.compile(r"(?i)^[\W_]*(?:notes?|nb|disclaimer|explanation|caveat|remarks?)[\W_]*:")


@dataclass
class ParsedAnswer:
    """Names read from an answer, and what was dropped on the way (each note says why)."""

    names: list[str]
    notes: list[str] = field(default_factory=list)
    refusal: bool = False


def template_example(template: str | None) -> tuple[str, list[str]] | None:
    """The worked example of a `Query: ... Response: ...` template: (query, names), or None."""
    if not template:
        return None
    m = re.search(r"(?is)query\s*:\s*(.+?)\s*response\s*:\s*(.+?)\s*(?:\n\s*\n|query\s*:|$)", template)
    if not m or "{CLS}" in m.group(1):
        return None
    return m.group(1).strip(), [n.strip() for n in m.group(2).split(",") if n.strip()]


def _clean_item(item: str) -> str:
    """One proposed name without numbering, bullets, markdown, quotes, descriptions or end punctuation."""
    s = _BULLET.sub("", item.strip())
    s = _DESCRIPTION.split(s, maxsplit=1)[0]
    s = drop_parentheses(s).strip().strip(_QUOTES + " ").rstrip(".,;:!?").strip(_QUOTES + " ")
    s = re.sub(r"(?i)^(?:and|or)\s+", "", s)
    return " ".join(s.split())


def _is_prose(name: str, max_words: int) -> bool:
    """A sentence, not a class name: too long, or it has words no class name has ('are', 'I', 'these')."""
    words = re.findall(r"[a-z'\-/]+", name.lower())
    strong = sum(w in _PROSE_STRONG for w in words)
    either = strong + sum(w in _PROSE_WEAK for w in words)
    return (len(name.split()) > max_words or (strong and len(words) >= 2) or (either >= 2 and len(words) >= 3)
            or " ".join(words) in _FILLER)


def json_names(text: str) -> list[str] | None:
    """Names of a JSON answer (a list, or an object with a 'names' list), or None when it is not JSON."""
    s = text.strip()
    if not s.startswith(("[", "{")):
        return None
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    if isinstance(obj, dict):
        obj = next((obj[k] for k in _JSON_KEYS if isinstance(obj.get(k), list)), None)
    if not isinstance(obj, list):
        return None
    return [str(x) for x in obj if isinstance(x, (str, int, float))]


def _sentences(text: str) -> list[str]:
    """Split at '. X' sentence ends, but not after abbreviations ('St. Bernard', 'var. alba')."""
    out: list[str] = []
    last = 0
    for m in _SENTENCE_END.finditer(text):
        if not _ABBREVIATION.search(text[last:m.start() + 1].rstrip(".!?")):
            out.append(text[last:m.start() + 1])
            last = m.end()
    return out + [text[last:]]


def _strip_wrapping(text: str, notes: list[str]) -> str:
    """Reasoning blocks, code fences, an echoed prompt, a `Query:` echo and the `Response:` marker."""
    if _THINK.search(text):
        text = _THINK.sub("\n", text)
        notes.append("reasoning block removed")
    if (m := _THINK_OPEN.search(text)) is not None:  # opened and never closed: cut off while thinking
        text = text[:m.start()]
        notes.append("unfinished reasoning block dropped (the answer may need a larger max_tokens)")
    text = _FENCE.sub("\n", text)
    if re.match(r"(?i)\s*task\s*:", text):  # the whole prompt echoed back: the answer is after the last marker
        text = _MARKER.split(text)[-1]
    head = _QUERY_LINE.match(text)
    if head is not None:  # an echoed "Query: <class>" line before the answer
        text = text[head.end():]
    text = _NEXT_BLOCK.split(text)[0]  # a model continuing the in-context pattern: keep the first answer only
    return _MARKER.split(text, maxsplit=1)[-1]  # an echoed "Response:" prefix, or a preamble before it


def _drop_preamble(lines: list[str]) -> list[str]:
    """'Here are 5 categories related to X:' on its own line, or before the list on the same line."""
    if not lines:
        return lines
    first = lines[0]
    if first.endswith(":") and (len(lines) > 1 or _is_prose(first, 6)):
        return lines[1:]
    before, sep, after = first.partition(": ")
    if sep and after.strip() and (_is_prose(before, 3) or before.strip(_QUOTES + "# ").lower() in _LABELS):
        return [after] + lines[1:]
    return lines


def _items(lines: list[str], split: bool = True):
    """Candidate names: each line split at inline numbers, commas and sentence ends (whole items when not split)."""
    for line in lines:
        if not split:
            yield line
            continue
        for chunk in _INLINE_NUMBER.split(line):
            for item in re.split(r"[,;]", chunk):
                yield from _sentences(_BULLET.sub("", item.strip()))


def parse_answer(text: str | None, max_words: int = 6, class_name: str | None = None,
                 template: str | None = None) -> ParsedAnswer:
    """Names from a free LLM answer, deduplicated by `name_key`; refusals, prose and copied examples noted, not kept.

    With `template`, names copied from its worked example are dropped when most of the answer is
    that example and the class shares no word with it (a lighthouse answered "sedan, SUV").
    """
    notes: list[str] = []
    text = _strip_wrapping((text or "").replace("\r", ""), notes)
    listed = json_names(text)
    lines = listed if listed is not None else _drop_preamble(
        [ln.strip() for ln in text.split("\n") if ln.strip() and not _HEADER.match(ln)])
    refusals = []
    if listed is None:  # a refusal is a sentence, commas and all ("Unfortunately, I don't know X.")
        for i, line in enumerate(lines):
            if _REFUSAL.search(line):
                parts = _sentences(line)
                refusals += [p.strip() for p in parts if _REFUSAL.search(p)]
                lines[i] = " ".join(p for p in parts if not _REFUSAL.search(p))
    out, seen = [], set()
    prose = [ln for ln in lines if listed is None and _COMMENT.match(ln)]  # "Note: ..." is about the answer
    for part in _items([ln for ln in lines if ln not in prose], split=listed is None):
        name = _clean_item(part)
        key = name_key(name)
        if not key or key in seen:
            continue
        if _is_prose(name, max_words):
            prose.append(name)
            continue
        seen.add(key)
        out.append(name)
    for what, texts in (("refusal", refusals), ("prose", prose)):
        if texts:
            shown = "; ".join(p if len(p) <= 60 else p[:57] + "..." for p in texts[:2])
            notes.append(f"{what} dropped: {shown!r}")
    example = template_example(template)
    if example and out:
        query, ex_names = example
        ex_keys = {name_key(n) for n in ex_names}
        copied = [n for n in out if name_key(n) in ex_keys]
        cls_words = set(name_key(class_name or "").split())
        ex_words = {w for n in ex_names + [query] for w in name_key(n).split()}
        if len(copied) >= 2 and 2 * len(copied) >= len(out) and not cls_words & ex_words:
            out = [n for n in out if name_key(n) not in ex_keys]
            notes.append(f"copy of the prompt's example answer dropped ({', '.join(copied)})")
    return ParsedAnswer(out, notes, bool(refusals) and not out)


def parse_names(text: str | None, max_words: int = 6) -> list[str]:
    """Names from free LLM text (see `parse_answer`): commas, lines, numbering, bullets, quotes, echoes."""
    return parse_answer(text, max_words).names
