"""Figures in one house style: the world's sheets, UMAP cluster panels, PCA patch maps, paper tables.

`from ltkit.viz import save_figure, figure, PALETTE` is the stable surface other modules draw with.
"""
from ltkit.viz.style import (CYCLE, MARKERS, PALETTE, SHOT_COLOURS, STYLE, WIDTHS, apply_style, figure,
                             figure_size, house_style, save_figure, saved_png)
from ltkit.viz.dataset import class_count_plot, contact_sheet

__all__ = ["CYCLE", "MARKERS", "PALETTE", "SHOT_COLOURS", "STYLE", "WIDTHS", "apply_style", "figure",
           "figure_size", "house_style", "save_figure", "saved_png", "class_count_plot", "contact_sheet"]
