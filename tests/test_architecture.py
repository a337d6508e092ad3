"""The floor plan of docs/ARCHITECTURE.md, checked: no import cycles, every arrow down or sideways, stages apart.

Files are rooms and imports are arrows (module-level and function-level alike). A new module must be
given a floor here and in the document.
"""
import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = [  # (name, module prefixes), bottom first; the longest matching prefix decides
    ("words and plumbing", ["ltkit", "ltkit.words", "ltkit.errors", "ltkit.io", "ltkit.paths", "ltkit.rng",
                            "ltkit.viz.style", "ltkit.viz.catalogue"]),
    ("config", ["ltkit.config"]),
    ("data", ["ltkit.data", "ltkit.world", "ltkit.render", "ltkit.budget"]),
    ("artifacts", ["ltkit.artifacts"]),
    ("learning", ["ltkit.models", "ltkit.backbone", "ltkit.cifar_resnet", "ltkit.augment", "ltkit.features",
                  "ltkit.pretrain", "ltkit.encoder", "ltkit.loader", "ltkit.losses", "ltkit.sampling", "ltkit.evaluate"]),
    ("figures", ["ltkit.viz"]),
    ("stages", ["ltkit.neighbours", "ltkit.crawl", "ltkit.curate", "ltkit.auxiliary", "ltkit.train", "ltkit.pilot"]),
    ("runners", ["ltkit.pipeline", "ltkit.paired", "ltkit.report", "ltkit.demo", "ltkit.notebooks", "ltkit.cli", "ltkit.__main__",
                 "ltkit.pilot.__main__", "ltkit.viz.runs"]),
]
STAGES = {"ltkit.neighbours": "neighbours", "ltkit.crawl": "crawl", "ltkit.curate": "curate",
          "ltkit.auxiliary": "train", "ltkit.train": "train", "ltkit.pilot": "pilot"}
EXCEPTIONS: dict[tuple[str, str], str] = {}  # (from, to): why. Empty unless the document names the exception.


def _longest(mod: str, table: dict[str, object]):
    hits = [p for p in table if mod == p or mod.startswith(p + ".")]
    return table[max(hits, key=len)] if hits else None


def floor(mod: str) -> int:
    """The floor of a module (index into FLOORS)."""
    f = _longest(mod, {p: i for i, (_, prefixes) in enumerate(FLOORS) for p in prefixes if p != "ltkit"})
    return 0 if mod == "ltkit" else f


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    out = {}
    for p in (ROOT / "ltkit").rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def arrows() -> set[tuple[str, str]]:
    """(importer, imported module) for every ltkit import anywhere in a file, resolved to modules."""
    mods, out = modules(), set()
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: not an import at run time
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ltkit"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.add((name, sub if sub in mods else node.module))
            elif isinstance(node, ast.Import):
                out |= {(name, a.name) for a in node.names if a.name.startswith("ltkit")}
    return {(a, b) for a, b in out if a != b}


def test_every_module_has_a_floor():
    assert [m for m in modules() if floor(m) is None] == []


def test_no_arrow_points_up_or_from_one_stage_into_another():
    up = sorted((a, b) for a, b in arrows() if floor(b) > floor(a) and (a, b) not in EXCEPTIONS)
    cross = sorted((a, b) for a, b in arrows()
                   if _longest(a, STAGES) and _longest(b, STAGES) and _longest(a, STAGES) != _longest(b, STAGES))
    assert up == [] and cross == []


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for a, b in arrows():
        graph.setdefault(a, set()).add(b)
    seen, stack = set(), set()

    def visit(n, path):
        assert n not in stack, " -> ".join(path + [n])
        if n in seen:
            return
        stack.add(n)
        for m in graph.get(n, ()):
            visit(m, path + [n])
        stack.discard(n)
        seen.add(n)

    for n in list(graph):
        visit(n, [])


def test_no_package_holds_a_fifth_of_the_code():
    lines = Counter()
    for name, path in modules().items():
        parts = name.split(".")
        lines[parts[1] if len(parts) > 2 or path.name == "__init__.py" and len(parts) > 1 else "(modules)"] += \
            len(path.read_text().splitlines())
    total = sum(lines.values())
    assert max(v for k, v in lines.items() if k != "(modules)") < 0.2 * total, lines
