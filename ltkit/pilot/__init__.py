"""The granularity pilot (paper Sec. 2.2, Fig. 3): does a finer-grained dataset suffer less from imbalance?

Draw N classes over exactly S superclasses (`draw`), subsample each draw to a range of imbalance
ratios, train a Balanced-Softmax classifier on frozen features and measure the head-tail accuracy
gap (`probe`), or train the whole model on each cell's images (`learn`), over a resumable grid of
S x ratio x seed (`grid`), from a config (`run`).
"""
from ltkit.pilot.draw import Draw, GranularityError, draw_classes, resolve_level, superclass_members
from ltkit.pilot.grid import (Cell, collect, gap_figure, granularity_effect, grid_cells, markdown_table, read_results,
                              relative_tail, run_grid, summarise, trained_figure)
from ltkit.pilot.learn import train_cell
from ltkit.pilot.pools import Pool, cifar100_pool, class_features, class_images, folder_pool, unseen_specs, world_pool
from ltkit.pilot.probe import head_tail_classes, ratio_counts, run_cell, sibling_errors, train_probe
from ltkit.pilot.run import PilotRun, build_pool, build_trainer, cells_of, main, pilot_encoder, run_pilot, save_outputs

__all__ = ["Draw", "GranularityError", "draw_classes", "resolve_level", "superclass_members", "Cell", "collect",
           "gap_figure", "granularity_effect", "grid_cells", "markdown_table", "read_results", "relative_tail", "run_grid",
           "summarise", "trained_figure", "train_cell", "class_images", "build_trainer",
           "Pool", "cifar100_pool", "class_features", "folder_pool", "unseen_specs", "world_pool", "head_tail_classes",
           "ratio_counts", "run_cell", "sibling_errors", "train_probe", "pilot_encoder", "build_pool", "cells_of", "main",
           "PilotRun", "run_pilot", "save_outputs"]
