"""The paper's tables and ablation figure from saved runs: Tab. 2 / 6 and Fig. 5's numbers in Markdown and LaTeX.

Input is what `report.compare` returns, {row name: [result per seed]}, each result carrying its
`recipe` (auxiliary data, loss, classifier) so every printed row states how it was produced.
LaTeX uses booktabs (\\toprule, \\midrule, \\bottomrule) and the paper's arrows for changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ltkit.viz.style import PALETTE, SHOT_COLOURS, WIDTHS, house_style

# how a table names a row: its recipe components, with words for the auxiliary data
RECIPE_KEYS = ("aux", "loss", "classifier")
AUX_LABELS = {"none": "none", "random": "random categories (RD)", "neighbours": "neighbour categories (SD)",
              "random-disjoint": "random categories disjoint from SD",
              "neighbours-shuffled": "neighbour categories, shuffled parents"}


def recipe_label(over: dict) -> str:
    """`aux / loss / classifier` of a row (and any other key it sets, in brackets), as the tables print it."""
    extra = ", ".join(f"{k}={v}" for k, v in over.items() if k not in RECIPE_KEYS)
    label = f"{AUX_LABELS.get(over['aux'], over['aux'])} / {over['loss']} / {over['classifier']}"
    return label + (f" ({extra})" if extra else "")

TAB2_COLUMNS = ("overall", "many", "medium", "few")   # the paper's Tab. 2 order
TAB6_COLUMNS = ("many", "medium", "few", "overall")   # the paper's Tab. 6 order
HEADERS = {"overall": "Overall", "many": "Many", "medium": "Med.", "few": "Few"}


@dataclass
class Row:
    """One printed row: name, recipe text, and per column (mean %, std %, change or None)."""

    name: str
    recipe: str
    cells: dict[str, tuple[float, float, float | None]]
    seeds: int


def _stats(results: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample std over seeds, in percent."""
    v = np.array([r[key] for r in results], float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def recipe_text(results: list[dict]) -> str:
    """`aux / loss / classifier` of a row, from the recipe its results carry."""
    r = results[0].get("recipe") if results else None
    if r is None:
        raise ValueError("result without a 'recipe' (aux, loss, classifier): re-run it with report.run_method")
    return recipe_label(r)


def table_rows(results: dict[str, list[dict]], columns: Sequence[str] = TAB2_COLUMNS, baseline: str | None = None,
               previous: bool = False) -> list[Row]:
    """Rows with the change against `baseline` (or, with `previous`, against the row above)."""
    names, rows = list(results), []
    for i, name in enumerate(names):
        ref = names[i - 1] if previous and i > 0 else (baseline if baseline in results and name != baseline else None)
        cells = {}
        for c in columns:
            m, s = _stats(results[name], c)
            cells[c] = (m, s, None if ref is None else m - _stats(results[ref], c)[0])
        rows.append(Row(name, recipe_text(results[name]), cells, len(results[name])))
    return rows


def _cell(m: float, s: float, d: float | None, seeds: int, latex: bool) -> str:
    pm = (r" $\pm$ " if latex else " ± ") + f"{s:.1f}" if seeds > 1 else ""
    if d is None:
        return f"{m:.1f}{pm}"
    if latex:
        arrow = r"$\uparrow$" if d >= 0 else r"$\downarrow$"
        return f"{m:.1f}{pm} {{\\scriptsize {arrow}{abs(d):.1f}}}"
    return f"{m:.1f}{pm} ({d:+.1f})"


def markdown(rows: list[Row], columns: Sequence[str] = TAB2_COLUMNS) -> str:
    """A Markdown table: method, recipe (aux data / loss / classifier), then the accuracy columns."""
    head = "| method | aux data / loss / classifier | " + " | ".join(HEADERS[c] for c in columns) + " |\n"
    head += "|---|---|" + "---|" * len(columns) + "\n"
    return head + "".join(f"| {r.name} | {r.recipe} | " + " | ".join(_cell(*r.cells[c], r.seeds, False)
                                                                   for c in columns) + " |\n" for r in rows)


def _tex(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace("_", r"\_")


def _booktabs(first: str, columns: Sequence[str], body: list[str], caption: str, label: str) -> str:
    """A booktabs table environment: two text columns (`first` names them), then right-aligned accuracies."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{ll" + "r" * len(columns) + "}", r"\toprule",
             first + " & " + " & ".join(HEADERS[c] for c in columns) + r" \\", *body, r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + _tex(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def latex(rows: list[Row], columns: Sequence[str] = TAB2_COLUMNS, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table (needs \\usepackage{booktabs}); the recipe is its own column."""
    body = [r"\midrule"] + [f"{_tex(r.name)} & {_tex(r.recipe)} & "
                            + " & ".join(_cell(*r.cells[c], r.seeds, True) for c in columns) + r" \\" for r in rows]
    return _booktabs("Method & Aux. data / loss / classifier", columns, body, caption, label)


# ---------------------------------------------------------------------------------------------
# Fig. 5: one panel per curated setting


def ablation_figure(ablations: dict[str, dict], defaults: dict | None = None, titles: dict | None = None):
    """Overall / Many / Medium / Few against each setting's values; the default value is marked.

    `ablations` is {setting: {value: [results per seed]}} (`report.ablation`); error bars are the
    std over seeds when there is more than one.
    """
    import matplotlib.pyplot as plt

    defaults, titles = defaults or {}, titles or {}
    n = len(ablations)
    with house_style():
        fig, axes = plt.subplots(1, n, figsize=(WIDTHS["double"] if n > 1 else WIDTHS["single"], 1.9),
                                 squeeze=False, sharey=True)
        for i, (ax, (key, res)) in enumerate(zip(axes[0], ablations.items())):
            xs = np.arange(len(res))
            for c, colour in (("overall", PALETTE["black"]), *SHOT_COLOURS.items()):
                st = np.array([_stats(r, c) for r in res.values()])
                ax.errorbar(xs, st[:, 0], yerr=st[:, 1] if st[:, 1].any() else None, marker="o", color=colour,
                            label=c.title(), capsize=2)
            values = list(res)
            ax.set_xticks(xs, [_value_label(v) for v in values])
            if key in defaults and defaults[key] in values:  # the paper marks the default in red
                j = values.index(defaults[key])
                ax.axvspan(j - 0.3, j + 0.3, color=PALETTE["vermillion"], alpha=0.12, lw=0)
                ax.get_xticklabels()[j].set_color(PALETTE["vermillion"])
            ax.set_xlabel(titles.get(key, key))
            ax.set_title(f"({chr(97 + i)})")
        axes[0][0].set_ylabel("accuracy (%)")
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _value_label(v) -> str:
    """A setting's value on the axis; None (the preset's rule, e.g. the paper's ratio) reads 'auto'."""
    return "auto" if v is None else str(v)


def ablation_markdown(ablations: dict[str, dict], defaults: dict | None = None) -> str:
    """Every ablation value with its four accuracies (mean over seeds, %); the default is starred."""
    defaults = defaults or {}
    out = []
    for key, res in ablations.items():
        out.append(f"**{key}**\n\n| value | " + " | ".join(HEADERS[c] for c in TAB2_COLUMNS) + " |\n|---|"
                   + "---|" * len(TAB2_COLUMNS) + "\n")
        for v, r in res.items():
            star = " (default)" if key in defaults and defaults[key] == v else ""
            out[-1] += f"| {_value_label(v)}{star} | " + " | ".join(f"{_stats(r, c)[0]:.1f}" for c in TAB2_COLUMNS) + " |\n"
    return "\n".join(out)


def ablation_latex(ablations: dict[str, dict], defaults: dict | None = None, caption: str = "",
                   label: str = "") -> str:
    """Fig. 5's numbers as a booktabs LaTeX table: one row per value, settings split by \\midrule, default marked."""
    defaults, body = defaults or {}, []
    for key, res in ablations.items():
        body.append(r"\midrule")
        for i, (v, r) in enumerate(res.items()):
            star = " (default)" if key in defaults and defaults[key] == v else ""
            cells = " & ".join(_cell(*_stats(r, c), None, len(r), True) for c in TAB2_COLUMNS)
            body.append(f"{_tex(key) if i == 0 else ''} & {_tex(_value_label(v) + star)} & {cells} \\\\")
    return _booktabs("Setting & Value", TAB2_COLUMNS, body, caption, label)


def ablation_summary(ablations: dict[str, dict], defaults: dict | None = None, column: str = "overall") -> str:
    """What the runs show: the setting whose values moved `column` most, and every setting's range in points.

    A setting whose range is no larger than the largest std over seeds among its values is called
    within the seed noise; with one seed there is no noise estimate, and the text says so.
    """
    defaults, spread = defaults or {}, {}
    for key, res in ablations.items():
        st = {v: _stats(r, column) for v, r in res.items()}
        lo, hi = min(st, key=lambda v: st[v][0]), max(st, key=lambda v: st[v][0])
        noise = max(s for _, s in st.values()) if min(len(r) for r in res.values()) > 1 else None
        spread[key] = (st[hi][0] - st[lo][0], lo, hi, st, noise)
    if not spread:
        raise ValueError("no ablation to summarise")
    key = max(spread, key=lambda k: spread[k][0])
    rng, lo, hi, st, _ = spread[key]
    mark = {v: _value_label(v) + (" (default)" if key in defaults and defaults[key] == v else "") for v in st}
    text = (f"{HEADERS[column]} moved most with {key}: {st[lo][0]:.1f} at {mark[lo]} vs {st[hi][0]:.1f} at "
            f"{mark[hi]}, a {rng:.1f}-point range")
    others = [f"{k} {spread[k][0]:.1f}" for k in spread if k != key]
    if others:
        text += f" ({', '.join(others)} points)"
    noisy = [k for k, s in spread.items() if s[4] is not None and s[0] <= s[4]]
    if any(s[4] is None for s in spread.values()):
        return text + "; one seed, so no estimate of the seed noise"
    return text + ("; within the seed std: " + ", ".join(noisy) if noisy else "; every range exceeds the seed std")
