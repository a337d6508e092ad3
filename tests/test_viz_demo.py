"""The main job's plan: the trainings it starts are exactly the runs notebooks 03 and 04 read."""
from ltkit import demo, report
from ltkit.config import load_config
from ltkit.paths import from_root


def test_planned_trainings_are_the_runs_the_notebooks_read(monkeypatch, tmp_path):
    base = load_config(from_root("configs/builtin-tiny.yaml"), {"out_dir": str(tmp_path)})
    seeds, ablations = [0, 1], {"k": [1, base.k], "aux_ratio": ["0:1:3", None]}
    read = set()
    monkeypatch.setattr(report, "run_method", lambda b, over, s: read.add(report.run_name(b, over, s)) or {})
    report.compare(base, report.COMPONENTS, seeds)
    for key, values in ablations.items():
        report.ablation(base, key, values, seeds)
    planned = demo.planned_trainings(base, seeds, ablations)
    names = [report.run_name(base, o, s) for o, s in planned]
    assert len(names) == len(set(names)) and set(names) == read
    # 4 trainings per seed behind Tab. 2 / Tab. 6 (the classifier is an evaluation), + k=1 and ratio 0:1:3
    assert len(names) == 2 * (4 + 2)
    assert all(o["aux"] != "none" for o, _ in planned[:-2])  # long trainings first, the two baselines last
    assert len(demo.missing_trainings(base, seeds, ablations)) == len(names)
