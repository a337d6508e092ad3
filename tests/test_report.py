"""The method tables' protocol: explicit recipes, one component per Tab. 6 step, one training per recipe and seed."""
from pathlib import Path

import pytest

from ltkit import report
from ltkit.config import load_config
from ltkit.errors import UserError
from ltkit.report import COMPONENTS, METHODS, RECIPE_KEYS, recipe_diff

ROOT = Path(__file__).resolve().parents[1]


def test_every_row_names_its_whole_recipe():
    for table in (COMPONENTS, METHODS):
        for name, over in table.items():
            assert set(RECIPE_KEYS) <= set(over), name


def test_tab6_rows_differ_in_exactly_one_component():
    rows = list(COMPONENTS.values())
    for above, below in zip(rows, rows[1:]):
        assert len(recipe_diff(above, below)) == 1, (above, below)
    # every row but the last re-trains the classifier; the last keeps the direct one
    assert [r["classifier"] for r in rows] == ["crt"] * (len(rows) - 1) + ["direct"]
    assert recipe_diff(rows[-2], rows[-1]) == ["classifier"]


def test_recipe_diff_sees_each_component():
    a = {"aux": "none", "loss": "balce", "classifier": "crt"}
    assert recipe_diff(a, dict(a)) == []
    assert recipe_diff(a, {**a, "aux": "random", "loss": "nsce"}) == ["aux", "loss"]


def test_tab2_rows_are_tab6_rows():
    """As in the paper: the baseline is one-stage BalCE (direct); +RD, +SD and Ours are Tab. 6's rows."""
    tab6 = list(COMPONENTS.values())
    assert METHODS["Baseline (BalCE)"] == {**tab6[0], "classifier": "direct"}
    assert METHODS["+ RD"] == COMPONENTS["+ Random Category"] and METHODS["+ SD"] == COMPONENTS["+ Neighbor Category"]
    assert METHODS["+ Ours (NS-CE, direct)"] == tab6[-1]
    assert all(m in tab6 for name, m in METHODS.items() if name != "Baseline (BalCE)")


def test_ns_variant_rows_differ_from_the_paper_row_in_the_mask_only():
    rows = report.NS_VARIANTS
    paper = rows["SD / NS-CE soft (paper, lambda_s)"]
    for name, over in rows.items():
        if over.get("loss") == "nsce" and over is not paper:
            assert {k for k in over if over[k] != paper.get(k)} <= {"ns_mode", "ns_pairs", "ns_below", "ns_aux_blind"}
            assert over["ns_mode"] == "mask", name
    assert len({tuple(sorted(o.items())) for o in rows.values()}) == len(rows)  # every row its own training


def test_curation_rows_are_the_fig5_ablation_runs():
    """The Fig. 5 claim rows change one curation setting of the full method and name the runs --ablate trains."""
    base = load_config(ROOT / "configs" / "builtin.yaml")
    full, *rest = report.CURATION_ROWS.values()
    assert full == COMPONENTS["+ Direct Classifier"]
    assert [sorted(k for k in row if row[k] != full.get(k)) for row in rest] == [["k"], ["aux_cap"], ["aux_ratio"]]
    grid = dict(report.parse_ablation(a) for a in ("k=1,5", "aux_cap=10,50", "aux_ratio=0:1:3,auto"))
    ablated = {report.run_name(base, {**full, key: v} if v != getattr(base, key) else full, 0)
               for key, values in grid.items() for v in values}
    assert {report.run_name(base, row, 0) for row in report.CURATION_ROWS.values()} == ablated


class FakeTrainer:
    """Stands in for the trainer: counts trainings; its 'accuracy' encodes the recipe and classifier."""

    built: list = []
    configs: list = []

    def __init__(self, cfg):
        self.cfg, self.rank = cfg, 0
        FakeTrainer.built.append((cfg.aux, cfg.loss, cfg.seed))
        FakeTrainer.configs.append(cfg)

    def fit(self):
        return self


def fake_evaluate(trainer, classifiers):
    cfg = trainer.cfg
    score = {"none": 0.5, "random": 0.6, "neighbours": 0.7}[cfg.aux] + (0.05 if cfg.loss == "nsce" else 0)
    names = {"none": [], "random": ["a", "b", "c"], "neighbours": ["b", "c", "d", "e"]}[cfg.aux]
    steps = cfg.steps or cfg.epochs * (10 if cfg.aux == "none" else 18)  # an auxiliary epoch is longer
    return {k: {c: score + (0.1 if k == "crt" else 0) + cfg.seed / 100 for c in report.COLUMNS}
            | {"aux_names": names, "steps": steps, "images_seen": steps * cfg.batch_size} for k in classifiers}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    FakeTrainer.built, FakeTrainer.configs = [], []
    monkeypatch.setattr(report, "Trainer", FakeTrainer)
    monkeypatch.setattr(report, "evaluate_trained", fake_evaluate)
    return load_config(ROOT / "configs" / "builtin-tiny.yaml", {"out_dir": str(tmp_path)})


def test_one_training_per_recipe_and_seed(fake, capsys):
    seeds = [0, 1]
    tab6 = report.compare(fake, COMPONENTS, seeds)
    tab2 = report.compare(fake, METHODS, seeds)
    report.classifier_table(fake, seeds)
    trainings = {(o["aux"], o["loss"]) for o in COMPONENTS.values()}
    assert len(FakeTrainer.built) == len(set(FakeTrainer.built)) == len(trainings) * len(seeds)
    # direct and cRT come from one trained model, and Tab. 2 reprints Tab. 6's numbers
    assert tab6["+ Direct Classifier"][0]["overall"] == pytest.approx(tab6["+ Neighbor Silencing"][0]["overall"] - 0.1)
    for t2, t6 in (("+ RD", "+ Random Category"), ("+ SD", "+ Neighbor Category"),
                   ("+ Ours (NS-CE, direct)", "+ Direct Classifier")):
        assert [r["overall"] for r in tab2[t2]] == [r["overall"] for r in tab6[t6]]
    assert [r["recipe"] for r in tab6["+ Direct Classifier"]] == [COMPONENTS["+ Direct Classifier"]] * 2


def test_tables_show_recipe_spread_and_overlap(fake):
    tab6 = report.compare(fake, COMPONENTS, [0, 1])
    md = report.markdown_table(tab6, previous=True)
    assert "aux data / loss / classifier" in md
    assert "| + Direct Classifier | neighbour categories (SD) / nsce / direct |" in md
    assert "± 0.7" in md  # seeds 0 and 1 differ by 1 point: sample std 0.71
    assert "(-10.0)" in md  # direct vs cRT row above
    o = report.rd_sd_overlap(tab6)
    assert o[0] == dict(rd=3, sd=4, shared=2, jaccard=pytest.approx(2 / 5))


def test_cli_writes_all_tables(fake, tmp_path, monkeypatch):
    out = tmp_path / "tables.md"
    assert report.main(["--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--seeds", "0", "1",
                        f"out_dir={tmp_path}", "--out", str(out)]) == 0
    text = out.read_text()
    for part in ("Tab. 2 layout", "Tab. 6 layout", "both classifiers", "Jaccard", "| 1 | 3 | 4 | 2 | 0.400 |"):
        assert part in text, part


def test_cli_ablations_vary_one_setting_over_seeds(fake, tmp_path):
    out = tmp_path / "tables.md"
    argv = ["--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--seeds", "0", "1", "--ablate", "k=1,3",
            f"out_dir={tmp_path}", "--ablate", "aux_ratio=0:1:3,auto", "--out", str(out)]
    assert report.main(argv) == 0
    text = out.read_text()
    assert "Fig. 5 layout" in text and "| k = 3 (preset) |" in text and "| aux_ratio = auto (preset) |" in text
    assert "| aux_ratio = 0:1:3 |" in text and "± 0.7" in text  # two seeds: a spread, not one run
    # the preset's value reuses the method's runs: one extra training per other value and seed
    ks = [c for c in FakeTrainer.built if c == ("neighbours", "nsce", 0)]
    assert len(ks) == 3  # + Neighbor Silencing's run, k=1 and aux_ratio=0:1:3 (k=3 and auto are that same run)


def test_cli_refuses_a_bad_ablation(fake, tmp_path):
    from ltkit.errors import UserError

    for bad, match in (("k", "expected KEY=V1,V2"), ("nope=1,2", "unknown config key 'nope'")):
        with pytest.raises(UserError, match=match):
            report.main(["--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--ablate", bad, f"out_dir={tmp_path}"])


def test_every_row_prints_steps_images_and_the_other_classifier(fake):
    tab2 = report.compare(fake, METHODS, [0])
    md = report.markdown_table(tab2, baseline="Baseline (BalCE)")
    assert "| steps | images seen |" in md and "other classifier: Overall / Few" in md
    # the baseline's main number is direct BalCE (50.0), its cRT (60.0) beside it; equal epochs: 4 vs 2 epochs' steps
    assert "| Baseline (BalCE) | none / balce / direct | 20 | 1,280 | 50.0 |" in md and "cRT 60.0 / 60.0" in md
    assert "| + SD | neighbour categories (SD) / balce / crt | 36 | 2,304 | 80.0 (+30.0) |" in md
    assert "direct 70.0 / 70.0" in md


def test_cli_equal_steps_headline_equal_epochs_labelled_and_variant_rows(fake, tmp_path):
    out = tmp_path / "tables.md"
    argv = ["--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--seeds", "0", "--steps", "25",
            "--equal-epochs", "--rows", "ns-variants", f"out_dir={tmp_path}", "--out", str(out)]
    assert report.main(argv) == 0
    text = out.read_text()
    assert "equal compute: 25 optimizer steps per row" in text
    assert "Tab. 2 layout at the paper's equal-epoch protocol: 2 epochs per row" in text
    assert "| SD / NS-CE mask, targets < 100 images (released no_fm) | neighbour categories (SD) / nsce / direct" \
           " (ns_mode=mask, ns_below=100) | 25 |" in text
    steps = {(c.aux, c.loss, c.ns_mode, c.ns_below, c.ns_pairs, c.ns_aux_blind, c.steps) for c in FakeTrainer.configs}
    assert {s[-1] for s in steps} == {25, None}  # equal-step runs and the equal-epoch ones
    assert len(FakeTrainer.configs) == len(steps)  # no training twice
    assert len([s for s in steps if s[2] == "mask"]) == 5  # one training per mask variant
    with pytest.raises(UserError, match="--equal-epochs"):
        report.main(argv[:4] + ["--equal-epochs", f"out_dir={tmp_path}"])


def test_curation_claims_judge_overall_many_and_few(fake):
    """`paired --claims curation`: F1-F3, each full method − one changed row, on three metrics, by t05."""
    from ltkit import paired

    text = paired.claims(fake, [0, 1, 2], "curation")
    assert text.startswith("rule: t05")
    rows = [line for line in text.splitlines() if line.startswith("| F")]
    assert [r.split(" | ")[2] for r in rows] == ["overall", "many", "few"] * 3
    assert all(r.split(" | ")[1].startswith(paired.FULL + " − ") for r in rows)
    # every row here is the same recipe to the fake trainer: no difference, nothing called
    assert all(r.endswith("| +0.0 ± 0.0 | undecided |") for r in rows)
    assert {c.aux_cap for c in FakeTrainer.configs} >= {10} and {c.k for c in FakeTrainer.configs} >= {1}
