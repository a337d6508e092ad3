"""Method comparisons and ablations in the layout of the paper's tables (Tab. 2, Tab. 6, Fig. 5).

A row's *recipe* is explicit: auxiliary data (`aux`), loss and the test-time classifier (plus any
other key it sets, e.g. `ns_mode`). In Tab. 6 every row but the last re-trains the classifier on the
target data (cRT) and consecutive rows differ in exactly one component; "+ Direct Classifier" keeps
the trained target rows. Tab. 2's baseline is one-stage BalCE with its direct classifier, as in the
paper (Tab. 2, Tab. 3); +RD and +SD are Tab. 6's rows of the same recipe and "+ Ours" is "+ Direct
Classifier". Rows that train alike share one run: a training is evaluated with every classifier at
once (direct and cRT), so a table costs one training per (aux, loss, seed), and every row prints the
other classifier's Overall and Few beside its own.

Compute: every row prints its optimizer steps and images seen. With `steps` (a preset key, or
`compare --steps N`) every row trains the same number of steps, the headline; without it every row
trains `epochs` epochs (the paper's protocol), and an auxiliary row then takes more steps than the
baseline. `compare --steps N --equal-epochs` prints both, each labelled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time

import numpy as np

from ltkit import evaluate, pipeline
from ltkit.config import Config, load_config, no_stray_arguments, parse_value, recipe, split_overrides
from ltkit.errors import ArgumentParser, ConfigError, UserError
from ltkit.io import atomic_write_text, read_json, write_json
from ltkit.train import Trainer, reproducible, val_split
from ltkit.viz.tables import AUX_LABELS, RECIPE_KEYS, recipe_label

log = logging.getLogger(__name__)

# every training is evaluated with both classifiers: the other one costs a feature pass, not a training
EVALUATED_CLASSIFIERS = ("direct", "crt")

# Tab. 6: contributions of the components; each row changes one component of the row above.
COMPONENTS: dict[str, dict] = {
    "Baseline": {"aux": "none", "loss": "balce", "classifier": "crt"},
    "+ Random Category": {"aux": "random", "loss": "balce", "classifier": "crt"},
    "+ Neighbor Category": {"aux": "neighbours", "loss": "balce", "classifier": "crt"},
    "+ Neighbor Silencing": {"aux": "neighbours", "loss": "nsce", "classifier": "crt"},
    "+ Direct Classifier": {"aux": "neighbours", "loss": "nsce", "classifier": "direct"},
}
# Tab. 2: the baseline is one-stage BalCE, direct classifier (the paper's Tab. 2 and 3); the other rows
# are Tab. 6's rows of the same recipe. The baseline's cRT number is printed beside it.
METHODS: dict[str, dict] = {
    "Baseline (BalCE)": {**COMPONENTS["Baseline"], "classifier": "direct"},
    "+ RD": COMPONENTS["+ Random Category"],
    "+ SD": COMPONENTS["+ Neighbor Category"],
    "+ Ours (NS-CE, direct)": COMPONENTS["+ Direct Classifier"],
}
# NS-CE as the paper writes it and as the authors' code runs it (`ns_mode: mask`, ltkit.losses), direct classifier
NS_VARIANTS: dict[str, dict] = {
    "SD / BalCE": {"aux": "neighbours", "loss": "balce", "classifier": "direct"},
    "SD / NS-CE soft (paper, lambda_s)": COMPONENTS["+ Direct Classifier"],
    "SD / NS-CE mask, both ways (released scripts)": {**COMPONENTS["+ Direct Classifier"], "ns_mode": "mask"},
    "SD / NS-CE mask, targets < 100 images (released no_fm)": {**COMPONENTS["+ Direct Classifier"], "ns_mode": "mask",
                                                                "ns_below": 100},
    "SD / NS-CE mask, + auxiliary blind to auxiliary (released _back)": {
        **COMPONENTS["+ Direct Classifier"], "ns_mode": "mask", "ns_aux_blind": True},
    "SD / NS-CE mask, target samples only": {**COMPONENTS["+ Direct Classifier"], "ns_mode": "mask", "ns_pairs": "target"},
    "SD / NS-CE mask, auxiliary samples only": {**COMPONENTS["+ Direct Classifier"], "ns_mode": "mask", "ns_pairs": "aux"},
}
# the testbed's four claims (docs/testbed.md): each pair of rows differs in one thing, direct classifier
TESTBED_ROWS: dict[str, dict] = {
    "No auxiliary data / BalCE": {"aux": "none", "loss": "balce", "classifier": "direct"},
    "SD / BalCE": {"aux": "neighbours", "loss": "balce", "classifier": "direct"},
    "RD disjoint from SD / BalCE": {"aux": "random-disjoint", "loss": "balce", "classifier": "direct"},
    "SD / NS-CE": {"aux": "neighbours", "loss": "nsce", "classifier": "direct"},
    "SD, shuffled parents / NS-CE": {"aux": "neighbours-shuffled", "loss": "nsce", "classifier": "direct"},
}
# Fig. 5 as rows of their own: the full method with one curation setting changed (the same trainings
# as `--ablate k=1,5 --ablate aux_cap=10,50 --ablate aux_ratio=0:1:3,auto` on a preset at k 5, cap 50, auto)
CURATION_ROWS: dict[str, dict] = {
    "Full method (the preset's k, cap and ratio)": COMPONENTS["+ Direct Classifier"],
    "k = 1": {**COMPONENTS["+ Direct Classifier"], "k": 1},
    "aux_cap = 10": {**COMPONENTS["+ Direct Classifier"], "aux_cap": 10},
    "aux_ratio = 0:1:3": {**COMPONENTS["+ Direct Classifier"], "aux_ratio": parse_value("aux_ratio", "0:1:3")},
}
# named extra row sets: `compare --rows ns-variants` (`--rows-only`: these alone, without Tab. 2 / Tab. 6)
ROW_SETS: dict[str, dict[str, dict]] = {"ns-variants": NS_VARIANTS, "testbed": TESTBED_ROWS, "curation": CURATION_ROWS}
COLUMNS = ("overall", "many", "medium", "few")


def recipe_diff(a: dict, b: dict) -> list[str]:
    """The recipe components (aux, loss, classifier) in which two rows differ."""
    return [k for k in RECIPE_KEYS if a.get(k) != b.get(k)]


def run_name(base: Config, overrides: dict, seed: int) -> str:
    """A readable, stable run name: the method's overrides plus a hash of the whole training recipe.

    The test-time classifier is left out (direct and cRT share one training); any other change,
    in the preset or the overrides, gives a new name, so cached results are never reused wrongly.
    """
    train_keys = {k: v for k, v in sorted(overrides.items()) if k != "classifier"}
    cfg = dataclasses.replace(base, **train_keys, seed=seed)
    h = hashlib.sha1(json.dumps(recipe(cfg), sort_keys=True, default=str).encode())
    return f"{base.dataset}-{'-'.join(f'{k}{v}' for k, v in train_keys.items())}-s{seed}-{h.hexdigest()[:6]}"


def evaluate_trained(trainer: Trainer, classifiers: tuple[str, ...] = EVALUATED_CLASSIFIERS) -> dict[str, dict]:
    """Test metrics of a trained run with each classifier, from one extraction of its features."""
    cfg = trainer.cfg
    with reproducible(cfg):  # cRT's float sums depend on the thread count too
        res = evaluate.evaluate(trainer.model, trainer.data.test, trainer.data.train_counts, trainer.L,
                                trainer.eval_tf, classifier=list(classifiers), train=trainer.data.train, many=cfg.many,
                                few=cfg.few, device=trainer.device)
        compute = trainer.compute()
    for r in res.values():
        r.update(num_aux_classes=int(trainer.K), aux_names=list(trainer.aux_names),
                 num_aux_images=int(len(trainer.aux_images)) if trainer.K else 0, **compute, **val_split(trainer.data))
    return res


def other_classifiers(run_dir, results: dict[str, dict]) -> dict[str, dict]:
    """{classifier: its Overall/Many/Medium/Few} of one training, from `results` or the run's results_*.json."""
    out = {}
    for kind in EVALUATED_CLASSIFIERS:
        path = run_dir / f"results_{kind}.json"
        res = results.get(kind) or (read_json(path, "run results") if path.exists() else None)
        if res is not None:
            out[kind] = {c: res[c] for c in COLUMNS}
    return out


def run_method(base: Config, overrides: dict, seed: int) -> dict:
    """Train (or resume / reuse) one recipe and return its test results with the row's classifier.

    The first call for a training evaluates it with every classifier and caches each result, so
    the rows that differ only in the classifier reuse the same trained model.
    """
    classifier = overrides.get("classifier", "direct")
    cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if k != "classifier"}, seed=seed,
                              classifier=classifier, name=run_name(base, overrides, seed))
    out = cfg.run_dir / f"results_{classifier}.json"
    row = {"aux": cfg.aux, "loss": cfg.loss, "classifier": classifier,
           **{k: v for k, v in overrides.items() if k not in RECIPE_KEYS}}
    if out.exists():
        return dict(json.loads(out.read_text()), recipe=row, classifiers=other_classifiers(cfg.run_dir, {}))
    t = time.time()
    pipeline.prepare(cfg)
    trainer = Trainer(cfg)
    trainer.fit()
    results = evaluate_trained(trainer, tuple(dict.fromkeys((*EVALUATED_CLASSIFIERS, classifier))))
    seconds = round(time.time() - t, 1)  # training (or resuming) and evaluation done by this call
    if trainer.rank == 0:
        for kind, res in results.items():
            write_json(cfg.run_dir / f"results_{kind}.json", dict(res, seconds=seconds))
    return dict(results[classifier], seconds=seconds, recipe=row, classifiers=other_classifiers(cfg.run_dir, results))


def compare(base: Config, methods: dict[str, dict], seeds: list[int]) -> dict[str, list[dict]]:
    """Results of every method for every seed (seed by seed, so an interrupted call leaves whole seeds)."""
    out = {name: [] for name in methods}
    for s in seeds:
        for name, over in methods.items():
            log.info("%s, seed %d", name, s)
            out[name].append(run_method(base, over, s))
    return out


def mean_std(rows: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample standard deviation (over seeds) of one metric, in percent."""
    v = np.array([r[key] for r in rows], float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def compute_cell(rows: list[dict], key: str) -> str:
    """A row's steps or images seen: one number when every seed agrees, else their range; `?` for a run from
    before they were recorded."""
    values = [r.get(key) for r in rows]
    if None in values:
        return "?"
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def other_classifier_cell(rows: list[dict]) -> str:
    """The Overall and Few of the classifier a row does not use (mean over seeds, %), e.g. `cRT 71.6 / 50.2`."""
    kind = rows[0].get("classifier") or rows[0].get("recipe", {}).get("classifier")
    others = [k for k in EVALUATED_CLASSIFIERS if k != kind]
    if not others or not all(others[0] in r.get("classifiers", {}) for r in rows):
        return "-"
    m = {c: float(np.mean([r["classifiers"][others[0]][c] for r in rows])) * 100 for c in ("overall", "few")}
    return f"{CLASSIFIER_LABELS[others[0]]} {m['overall']:.1f} / {m['few']:.1f}"


CLASSIFIER_LABELS = {"direct": "direct", "crt": "cRT", "tau": "tau-norm"}


def markdown_table(results: dict[str, list[dict]], baseline: str | None = None, previous: bool = False) -> str:
    """Recipe, steps, images seen and Overall / Many / Medium / Few (mean ± std over seeds, %) of each row,
    and the other classifier's Overall / Few of the same training.

    The bracket is the change against the `baseline` row, or against the row above (`previous`).
    """
    has_recipe = all(rows and "recipe" in rows[0] for rows in results.values())
    cols = (["method"] + (["aux data / loss / classifier"] if has_recipe else []) + ["steps", "images seen"]
            + [c.title() for c in COLUMNS] + ["other classifier: Overall / Few"])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    names = list(results)
    for i, name in enumerate(names):
        rows = results[name]
        ref = names[i - 1] if previous and i > 0 else (baseline if baseline in results and name != baseline else None)
        cells = [name] + ([recipe_label(rows[0]["recipe"])] if has_recipe else [])
        cells += [compute_cell(rows, "steps"), compute_cell(rows, "images_seen")]
        for c in COLUMNS:
            m, s = mean_std(rows, c)
            cell = f"{m:.1f}" + (f" ± {s:.1f}" if len(rows) > 1 else "")
            if ref is not None:
                cell += f" ({m - mean_std(results[ref], c)[0]:+.1f})"
            cells.append(cell)
        cells.append(other_classifier_cell(rows))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def classifier_table(base: Config, seeds: list[int]) -> str:
    """Every training of the tables with both classifiers: what the classifier alone changes."""
    trainings = {(o["aux"], o["loss"]): o for o in COMPONENTS.values()}
    lines = ["| aux data / loss | Overall, direct | Overall, cRT | Few, direct | Few, cRT |", "|---|---|---|---|---|"]
    for (aux, loss), over in trainings.items():
        rows = {k: [run_method(base, {**over, "classifier": k}, s) for s in seeds] for k in EVALUATED_CLASSIFIERS}
        cells = [f"{mean_std(rows[k], c)[0]:.1f}" + (f" ± {mean_std(rows[k], c)[1]:.1f}" if len(seeds) > 1 else "")
                 for c in ("overall", "few") for k in EVALUATED_CLASSIFIERS]
        lines.append(f"| {AUX_LABELS[aux]} / {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def jaccard(a: list[str], b: list[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two name lists (1.0 for two empty lists)."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def rd_sd_overlap(components: dict[str, list[dict]]) -> list[dict]:
    """Per seed: the RD and SD auxiliary categories actually trained on, and their Jaccard overlap."""
    out = []
    for rd, sd in zip(components["+ Random Category"], components["+ Neighbor Category"]):
        out.append(dict(rd=len(rd["aux_names"]), sd=len(sd["aux_names"]),
                        shared=len(set(rd["aux_names"]) & set(sd["aux_names"])),
                        jaccard=jaccard(rd["aux_names"], sd["aux_names"])))
    return out


def ablation(base: Config, key: str, values: list, seeds: list[int], method: dict | None = None) -> dict:
    """Fig. 5: vary one setting of the full method; returns {value: [results per seed]}."""
    method = method or COMPONENTS["+ Direct Classifier"]
    # the preset's own value is the method's run itself: reuse it rather than train it again
    over = {v: method if v == getattr(base, key) else {**method, key: v} for v in values}
    return {v: [run_method(base, over[v], s) for s in seeds] for v in values}


def budget_label(base: Config) -> str:
    """How a table's rows are given compute: equal steps (the headline) or the paper's equal epochs."""
    if base.steps:
        return f"equal compute: {base.steps:,} optimizer steps per row"
    return f"the paper's equal-epoch protocol: {base.epochs} epochs per row, so steps differ by row"


def tables(base: Config, seeds: list[int], config: str = "", cmd: str = "", start: float | None = None) -> str:
    """Tab. 2, Tab. 6, both classifiers per training and the RD/SD overlap, as markdown (trains what is missing)."""
    components = compare(base, COMPONENTS, seeds)
    methods = compare(base, METHODS, seeds)  # the same trainings: their results are read back, not retrained
    overlap = rd_sd_overlap(components)
    threads = sorted({r.get("threads") for rows in components.values() for r in rows}, key=str)
    seconds = time.time() - (start if start is not None else time.time())
    return (f"Command: `{cmd}`  \nPreset: `{config}` ({base.dataset}, {base.model}; {budget_label(base)}), "
            f"seeds {seeds}, torch threads {threads}; accuracy in %, mean ± sample std over seeds; "
            f"{seconds:.0f} s so far (runs already in `{base.out_dir}/` are reused).\n\n"
            f"### Tab. 2 layout: baseline and additions (change against the baseline; {budget_label(base)})\n\n"
            + markdown_table(methods, baseline="Baseline (BalCE)")
            + f"\n### Tab. 6 layout: contributions of the components (change against the row above; {budget_label(base)})\n\n"
            + markdown_table(components, previous=True)
            + "\n### Each training with both classifiers\n\n" + classifier_table(base, seeds)
            + "\n### RD vs SD categories\n\n| seed | RD | SD | shared | Jaccard |\n|---|---|---|---|---|\n"
            + "".join(f"| {s} | {o['rd']} | {o['sd']} | {o['shared']} | {o['jaccard']:.3f} |\n"
                      for s, o in zip(seeds, overlap)))


def parse_ablation(text: str) -> tuple[str, list]:
    """`--ablate k=1,5` as (key, values); `auto` (or `null`) is the preset's rule, e.g. the paper's ratio."""
    key, sep, values = text.partition("=")
    if not sep or not values:
        raise UserError(f"--ablate {text!r}: expected KEY=V1,V2 (e.g. k=1,5 or aux_ratio=0:1:3,auto)")
    try:
        return key, [None if v.strip() == "auto" else parse_value(key, v) for v in values.split(",")]
    except ConfigError as e:
        raise UserError(f"--ablate {text!r}: {e}") from None


def ablation_tables(base: Config, grid: dict[str, list], seeds: list[int]) -> str:
    """Fig. 5's numbers as markdown: one table per setting, each value against the preset's (trains what is missing)."""
    out = []
    for key, values in grid.items():
        res = ablation(base, key, values, seeds)
        label = {v: f"{key} = {'auto' if v is None else v}" + (" (preset)" if v == getattr(base, key) else "")
                 for v in values}
        preset = label.get(getattr(base, key))
        out.append(f"**{key}**\n\n" + markdown_table({label[v]: rows for v, rows in res.items()}, baseline=preset))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit compare`: Tab. 2 and Tab. 6 on a preset, mean ± std over seeds, as markdown."""
    p = ArgumentParser(prog="python -m ltkit compare", description=main.__doc__)
    p.add_argument("--config", default="configs/builtin.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", help="markdown file to write (default: print only)")
    p.add_argument("--ablate", action="append", default=[], metavar="KEY=V1,V2",
                   help="also Fig. 5: vary one setting of the full method (repeatable), "
                        "e.g. --ablate k=1,5 --ablate aux_cap=10,50 --ablate aux_ratio=0:1:3,auto")
    p.add_argument("--steps", type=int, help="optimizer steps per row (equal compute; the headline tables); "
                                             "default: the preset's `steps`, else its `epochs` for every row")
    p.add_argument("--equal-epochs", action="store_true",
                   help="with a step budget, also Tab. 2 at the preset's equal epochs (the paper's protocol), labelled")
    p.add_argument("--rows", action="append", default=[], choices=sorted(ROW_SETS),
                   help="also a named set of rows, e.g. ns-variants (NS-CE soft and every released mask variant)")
    p.add_argument("--rows-only", action="store_true", help="only the --rows tables (no Tab. 2 / Tab. 6 trainings)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the preset")
    argv = sys.argv[1:] if argv is None else argv
    options, overrides = split_overrides(list(argv), valued=("--ablate",))
    args = p.parse_args(options)
    no_stray_arguments(args.overrides)
    base = load_config(args.config, overrides)
    if args.steps is not None:
        if args.steps < 1:
            raise UserError(f"--steps {args.steps}: a budget is at least 1 optimizer step")
        base = dataclasses.replace(base, steps=args.steps)
    if args.equal_epochs and not base.steps:
        raise UserError("--equal-epochs adds the equal-epoch table beside an equal-step one: give --steps N too")
    grid = dict(parse_ablation(a) for a in args.ablate)
    t = time.time()
    rows = [*([] if args.rows_only else COMPONENTS.values()), *(r for n in args.rows for r in ROW_SETS[n].values())]
    pipeline.prepare_tables(base, args.seeds, rows, grid)  # photos, neighbours, crawl, filter if missing
    cmd = "python -m ltkit compare " + " ".join(argv)
    for i in range(len(args.seeds)):  # the tables of the seeds done so far, rewritten after each seed
        seeds = args.seeds[:i + 1]
        text = (f"Command: `{cmd}`  \nSeeds {seeds}; accuracy in %, mean ± sample std over seeds.\n" if args.rows_only
                else tables(base, seeds, args.config, cmd, t))
        for name in args.rows:
            text += (f"\n### Rows `{name}` (change against the first row; {budget_label(base)})\n\n"
                     + markdown_table(compare(base, ROW_SETS[name], seeds), baseline=next(iter(ROW_SETS[name]))))
        if args.equal_epochs:
            epochs = dataclasses.replace(base, steps=None)
            text += (f"\n### Tab. 2 layout at {budget_label(epochs)} (change against the baseline)\n\n"
                     + markdown_table(compare(epochs, METHODS, seeds), baseline="Baseline (BalCE)"))
        if grid:
            text += "\n### Fig. 5 layout: curation ablations of the full method (change against the preset's value)\n\n"
            text += ablation_tables(base, grid, seeds)
        if args.out:
            atomic_write_text(args.out, text)
    print(text)
    return 0
