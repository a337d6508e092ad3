"""`python -m ltkit filter`: score a crawl, apply the config's thresholds, write the accepted set.

    python -m ltkit filter --config configs/builtin.yaml                     # the crawl of that config
    python -m ltkit filter --config configs/builtin.yaml filter.gamma1=0.6 --quality --sweep filter_sweep_builtin
    python -m ltkit filter --crawl crawl/mine dataset=folders data_root=data/mine filter.encoder=dinov2

Features are cached by image content (under $LTKIT_CACHE/features), so a second run with other
thresholds encodes nothing. A curator's manual overrides (`overrides.jsonl` in the crawl folder, written
by clicks in the tuner) win over the thresholds here as in the tuner. `--quality` prints precision / recall
against the pool's truth (the built-in world's, or a folder pool's truth column); `--sweep NAME` draws the
gamma1 x gamma2 sweep as figures/NAME.png and .pdf.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ltkit import artifacts
from ltkit.artifacts.layout import crawl_dir
from ltkit.config import load_config, no_stray_arguments, split_overrides
from ltkit.curate import filter as flt
from ltkit.curate import quality as q
from ltkit.curate.overrides import OVERRIDES
from ltkit.errors import ArgumentParser, UserError
from ltkit.viz import save_figure
from ltkit.viz.catalogue import record


def run(cfg, crawl: str | Path | None = None, quality: bool = False, sweep: str | None = None,
        figures: str | Path = "figures", dry_run: bool = False, command: str | None = None) -> dict:
    """Filter the crawl of `cfg` (or `crawl`); returns the provenance written (or that would be).

    `command` is the command line that ran it, recorded as the sweep figure's source.
    """
    root = Path(crawl) if crawl else crawl_dir(cfg)
    t = time.perf_counter()
    # the config's thresholds (training checks the set against them); the curator's clicks in the tuner count too
    scores, d, settings = flt.filter_crawl(root, cfg, thresholds="config")
    print(f"scored {len(scores)} images of {root} with encoder {scores.encoder} in {time.perf_counter() - t:.1f}s")
    n_over = d.override_counts()
    if dry_run:
        prov = dict(kept=int(d.keep.sum()), images=len(scores), leaks=int(d.leak.sum()))
    else:
        prov = flt.save_accepted(scores, d, extra=dict(saved_by="python -m ltkit filter", dataset=cfg.dataset))
    print(f"kept {prov['kept']} of {prov['images']} images (γ1={settings.gamma1}, γ2={settings.gamma2}, "
          f"caption={settings.caption_mode}); leaks caught: {prov['leaks']}"
          + (f"; manual overrides from {OVERRIDES}: {n_over['keep']} kept, {n_over['drop']} dropped "
             f"({n_over['changed']} against the thresholds)" if d.overrides else "")
          + ("" if dry_run else f"; wrote {root / artifacts.ACCEPTED} and {root / artifacts.FILTER_JSON}"))
    if quality or sweep:
        rows = q.quality_table(scores, settings)
        counts = {k: scores.truth.count(k) for k in q.KINDS}
        print(q.markdown_quality(rows, counts))
        if sweep:
            g1, g2 = q.default_grid(scores)
            fig = q.sweep_figure(q.sweep(scores, settings, g1, g2), g1, g2, settings)
            print("wrote", ", ".join(str(p) for p in save_figure(fig, sweep, figures)))
            record(figures, sweep, "Precision, recall and kept images of the combined filters over a γ1 x γ2 grid "
                   f"(caption {settings.caption_mode}, leak check on), × at γ1={settings.gamma1}, γ2={settings.gamma2}.",
                   numbers=q.markdown_quality(rows, counts), source=f"`{command or f'ltkit.curate.cli.run(sweep={sweep!r})'}`")
    return prov


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and filter (`python -m ltkit` turns user errors into one `error:` line, exit 2)."""
    p = ArgumentParser(prog="python -m ltkit filter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML preset (configs/*.yaml); default: the built-in world")
    p.add_argument("--crawl", help="crawl folder with manifest.jsonl (default: the config's crawl folder)")
    p.add_argument("--quality", action="store_true", help="precision / recall against the pool's truth (world or truth column)")
    p.add_argument("--sweep", metavar="NAME", help="draw the gamma1 x gamma2 sweep as FIGURES/NAME.png and .pdf")
    p.add_argument("--figures", default="figures", help="folder for --sweep (default: figures)")
    p.add_argument("--dry-run", action="store_true", help="print the counts, write nothing")
    p.add_argument("overrides", nargs="*", help="e.g. filter.gamma1=0.6 filter.caption_mode=words dataset=builtin")
    argv = sys.argv[1:] if argv is None else list(argv)
    opts, overrides = split_overrides(argv)
    args = p.parse_args(opts)
    no_stray_arguments(args.overrides)
    if args.crawl and not Path(args.crawl).is_dir():
        raise UserError(f"--crawl {args.crawl}: no such folder")
    run(load_config(args.config, overrides), args.crawl, args.quality, args.sweep, args.figures, args.dry_run,
        command="python -m ltkit filter " + " ".join(argv))
    return 0
