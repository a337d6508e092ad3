"""Curation (paper Sec. 3.1): which crawled images training may use.

`filter` (the caption check and the gamma1 < cos < gamma2 window around the parent class's prototype,
on the features of `ltkit.encoder`, cached by content; `accepted.csv`), `leak` (near-duplicates of
target val/test images), `quality` (precision / recall against a pool's truth, the threshold sweep),
`overrides` (a curator's manual keep / drop decisions, `overrides.jsonl`), `tuner` (the notebook's
threshold widgets, where a click on an image records an override) and `cli` (`python -m ltkit filter`).
These import torch: import them by name.
"""
