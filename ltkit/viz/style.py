"""One house style for every ltkit figure: fonts, sizes, a colour-blind-safe palette, paper widths.

Figures are drawn at the size they are printed (the paper's single or double column), so 8 pt
text in the figure is 8 pt in the PDF. `save_figure` writes a PDF (for papers) and a PNG (for the
README) atomically; the PDF carries no creation date, so re-drawing an unchanged figure gives
byte-identical files and `git status` shows only the figures that really changed.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless by default; notebooks set their own
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402

from ltkit.io import atomic_save  # noqa: E402

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies and in greyscale order.
PALETTE: dict[str, str] = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000", "grey": "#999999",
}
CYCLE: list[str] = [PALETTE[k] for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "black")]
SHOT_COLOURS: dict[str, str] = {"many": PALETTE["blue"], "medium": PALETTE["orange"], "few": PALETTE["vermillion"]}
# Marker shapes repeat the colour information, so a plot still reads when printed in grey.
MARKERS: list[str] = ["o", "s", "^", "D", "v", "P", "X", "*"]

# Paper widths in inches (CVPR two-column template: \columnwidth 3.25 in, \textwidth 6.875 in).
WIDTHS: dict[str, float] = {"single": 3.25, "double": 6.875}

STYLE: dict = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: identical glyphs on every machine
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "figure.titlesize": 9,
    "axes.prop_cycle": cycler(color=CYCLE),
    "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.6,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.2, "lines.markersize": 4,
    "figure.dpi": 100, "savefig.dpi": 200, "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # TrueType: text stays editable in Illustrator / Inkscape
    "image.cmap": "viridis",
}


def apply_style() -> None:
    """Make the house style the default for this process (notebooks call it once)."""
    plt.rcParams.update(STYLE)


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """Draw (or save) inside the house style without changing the process-wide defaults."""
    with plt.rc_context(STYLE):
        yield


def figure_size(width: str | float = "single", height: float | None = None, aspect: float = 0.62) -> tuple[float, float]:
    """(width, height) in inches: a named paper width or inches; height defaults to width x aspect."""
    if isinstance(width, str):
        if width not in WIDTHS:
            raise ValueError(f"width={width!r}: expected one of {sorted(WIDTHS)} or inches")
        width = WIDTHS[width]
    return float(width), float(height if height is not None else width * aspect)


def figure(width: str | float = "single", height: float | None = None, nrows: int = 1, ncols: int = 1, **kwargs):
    """`plt.subplots` at a paper width in the house style; returns (fig, axes)."""
    with house_style():
        return plt.subplots(nrows, ncols, figsize=figure_size(width, height), **kwargs)


def _stem(name: str | os.PathLike, folder: str | os.PathLike | None) -> Path:
    """Where a figure goes: `folder/name`; a name with a folder of its own (or absolute) is kept as is."""
    p = Path(name)
    if folder is None or p.is_absolute() or p.parent != Path("."):
        return p
    return Path(folder) / p


def save_figure(fig, name: str | os.PathLike, folder: str | os.PathLike | None = "figures",
                formats: Sequence[str] = ("pdf", "png"), close: bool = True) -> list[Path]:
    """Write `folder/name.pdf` and `.png` atomically; PDFs without dates, so unchanged figures stay byte-identical.

    `name` may also be a path stem (`figs / "class_counts"`), which is used as it is.
    """
    stem = _stem(name, folder)
    paths = []
    with house_style():
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            # no CreationDate/ModDate in the PDF info dict; PNG metadata is only the software name
            meta = {"CreationDate": None, "ModDate": None} if fmt == "pdf" else None
            atomic_save(path, lambda buf, fmt=fmt, meta=meta: fig.savefig(buf, format=fmt, metadata=meta))
            paths.append(path)
    if close:
        plt.close(fig)
    return paths


def saved_png(paths: Sequence[Path]):
    """The PNG among `save_figure`'s files as an IPython image: a notebook shows what it saved, on any backend.

    `display(fig)` shows a figure only under the inline backend; headless runs (MPLBACKEND=Agg) print its repr.
    """
    from IPython.display import Image

    png = next((p for p in paths if Path(p).suffix == ".png"), None)
    if png is None:
        raise ValueError(f"no .png among {[str(p) for p in paths]}: save the figure with formats including 'png'")
    return Image(filename=str(png))
