"""The threshold tuner: look at the images just inside and outside each bound, move the bounds, flip, save.

An ipywidgets panel over precomputed `FilterScores`, so every interaction only re-applies thresholds:
- a gamma1-gamma2 range slider, a caption-mode toggle (with a line saying when a mode changes nothing,
  and why) and a "preset thresholds" button that goes back to the preset's settings;
- a class picker for hundreds of classes: a search box (whole words: "red" does not find "checkered"),
  a sort (most affected first, fewest kept, most leaks, name) and a list showing kept/total per class;
- the class's similarity histogram with both bounds drawn, and the kept count of the visible classes
  against the per-class cap;
- image grids sorted by similarity just inside and just outside each bound, each image framed by
  its caption match (solid green: caption names the class; dashed orange: it does not), faded when
  dropped, badged LEAK when it near-duplicates a val/test image. A click on an image flips its
  decision (kept <-> dropped): a manual override, appended at once to `overrides.jsonl` with who and
  when (`ltkit.curate.overrides`), kept when the thresholds move later;
- a line echoing what the kernel applied, and a Save button writing the thresholds, the accepted
  set and their provenance next to the crawl manifest (`filter.save_accepted`); its status line names
  the files it replaced and who reads them.
The layout is a grid with flexible columns, so it holds at JupyterLab's default width. The same state
is settable in code (`Tuner.set`, `Tuner.flip`, `Tuner.reset`, `Tuner.save`), which is how the tests drive it.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ltkit.artifacts.layout import ACCEPTED, ACCEPTED_MAP, FILTER_JSON, FILTER_MANIFEST
from ltkit.config import FilterConfig
from ltkit.curate.filter import Decisions, FilterScores, class_counts, decide, save_accepted
from ltkit.curate.overrides import OVERRIDES, Override, flip_decision, read_overrides, record_override
from ltkit.viz.style import PALETTE, house_style
from ltkit.words import CAPTION_MODES, caption_words

SORTS = ("most affected", "fewest kept", "most leaks", "name")
STRIPS = ("just below γ1 (dropped)", "just above γ1 (kept by the window)",
          "just below γ2 (kept by the window)", "just above γ2 (dropped)")
THUMB = 48  # px of a thumbnail; its button adds a 3 px frame
# Who reads what Save writes, in notebook 02 (another notebook passes its own sentence as `readers`).
NOTEBOOK_02 = (f"Notebook 03 trains on {ACCEPTED}; the next run of notebook 02 starts from these thresholds "
               "(\"preset thresholds\", then Save, goes back to the preset's).")
# Static rules of the panel; a <style> inside an HTML widget applies to the page (ipywidgets does not sanitise it).
CSS = f"""
.ltkit-tuner .ltkit-window .widget-readout {{ min-width: 7.5em; overflow: visible; }}
.ltkit-tuner .ltkit-wrap, .ltkit-tuner .ltkit-wrap .widget-html-content {{ white-space: normal; line-height: 1.4;
  overflow-wrap: anywhere; }}
.ltkit-tuner button.ltkit-thumb {{ padding: 0; background-size: {THUMB}px {THUMB}px; background-repeat: no-repeat;
  background-position: center; background-color: white; }}
.ltkit-tuner button.ltkit-thumb.ltkit-cap-ok {{ border: 3px solid #009E73; }}
.ltkit-tuner button.ltkit-thumb.ltkit-cap-no {{ border: 3px dashed #E69F00; }}
.ltkit-tuner button.ltkit-thumb.ltkit-drop {{ opacity: 0.4; }}
.ltkit-tuner button.ltkit-thumb.ltkit-hand {{ outline: 3px solid #CC79A7; outline-offset: 1px; }}
"""


def _png(img: Image.Image, size: int = THUMB) -> str:
    buf = io.BytesIO()
    img.resize((size, size), Image.Resampling.NEAREST).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def matches(query: str, name: str) -> bool:
    """Whole-word search: every word of `query` is a word of `name` (compared as captions are: case, plural)."""
    want = caption_words(query)
    return not want or set(want) <= set(caption_words(name))


class Tuner:
    """Interactive filter thresholds and manual overrides over one crawl (`.widget` is the panel to display)."""

    def __init__(self, scores: FilterScores, settings: FilterConfig | None = None, per_grid: int = 8,
                 list_rows: int = 10, provenance: dict | None = None, preset: FilterConfig | None = None,
                 user: str | None = None, readers: str = NOTEBOOK_02):
        """`preset`: what "preset thresholds" goes back to (default: `settings`); `provenance` goes into
        filter.json on Save (e.g. the dataset the crawl belongs to); `user` signs overrides (default: login name);
        `readers`: the sentence the status line ends with, saying who reads what Save writes."""
        import ipywidgets as w

        self.scores, self.per_grid, self.provenance, self.user = scores, per_grid, dict(provenance or {}), user
        self.readers = readers
        self.settings = (settings or FilterConfig()).check()
        self.preset = (preset or self.settings).check()
        self.overrides: dict[str, Override] = read_overrides(scores.crawl_dir)
        self.saved: dict | None = None
        self._thumbs: dict[int, str] = {}
        self._counts: dict[int, dict] = {}
        self._hold = False  # True while several controls change at once: apply once at the end
        s = self.settings
        # the slider reaches below every cosine and the preset's γ1 (an open window, -1, would be clamped otherwise)
        floor = [np.floor(scores.cos.min() * 20) / 20] if len(scores) else []
        lo = float(min(0.0, s.gamma1, self.preset.gamma1, *floor))
        label = {"description_width": "64px"}
        self.window = w.FloatRangeSlider(value=(s.gamma1, s.gamma2), min=lo, max=1.0, step=0.01,
                                         description="γ1 – γ2", readout_format=".2f", continuous_update=False,
                                         style=label, layout=w.Layout(width="auto", grid_area="window"))
        self.window.add_class("ltkit-window")
        self.reset_button = w.Button(description="preset thresholds", icon="undo",
                                     tooltip=f"back to the preset's γ1={self.preset.gamma1:.2f}, "
                                             f"γ2={self.preset.gamma2:.2f}, caption={self.preset.caption_mode}",
                                     layout=w.Layout(width="auto", grid_area="reset"))
        self.reset_button.add_class("ltkit-reset")
        # the toggle's own description would sit above its buttons in a grid cell: a label beside it instead
        self.caption = w.ToggleButtons(options=list(CAPTION_MODES), value=s.caption_mode,
                                       style={"button_width": "72px"}, layout=w.Layout(width="auto"))
        self.caption.add_class("ltkit-caption")
        self.note = self._html("ltkit-note", grid_area="note")
        self.search = w.Text(placeholder="whole words, e.g. red star", description="class", continuous_update=True,
                             style={"description_width": "40px"}, layout=w.Layout(width="100%"))
        self.search.add_class("ltkit-search")
        self.sort = w.Dropdown(options=list(SORTS), value=SORTS[0], description="sort",
                               style={"description_width": "40px"}, layout=w.Layout(width="100%"))
        self.classes = w.Select(options=[], rows=list_rows, layout=w.Layout(width="100%"))
        self.classes.add_class("ltkit-classes")
        self.cap_table = self._html("ltkit-caps")
        self.histogram = w.Image(format="png", layout=w.Layout(width="100%", max_width="480px"))
        self.histogram.add_class("ltkit-histogram")
        self.legend = self._html("ltkit-legend", value=(
            "<div style='font-size:11px'>frame: <span style='color:#009E73'>solid green</span> caption names the class, "
            "<span style='color:#E69F00'>dashed orange</span> it does not; faded: dropped; "
            "<b style='color:#D55E00'>LEAK</b>: near-duplicate of a val/test image; "
            "<span style='color:#CC79A7'>pink outline</span>: decided by hand. <b>Click an image to flip it</b> "
            f"(kept ↔ dropped; a second click gives it back to the thresholds), saved at once to {OVERRIDES}.</div>"))
        self.thumb_css = w.HTML()
        self._slot_rows = [-1] * (len(STRIPS) * per_grid)  # row index shown in each image slot (-1: empty)
        self._cells = [self._cell(w, k) for k in range(len(self._slot_rows))]
        self._strip_titles = [self._html("ltkit-strip") for _ in STRIPS]
        cell_grid = dict(grid_template_columns=f"repeat(auto-fill, {THUMB + 12}px)", grid_gap="2px", width="100%")
        strips = [w.VBox([t, w.GridBox([box for box, _, _ in self._cells[k * per_grid:(k + 1) * per_grid]],
                                       layout=w.Layout(**cell_grid))], layout=w.Layout(min_width="0"))
                  for k, t in enumerate(self._strip_titles)]
        self.grids = w.GridBox(strips, layout=w.Layout(grid_template_columns="repeat(2, minmax(0, 1fr))",
                                                       grid_gap="6px 10px", width="100%"))
        self.grids.add_class("ltkit-grids")
        self.applied = self._html("ltkit-applied")
        self.save_button = w.Button(description="Save", button_style="success", icon="save",
                                    tooltip=f"write {ACCEPTED}, {ACCEPTED_MAP}, {FILTER_MANIFEST} and {FILTER_JSON} "
                                            f"in {scores.crawl_dir}")
        self.save_button.add_class("ltkit-save")
        self.status = self._html("ltkit-status", value=f"not saved yet: Save writes {ACCEPTED} and the thresholds "
                                 f"in {FILTER_JSON}. {html.escape(readers, quote=False)}")
        for ctl in (self.window, self.caption):
            ctl.observe(self._on_threshold, names="value")
        self._listing = False  # True while the class list is rebuilt: its interim values are not picks
        for ctl in (self.search, self.sort):
            ctl.observe(lambda _: self._refresh_list(render=True), names="value")
        self.classes.observe(lambda _: None if self._listing else self._refresh_class(), names="value")
        self.save_button.on_click(lambda _: self.save())
        self.reset_button.on_click(lambda _: self.reset())
        self.widget = self._layout(w)
        self._apply()

    @staticmethod
    def _html(cls: str, value: str = "", **layout) -> "object":
        """An HTML line that wraps instead of being cut at the panel's edge."""
        import ipywidgets as w

        h = w.HTML(value, layout=w.Layout(width="100%", **layout))
        h.add_class(cls)
        h.add_class("ltkit-wrap")
        return h

    def _cell(self, w, slot: int) -> tuple:
        """Image slot `slot`: a button showing the thumbnail (a click flips the image) and its numbers below."""
        button = w.Button(layout=w.Layout(width=f"{THUMB + 6}px", height=f"{THUMB + 6}px", padding="0"))
        text = w.HTML(layout=w.Layout(width=f"{THUMB + 10}px"))
        box = w.VBox([button, text], layout=w.Layout(align_items="center", width=f"{THUMB + 10}px"))
        button.on_click(lambda _: self._slot_rows[slot] >= 0 and self.flip(self._slot_rows[slot]))
        return box, button, text

    def _layout(self, w):
        """Three grids: controls (slider | reset, caption toggle, note), picker | class view, save + echo."""
        caption = w.HBox([w.Label("caption", layout=w.Layout(width="64px", justify_content="flex-end")), self.caption],
                         layout=w.Layout(grid_area="caption", align_items="center"))
        controls = w.GridBox([self.window, self.reset_button, caption, self.note], layout=w.Layout(
            grid_template_columns="minmax(0, 1fr) max-content", grid_template_areas='"window reset" "caption caption" '
            '"note note"', grid_gap="4px 16px", width="100%", align_items="center"))
        left = w.VBox([self.search, self.sort, self.classes, self.cap_table], layout=w.Layout(min_width="0"))
        right = w.VBox([self.histogram, self.legend, self.grids], layout=w.Layout(min_width="0"))
        body = w.GridBox([left, right], layout=w.Layout(grid_template_columns="minmax(220px, 300px) minmax(0, 1fr)",
                                                        grid_gap="12px", width="100%"))
        save = w.GridBox([self.save_button, self.status], layout=w.Layout(
            grid_template_columns="max-content minmax(0, 1fr)", grid_gap="12px", width="100%", align_items="center"))
        panel = w.VBox([w.HTML(f"<style>{CSS}</style>"), self.thumb_css, controls, body, save, self.applied],
                       layout=w.Layout(width="100%", max_width="1100px"))
        panel.add_class("ltkit-tuner")
        return panel

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

    def reset(self) -> "Tuner":
        """Back to the preset's thresholds and caption mode (what the "preset thresholds" button does)."""
        self._hold = True
        try:
            self.window.value = (self.preset.gamma1, self.preset.gamma2)
            self.caption.value = self.preset.caption_mode
        finally:
            self._hold = False
        self._apply()
        return self

    def flip(self, i: int) -> Override:
        """Flip image `i`'s decision by hand (what a click on it does); the override is appended to overrides.jsonl."""
        d, row = self._decisions, self.scores.rows[i]
        o = record_override(self.scores.crawl_dir, row["key"], row["sha256"],
                            flip_decision(bool(d.auto_keep[i]), bool(d.keep[i])), self.user)
        self.overrides = read_overrides(self.scores.crawl_dir)
        self._apply()
        what = {"keep": "kept by hand", "drop": "dropped by hand", "auto": "back to the thresholds"}[o.decision]
        self.status.value = (f"override: {html.escape(row['aux_name'])} image {html.escape(row['key'])} {what} "
                             f"(by {html.escape(o.by)} at {o.time}), written to {self.scores.crawl_dir / OVERRIDES}; "
                             f"Save rewrites {ACCEPTED} with it, and `python -m ltkit filter` applies it too")
        return o

    @property
    def decisions(self) -> Decisions:
        return self._decisions

    def shown(self) -> list[tuple[int, str]]:
        """(row index, text under it) of every image in the strips, in slot order."""
        return [(i, text.value) for i, (_, _, text) in zip(self._slot_rows, self._cells) if i >= 0]

    def counts(self) -> dict:
        """What the panel shows: images, kept, leaks, overrides, classes with images, the selected class's counts."""
        d = self._decisions
        cls = self._counts.get(self.classes.value) if self.classes.value is not None else None
        return dict(images=len(self.scores), kept=int(d.keep.sum()), leaks=int(d.leak.sum()),
                    overrides=len(d.overrides), classes=len(self._counts),
                    classes_kept=sum(c["kept"] > 0 for c in self._counts.values()),
                    cls=self.classes.value, cls_total=cls["total"] if cls else 0, cls_kept=cls["kept"] if cls else 0)

    def save(self) -> dict:
        """Write thresholds, accepted set and provenance next to the manifest (what the Save button does)."""
        root = Path(self.scores.crawl_dir)
        files = (ACCEPTED, ACCEPTED_MAP, FILTER_MANIFEST, FILTER_JSON)
        existed = [f for f in files if (root / f).exists()]
        self.saved = save_accepted(self.scores, self._decisions, extra=dict(saved_by="tuner", **self.provenance))
        s, n = self.settings, self.saved["overrides"]
        new = [f for f in files if f not in existed]
        self.status.value = (
            f"saved {self.saved['kept']} images of {self.saved['aux_classes_kept']} classes (γ1={s.gamma1:.2f}, "
            f"γ2={s.gamma2:.2f}, caption={s.caption_mode}, {n['keep'] + n['drop']} manual overrides) at "
            f"{self.saved['time']}: " + (f"replaced {', '.join(existed)}" if existed else "")
            + ("; " if existed and new else "") + (f"wrote {', '.join(new)}" if new else "") + f" in {root}. "
            + html.escape(self.readers, quote=False))
        return self.saved

    # ----------------------------------------------------------------------------- updates

    def _on_threshold(self, _=None) -> None:
        if not self._hold:
            self._apply()

    def _apply(self) -> None:
        g1, g2 = (round(float(v), 4) for v in self.window.value)
        self.settings = replace(self.settings, gamma1=g1, gamma2=g2, caption_mode=self.caption.value).check()
        self._decisions = decide(self.scores, self.settings, self.overrides)
        self._counts = class_counts(self.scores, self._decisions)
        self.note.value = self._caption_note()
        self._refresh_list(echo=False)
        self._refresh_class()  # echoes last: the echo line showing new thresholds means the panel is up to date

    def _caption_note(self) -> str:
        """Why the caption mode changes what it does, or nothing (so a toggle that moves no count does not look dead)."""
        mode, cap = self.settings.caption_mode, self.scores.caption
        more = int((cap["words"] & ~cap["phrase"]).sum())
        if mode == "off":
            return ("<small>caption <b>off</b>: every image passes the caption check, whatever its caption, so the "
                    "histogram no longer splits images by caption.</small>")
        if mode == "words" and more == 0:
            return ("<small>caption <b>words</b> keeps the same images as <b>phrase</b> on this crawl: no caption has "
                    "all the words of its class name without having them as the exact phrase (these captions "
                    "name their class verbatim), so no count moves. It differs on captions like "
                    "\"star, red and wavy\".</small>")
        if mode == "words":
            return (f"<small>caption <b>words</b> (all words of the name, any order) accepts {more} captions that "
                    f"<b>phrase</b> rejects.</small>")
        return (f"<small>caption <b>phrase</b>: the caption contains the class name in order (case, plural, '-' and "
                f"'_' ignored); <b>words</b> would accept {more} more.</small>")

    def _order(self) -> list[int]:
        """Class ids whose names hold every word of the search, in the chosen order."""
        q = self.search.value
        ids = [a for a, c in self._counts.items() if matches(q, c["name"])]
        key = {"most affected": lambda a: (-(self._counts[a]["total"] - self._counts[a]["kept"]), a),
               "fewest kept": lambda a: (self._counts[a]["kept"], a),
               "most leaks": lambda a: (-self._counts[a]["leak"], a),
               "name": lambda a: (self._counts[a]["name"], a)}[self.sort.value]
        return sorted(ids, key=key)

    def _refresh_list(self, render: bool = False, echo: bool = True) -> None:
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
        elif echo:
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
                        f"<td><div style='width:80px;background:#eee'><div style='width:{pct}%;height:9px;"
                        f"background:{colour}'></div></div></td></tr>")
        self.cap_table.value = (f"<b>kept per class vs cap {cap}</b> ({below} of {len(self._counts)} classes "
                                f"below the cap)<table style='font-size:11px'>{''.join(rows)}</table>")

    def _refresh_applied(self) -> None:
        c, s = self.counts(), self.settings
        name = html.escape(self._counts[c["cls"]]["name"]) if c["cls"] is not None else "none"
        self.applied.value = (f"kernel applied: γ1={s.gamma1:.2f} γ2={s.gamma2:.2f} caption={s.caption_mode} · "
                              f"kept <span class='ltkit-kept'>{c['kept']}</span> of {c['images']} images, "
                              f"{c['classes_kept']} of {c['classes']} classes, {c['leaks']} leaks, "
                              f"<span class='ltkit-overrides'>{c['overrides']}</span> manual overrides · "
                              f"class <span class='ltkit-class'>{name}</span>: "
                              f"<span class='ltkit-class-kept'>{c['cls_kept']}</span>/{c['cls_total']}")

    def _refresh_class(self) -> None:
        a = self.classes.value
        if a is None:
            self.histogram.value = b""
            self._fill_strips([np.zeros(0, np.int64)] * len(STRIPS), "<i>no class matches the search</i>")
        else:
            idx = np.flatnonzero(self.scores.aux_ids == a)
            self.histogram.value = self._histogram(idx, self._counts[a]["name"])
            self._fill_strips(self._strips(idx))
        self._refresh_applied()

    def _histogram(self, idx: np.ndarray, name: str) -> bytes:
        import matplotlib.pyplot as plt

        s, cos, cap = self.settings, self.scores.cos, self._decisions.caption_ok
        bins = np.linspace(self.window.min, 1.0, 41)
        if s.caption_mode == "off":  # every image passes: one series, no "no caption match" entry
            series, colours, labels = [cos[idx]], [PALETTE["green"]], ["all images (caption check off)"]
        else:
            series = [cos[idx][cap[idx]], cos[idx][~cap[idx]]]
            colours, labels = [PALETTE["green"], PALETTE["orange"]], ["caption match", "no caption match"]
        with house_style():
            fig, ax = plt.subplots(figsize=(4.8, 1.9), dpi=100)
            ax.hist(series, bins=bins, stacked=True, density=False, color=colours, label=labels)
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

    def _strips(self, idx: np.ndarray) -> list[np.ndarray]:
        """Four strips: just outside / inside gamma1, just inside / outside gamma2, nearest the bound first."""
        s, c = self.settings, self.scores.cos[idx]
        inside = (c > s.gamma1) & (c < s.gamma2)
        return [idx[c <= s.gamma1][np.argsort(-c[c <= s.gamma1])], idx[inside][np.argsort(c[inside])],
                idx[inside][np.argsort(-c[inside])], idx[c >= s.gamma2][np.argsort(c[c >= s.gamma2])]]

    def _fill_strips(self, strips: list[np.ndarray], empty: str = "<i>none</i>") -> None:
        """Show each strip's first images in the fixed image slots (slots are reused, never rebuilt)."""
        d, cos, css = self._decisions, self.scores.cos, []
        keep = d.keep
        for k, (title, sel) in enumerate(zip(STRIPS, strips)):
            self._strip_titles[k].value = f"<b>{title}</b> ({len(sel)})" + ("" if len(sel) else f"<br>{empty}")
            for j in range(self.per_grid):
                slot = k * self.per_grid + j
                box, button, text = self._cells[slot]
                if j >= len(sel):
                    self._slot_rows[slot] = -1
                    box.layout.display = "none"
                    continue
                i = int(sel[j])
                self._slot_rows[slot] = i
                css.append(f".ltkit-tuner button.ltkit-t{i} {{ background-image: url(data:image/png;base64,"
                           f"{self._thumb(i)}); }}")
                hand = i in d.overrides
                button._dom_classes = ("ltkit-thumb", f"ltkit-t{i}", "ltkit-cap-ok" if d.caption_ok[i] else "ltkit-cap-no",
                                       "ltkit-keep" if keep[i] else "ltkit-drop") + (("ltkit-hand",) if hand else ())
                button.tooltip = (self.scores.rows[i].get("caption") or "(no caption)") + (
                    f" · click to {'drop' if keep[i] else 'keep'}")
                text.value = (f"<div style='font-size:10px;line-height:1.2;text-align:center'>{cos[i]:.3f}"
                              + (" <b style='color:#D55E00'>LEAK</b>" if d.leak[i] else "")
                              + (f"<br><span style='color:#CC79A7'>{'kept' if keep[i] else 'dropped'} by hand</span>"
                                 if hand else "") + "</div>")
                box.layout.display = None
        self.thumb_css.value = "<style>" + "\n".join(css) + "</style>"
