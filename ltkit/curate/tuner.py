"""The threshold tuner: look at the images just inside and outside each bound, move the bounds, save.

An ipywidgets panel over precomputed `FilterScores`, so every interaction only re-applies thresholds:
- a gamma1-gamma2 range slider and a caption-mode toggle;
- a class picker for hundreds of classes: a search box, a sort (most affected first, fewest kept,
  most leaks, name) and a list showing kept/total per class;
- the class's similarity histogram with both bounds drawn, and the kept count of the visible classes
  against the per-class cap;
- image grids sorted by similarity just inside and just outside each bound, each image framed by
  its caption match (solid green: caption names the class; dashed orange: it does not) and badged
  LEAK when it near-duplicates a val/test image;
- a label echoing what the kernel applied, and a Save button writing the thresholds, the accepted
  set and their provenance next to the crawl manifest (`filter.save_accepted`).
The same state is settable in code (`Tuner.set`, `Tuner.save`), which is how the tests drive it.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import replace

import numpy as np
from PIL import Image

from ltkit.curate.filter import CAPTION_MODES, Decisions, FilterConfig, FilterScores, class_counts, decide, save_accepted
from ltkit.viz.style import PALETTE, house_style

SORTS = ("most affected", "fewest kept", "most leaks", "name")


def _png(img: Image.Image, size: int = 48) -> str:
    buf = io.BytesIO()
    img.resize((size, size), Image.Resampling.NEAREST).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Tuner:
    """Interactive filter thresholds over one crawl (`.widget` is the panel to display)."""

    def __init__(self, scores: FilterScores, settings: FilterConfig | None = None, per_grid: int = 8,
                 list_rows: int = 10, provenance: dict | None = None):
        """`provenance` goes into filter.json on Save (e.g. the dataset the crawl belongs to)."""
        import ipywidgets as w

        self.scores, self.per_grid, self.provenance = scores, per_grid, dict(provenance or {})
        self.settings = (settings or FilterConfig()).check()
        self.saved: dict | None = None
        self._thumbs: dict[int, str] = {}
        self._counts: dict[int, dict] = {}
        lo = float(min(0.0, np.floor(scores.cos.min() * 20) / 20)) if len(scores) else 0.0
        s = self.settings
        self.window = w.FloatRangeSlider(value=(s.gamma1, s.gamma2), min=lo, max=1.0, step=0.01,
                                         description="γ1 – γ2", readout_format=".2f", continuous_update=False,
                                         layout=w.Layout(width="520px"))
        self.caption = w.ToggleButtons(options=list(CAPTION_MODES), value=s.caption_mode, description="caption")
        self.search = w.Text(placeholder="search classes", description="class", continuous_update=True)
        self.search.add_class("ltkit-search")
        self.sort = w.Dropdown(options=list(SORTS), value=SORTS[0], description="sort")
        self.classes = w.Select(options=[], rows=list_rows, layout=w.Layout(width="520px"))
        self.classes.add_class("ltkit-classes")
        self.histogram = w.Image(format="png", layout=w.Layout(width="480px"))
        self.cap_table = w.HTML()
        self.grids = w.HTML()
        self.applied = w.HTML()
        self.applied.add_class("ltkit-applied")
        self.save_button = w.Button(description="Save", button_style="success", icon="save")
        self.save_button.add_class("ltkit-save")
        self.status = w.HTML("not saved yet")
        self.status.add_class("ltkit-status")
        for ctl in (self.window, self.caption):
            ctl.observe(self._on_threshold, names="value")
        self._listing = False  # True while the class list is rebuilt: its interim values are not picks
        for ctl in (self.search, self.sort):
            ctl.observe(lambda _: self._refresh_list(render=True), names="value")
        self.classes.observe(lambda _: None if self._listing else self._refresh_class(), names="value")
        self.save_button.on_click(lambda _: self.save())
        left = w.VBox([self.search, self.sort, self.classes, self.cap_table])
        right = w.VBox([self.histogram, self.grids])
        self.widget = w.VBox([w.HBox([self.window, self.caption]), w.HBox([left, right]),
                              w.HBox([self.save_button, self.status]), self.applied])
        self.widget.add_class("ltkit-tuner")
        self._apply()

    # ----------------------------------------------------------------------------- state in code

    def set(self, gamma1: float | None = None, gamma2: float | None = None, caption_mode: str | None = None,
            cls: int | str | None = None, search: str | None = None, sort: str | None = None) -> "Tuner":
        """Set any control as a user would (observers fire, the panel updates); `cls` is an id or a name."""
        if gamma1 is not None or gamma2 is not None:
            g1, g2 = self.window.value
            self.window.value = (g1 if gamma1 is None else gamma1, g2 if gamma2 is None else gamma2)
        if caption_mode is not None:
            self.caption.value = caption_mode
        if sort is not None:
            self.sort.value = sort
        if search is not None:
            self.search.value = search
        if cls is not None:
            ids = {c["name"]: a for a, c in self._counts.items()}
            aux = ids.get(cls, cls) if isinstance(cls, str) else int(cls)
            if aux not in self._counts:
                raise KeyError(f"no auxiliary class {cls!r} in this crawl")
            if aux not in [v for _, v in self.classes.options]:
                self.search.value = ""
            self.classes.value = aux
        return self

    @property
    def decisions(self) -> Decisions:
        return self._decisions

    def counts(self) -> dict:
        """What the panel shows: images, kept, leaks, classes with images, and the selected class's counts."""
        d = self._decisions
        cls = self._counts.get(self.classes.value) if self.classes.value is not None else None
        return dict(images=len(self.scores), kept=int(d.keep.sum()), leaks=int(d.leak.sum()),
                    classes=len(self._counts), classes_kept=sum(c["kept"] > 0 for c in self._counts.values()),
                    cls=self.classes.value, cls_total=cls["total"] if cls else 0, cls_kept=cls["kept"] if cls else 0)

    def save(self) -> dict:
        """Write thresholds, accepted set and provenance next to the manifest (what the Save button does)."""
        self.saved = save_accepted(self.scores, self._decisions, extra=dict(saved_by="tuner", **self.provenance))
        self.status.value = (f"saved {self.saved['kept']} images of {self.saved['aux_classes_kept']} classes "
                             f"(γ1={self.settings.gamma1:.2f}, γ2={self.settings.gamma2:.2f}) at {self.saved['time']}")
        return self.saved

    # ----------------------------------------------------------------------------- updates

    def _on_threshold(self, _=None) -> None:
        self._apply()

    def _apply(self) -> None:
        g1, g2 = (round(float(v), 4) for v in self.window.value)
        self.settings = replace(self.settings, gamma1=g1, gamma2=g2, caption_mode=self.caption.value).check()
        self._decisions = decide(self.scores, self.settings)
        self._counts = class_counts(self.scores, self._decisions)
        self._refresh_list()
        self._refresh_class()

    def _order(self) -> list[int]:
        """Class ids matching the search, in the chosen order."""
        q = " ".join(self.search.value.lower().split())  # also turns no-break spaces copied from the list into spaces
        ids = [a for a, c in self._counts.items() if q in c["name"].lower()]
        key = {"most affected": lambda a: (-(self._counts[a]["total"] - self._counts[a]["kept"]), a),
               "fewest kept": lambda a: (self._counts[a]["kept"], a),
               "most leaks": lambda a: (-self._counts[a]["leak"], a),
               "name": lambda a: (self._counts[a]["name"], a)}[self.sort.value]
        return sorted(ids, key=key)

    def _refresh_list(self, render: bool = False) -> None:
        order = self._order()
        keep = self.classes.value if self.classes.value in order else (order[0] if order else None)
        opts = [(f"{self._counts[a]['name']}  ·  kept {self._counts[a]['kept']}/{self._counts[a]['total']}", a)
                for a in order]
        before, self._listing = self.classes.value, True
        try:
            self.classes.options = opts
            self.classes.value = keep
        finally:
            self._listing = False
        self._refresh_caps(order)
        if render and keep != before:
            self._refresh_class()
        else:
            self._refresh_applied()

    def _refresh_caps(self, order: list[int], limit: int = 12) -> None:
        cap = self.settings.cap
        below = sum(c["kept"] < cap for c in self._counts.values())
        rows = []
        for a in order[:limit]:
            c = self._counts[a]
            pct = min(100, round(100 * c["kept"] / max(cap, 1)))
            colour = "#009E73" if c["kept"] >= cap else "#E69F00"
            rows.append(f"<tr><td>{html.escape(c['name'])}</td><td style='text-align:right'>{c['kept']}</td>"
                        f"<td><div style='width:120px;background:#eee'><div style='width:{pct}%;height:9px;"
                        f"background:{colour}'></div></div></td></tr>")
        self.cap_table.value = (f"<b>kept per class vs cap {cap}</b> ({below} of {len(self._counts)} classes "
                                f"below the cap)<table style='font-size:11px'>{''.join(rows)}</table>")

    def _refresh_applied(self) -> None:
        c, s = self.counts(), self.settings
        name = html.escape(self._counts[c["cls"]]["name"]) if c["cls"] is not None else "none"
        self.applied.value = (f"kernel applied: γ1={s.gamma1:.2f} γ2={s.gamma2:.2f} caption={s.caption_mode} · "
                              f"kept <span class='ltkit-kept'>{c['kept']}</span> of {c['images']} images, "
                              f"{c['classes_kept']} of {c['classes']} classes, {c['leaks']} leaks · "
                              f"class <span class='ltkit-class'>{name}</span>: "
                              f"<span class='ltkit-class-kept'>{c['cls_kept']}</span>/{c['cls_total']}")

    def _refresh_class(self) -> None:
        a = self.classes.value
        self._refresh_applied()
        if a is None:
            self.histogram.value, self.grids.value = b"", "<i>no class matches the search</i>"
            return
        idx = np.flatnonzero(self.scores.aux_ids == a)
        self.histogram.value = self._histogram(idx, self._counts[a]["name"])
        self.grids.value = self._grids(idx)

    def _histogram(self, idx: np.ndarray, name: str) -> bytes:
        import matplotlib.pyplot as plt

        s, cos, cap = self.settings, self.scores.cos, self._decisions.caption_ok
        lo = self.window.min
        bins = np.linspace(lo, 1.0, 41)
        with house_style():
            fig, ax = plt.subplots(figsize=(4.8, 1.9), dpi=100)
            ax.hist([cos[idx][cap[idx]], cos[idx][~cap[idx]]], bins=bins, stacked=True, density=False,
                    color=[PALETTE["green"], PALETTE["orange"]], label=["caption match", "no caption match"])
            for g in (s.gamma1, s.gamma2):
                ax.axvline(g, color="black", lw=1.2, ls="--")
            ax.set_title(f"{name}: cos(prototype of its parent, image)")
            ax.set_ylabel("images")
            ax.legend(loc="upper left")
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
        return buf.getvalue()

    def _thumb(self, i: int) -> str:
        if i not in self._thumbs:
            with Image.open(self.scores.crawl_dir / self.scores.rows[i]["path"]) as im:
                self._thumbs[i] = _png(im.convert("RGB"))
        return self._thumbs[i]

    def _grids(self, idx: np.ndarray) -> str:
        """Four strips: just outside / inside gamma1, just inside / outside gamma2, nearest the bound first."""
        s, cos = self.settings, self.scores.cos
        c = cos[idx]
        strips = [("just below γ1 (dropped)", idx[c <= s.gamma1][np.argsort(-c[c <= s.gamma1])]),
                  ("just above γ1 (kept by the window)", idx[(c > s.gamma1) & (c < s.gamma2)][
                      np.argsort(c[(c > s.gamma1) & (c < s.gamma2)])]),
                  ("just below γ2 (kept by the window)", idx[(c > s.gamma1) & (c < s.gamma2)][
                      np.argsort(-c[(c > s.gamma1) & (c < s.gamma2)])]),
                  ("just above γ2 (dropped)", idx[c >= s.gamma2][np.argsort(c[c >= s.gamma2])])]
        out = ["<div style='font-size:10px'>frame: <span style='color:#009E73'>solid green</span> caption names "
               "the class, <span style='color:#E69F00'>dashed orange</span> it does not; "
               "<b style='color:#D55E00'>LEAK</b>: near-duplicate of a val/test image</div>"]
        cells_by_strip = []
        for title, sel in strips:
            cells = []
            for i in sel[:self.per_grid]:
                ok, leak = bool(self._decisions.caption_ok[i]), bool(self._decisions.leak[i])
                border = "3px solid #009E73" if ok else "3px dashed #E69F00"
                badge = "<b style='color:#D55E00'>LEAK</b>" if leak else ""
                tip = html.escape(self.scores.rows[i].get("caption") or "", quote=True)
                cells.append(f"<div style='display:inline-block;text-align:center;margin:1px;font-size:10px' "
                             f"title='{tip}'><img src='data:image/png;base64,{self._thumb(i)}' "
                             f"style='border:{border}'/><br>{cos[i]:.3f} {badge}</div>")
            body = "".join(cells) or "<i>none</i>"
            cells_by_strip.append(f"<div><b>{title}</b> ({len(sel)})<br>{body}</div>")
        # a 2 x 2 grid: the gamma1 strips side by side, then the gamma2 strips
        out.append("<div style='display:grid;grid-template-columns:1fr 1fr;gap:6px'>" + "".join(cells_by_strip) + "</div>")
        return "".join(out)
