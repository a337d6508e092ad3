"""The granularity pilot: controlled draws, imbalance subsampling, head/tail, the resumable grid, real-data pools."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from ltkit import notebooks
from ltkit.config import load_config
from ltkit.data.taxonomy import Taxonomy
from ltkit.pilot import (GranularityError, collect, draw_classes, grid_cells, head_tail_classes, ratio_counts,
                         run_cell, run_pilot, sibling_errors, superclass_members, world_pool)
from ltkit.pilot.draw import grid_level
from ltkit.pilot.grid import cell_path
from ltkit.world import FAMILIES, world_taxonomy

ROOT = Path(__file__).resolve().parent.parent
PAPER_RATIOS = [1.0, 0.5, 0.1, 0.05, 0.01, 0.001]


# ---------------------------------------------------------------------------------------------
# draws with controlled granularity


@pytest.mark.parametrize("s", [4, 8, 16, 24])
def test_world_draw_has_exactly_s_families_and_n_classes(s):
    tax = world_taxonomy()
    d = draw_classes(tax, 48, s, seed=3, level=1)
    assert len(d.classes) == len(set(d.classes)) == 48 and d.num_superclasses == s
    assert {tax.superclass(c, 1) for c in d.classes} == set(d.superclasses) <= set(FAMILIES)
    sizes = np.unique(d.superclasses, return_counts=True)[1]
    assert sizes.max() - sizes.min() <= 1  # as even as the families allow
    assert d == draw_classes(tax, 48, s, seed=3, level=1)  # seeded
    assert d.classes != draw_classes(tax, 48, s, seed=4, level=1).classes


def write_taxonomy(path: Path) -> Taxonomy:
    """animal > {dog: 5, cat: 2, bird: 1}, plant > {tree: 4, flower: 3}, thing > {car: 1}."""
    sizes = {("animal", "dog"): 5, ("animal", "cat"): 2, ("animal", "bird"): 1, ("plant", "tree"): 4,
             ("plant", "flower"): 3, ("thing", "car"): 1}
    classes = {f"{fam}{i}": [root, fam] for (root, fam), n in sizes.items() for i in range(n)}
    path.write_text(json.dumps({"classes": classes}))
    return Taxonomy.from_json(path)


def test_json_taxonomy_draw_and_levels(tmp_path):
    tax = write_taxonomy(tmp_path / "tax.json")
    for n, s in [(6, 3), (8, 2), (16, 6), (3, 3)]:
        d = draw_classes(tax, n, s, seed=0, level=1)
        assert d.num_classes == n and d.num_superclasses == s and d.level == 1
        assert all(tax.superclass(c, 1) == sup for c, sup in zip(d.classes, d.superclasses))
    # uneven capacities: 9 over 3 families takes the big ones and still hits N
    d = draw_classes(tax, 11, 3, seed=1, level=1)
    assert d.num_classes == 11 and d.num_superclasses == 3
    # "auto" takes the coarsest level that can do it: 3 roots hold 16 classes, so level 0 for S <= 3
    assert draw_classes(tax, 6, 3, seed=0).level == 0
    assert draw_classes(tax, 6, 4, seed=0).level == 1
    assert set(superclass_members(tax, 0)) == {"animal", "plant", "thing"}


def test_impossible_draws_name_what_is_missing(tmp_path):
    tax = write_taxonomy(tmp_path / "tax.json")
    with pytest.raises(GranularityError, match=r"there are only 6 superclasses with classes, 1 short of S=7"):
        draw_classes(tax, 10, 7, level=1, pool_name="toy")
    with pytest.raises(GranularityError, match=r"of toy: the 2 largest superclasses hold only 9 classes, 1 short of N=10"
                                               r" \(largest: dog \(5\), tree \(4\)\)"):
        draw_classes(tax, 10, 2, level=1, pool_name="toy")
    with pytest.raises(GranularityError, match=r"level 2 does not exist: levels run 0\.\.1"):
        draw_classes(tax, 4, 2, level=2)
    with pytest.raises(GranularityError, match=r"no taxonomy level can supply N=17 classes over S=2 superclasses: "
                                               r"at level 0 the 2 largest"):
        draw_classes(tax, 17, 2)
    with pytest.raises(GranularityError, match="only 28 superclasses"):
        draw_classes(world_taxonomy(), 48, 30, level=1)
    # a grid is checked whole: S=2 fits at the level S=6 picks, yet cannot hold N=10 there
    with pytest.raises(GranularityError, match=r"N=10 classes over S=2 superclasses at level 1 of toy: the 2 largest"):
        grid_level(tax, 10, [6, 2], pool_name="toy")
    assert grid_level(tax, 6, [6, 2, 3]) == 1


# ---------------------------------------------------------------------------------------------
# imbalance subsampling, head and tail


@pytest.mark.parametrize("ratio", PAPER_RATIOS)
def test_subsampled_counts_follow_each_ratio(ratio):
    rng = np.random.default_rng(0)
    n, head = 12, 40
    train = [rng.normal(c, 1.0, (head, 4)).astype(np.float32) for c in range(n)]
    test = [rng.normal(c, 1.0, (5, 4)).astype(np.float32) for c in range(n)]
    res = run_cell(train, test, head, ratio, seed=1, steps=5)
    want = ratio_counts(n, head, ratio)
    assert want[0] == head and want[-1] == max(1, int(head * ratio + 1e-9)) and (np.diff(want) <= 0).all()
    # every class got the count of its profile rank; which class is head is a seeded permutation
    assert sorted(res["counts"], reverse=True) == want.tolist() and res["train_images"] == want.sum()
    assert res["head_count"] == head and res["tail_count"] == want[-1]
    assert res["head_classes"] == res["tail_classes"] == 4
    assert res["gap"] == pytest.approx(res["head_acc"] - res["tail_acc"], abs=1e-2)
    if ratio < 1:
        order = np.random.default_rng([1, 17]).permutation(n)
        assert res["counts"][order[0]] == head  # the permutation, not class 0, holds the head
    with pytest.raises(ValueError, match="must be in"):
        ratio_counts(n, head, 1.5)


def test_head_and_tail_are_the_top_and_bottom_thirds():
    counts = ratio_counts(10, 100, 0.001)  # several classes share the floor of 1 image
    order = np.array([3, 1, 4, 0, 5, 9, 2, 6, 8, 7])
    h, t = head_tail_classes(counts, order)
    assert h.tolist() == [3, 1, 4, 0] and t.tolist() == [2, 6, 8, 7]
    with pytest.raises(ValueError, match="overlaps"):
        head_tail_classes(counts, order, frac=0.6)


def test_sibling_errors_count_tail_errors_inside_the_superclass():
    groups = ["a", "a", "a", "b", "b", "c"]            # classes 0-2 in a, 3-4 in b, 5 in c
    labels = np.array([0, 0, 3, 3, 5, 5, 1])
    pred = np.array([1, 4, 4, 0, 0, 5, 1])            # tail = {0, 3, 5}: errors 0->1 (sib), 0->4, 3->4 (sib), 3->0, 5->0
    share, chance = sibling_errors(pred, labels, np.array([0, 3, 5]), groups)
    assert share == pytest.approx(100 * 2 / 5)
    assert chance == pytest.approx(100 * np.mean([2 / 5, 2 / 5, 1 / 5, 1 / 5, 0]))
    assert np.isnan(sibling_errors(labels, labels, np.array([0]), groups)[0])


def test_balanced_softmax_probe_learns_separable_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (6, 8))
    train = [rng.normal(c, 1.0, (50, 8)) for c in centres]
    test = [rng.normal(c, 1.0, (30, 8)) for c in centres]
    res = run_cell(train, test, 50, 0.1, seed=0, steps=200)
    assert res["overall_acc"] > 90 and res["tail_acc"] > 80


# ---------------------------------------------------------------------------------------------
# pools


def test_world_pool_classes_are_unseen_by_the_world(tiny_world):
    pool = world_pool(tiny_world, 6, 2)
    assert len(pool.class_names) == 12 * len(FAMILIES)
    assert not set(pool.class_names) & set(tiny_world.all_names)  # no world (hence no encoder) label
    fams = superclass_members(pool.taxonomy, 1)
    assert len(fams) == len(FAMILIES) and {len(v) for v in fams.values()} == {12}
    a, b = pool.images(5, "train"), pool.images(5, "train")
    assert len(a) == 6 and a.images.shape[1:] == (32, 32, 3) and np.array_equal(a.images, b.images)
    assert not np.array_equal(pool.images(5, "test").images, a.images[:2])


def tiny_overrides(out_dir, **extra) -> list[str]:
    base = {"pilot.out_dir": out_dir, "pilot.num_classes": 6, "pilot.superclasses": "[2,3]",
            "pilot.ratios": "[1.0,0.5,0.1]", "pilot.seeds": "[0,1]", "pilot.head": 6, "pilot.test_per_class": 3,
            "pilot.steps": 20, "model": "ltkit_cnn_tiny", "pretrained": "null", "progress": "false"}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def write_folder_pool(root: Path, per_class: int = 9) -> Path:
    """3 families x 4 classes of small PNGs, and their taxonomy JSON."""
    rng = np.random.default_rng(0)
    classes = {}
    for f, fam in enumerate(["dog", "tree", "car"]):
        for i in range(4):
            name = f"{fam}_{i}"
            classes[name] = ["thing", fam]
            (root / "images" / name).mkdir(parents=True)
            for j in range(per_class):
                px = np.clip(rng.normal(40 * f + 10 * i, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(root / "images" / name / f"{j}.png")
    (root / "taxonomy.json").write_text(json.dumps({"classes": classes}))
    return root / "taxonomy.json"


@pytest.mark.slow
def test_grid_resumes_after_a_killed_process(tmp_path, world_cache):
    """A real process is killed mid-grid; the re-run computes only the missing cells."""
    tax = write_folder_pool(tmp_path)
    out = tmp_path / "grid"
    args = ["--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--figures", str(tmp_path / "figures"),
            *tiny_overrides(str(out), **{"pilot.pool": "folders", "pilot.taxonomy": str(tax), "pilot.steps": 300,
                                         "data_root": str(tmp_path / "images")})]
    env = {**os.environ, "LTKIT_CACHE": str(world_cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ltkit", "pilot", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300  # only bounds a hung process: under load the start-up alone can take a minute
    while len(list((out / "cells").glob("*.json"))) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "cells").glob("*.json")}
    cells = grid_cells([2, 3], [1.0, 0.5, 0.1], [0, 1])
    assert 2 <= len(before) < len(cells), "the process should die part-way through the grid"
    from ltkit.cli import main

    assert main(["pilot", *args]) == 0
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "cells").glob("*.json")}
    assert set(after) == {f"{c.name}.json" for c in cells}
    assert all(after[k] == v for k, v in before.items())  # finished cells were not recomputed
    rows = collect(out)
    assert len(rows) == len(cells) and (out / "results.csv").read_text().count("\n") == len(cells) + 1
    # --cell i on a finished grid does nothing; a grid of another recipe in the same folder is refused
    mtime = cell_path(out, cells[4]).stat().st_mtime_ns
    assert main(["pilot", *args, "--cell", "4"]) == 0 and cell_path(out, cells[4]).stat().st_mtime_ns == mtime
    assert main(["pilot", *args, "pilot.head=5"]) == 2
    assert (tmp_path / "figures" / "pilot_gap_folders.png").is_file() and (out / "gap_table.md").is_file()
    entry = json.loads((tmp_path / "figures" / "catalogue.json").read_text())["pilot_gap_folders"]
    assert "at ratio" in entry["sentence"] and "| S \\ ratio |" in entry["numbers"]  # catalogued with its numbers


def test_cell_option_runs_one_cell(tmp_path, tiny_world, capsys):
    from ltkit.cli import main

    out = tmp_path / "grid"
    args = ["pilot", "--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--cell", "3", *tiny_overrides(str(out))]
    assert main(args) == 0
    files = list((out / "cells").glob("*.json"))
    assert [f.name for f in files] == [f"{grid_cells([2, 3], [1.0, 0.5, 0.1], [0, 1])[3].name}.json"]
    cell = json.loads(files[0].read_text())
    assert len(set(cell["superclass_of"])) == 2 and len(cell["classes"]) == 6
    assert cell["row"]["head_classes"] == 2 and "tail_sibling_errors" in cell["row"]  # NaN when the tail has no error
    assert main(["pilot", "--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--cell", "99", *tiny_overrides(str(out))]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --cell 99")


def write_cifar(root: Path, per_class: int = 8, test_per_class: int = 3) -> None:
    """CIFAR-100-format pickles: 12 fine classes under 4 coarse labels, 3 each."""
    rng = np.random.default_rng(0)
    fine, coarse = [f"fine{i}" for i in range(12)], [f"coarse{i}" for i in range(4)]
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", per_class), ("test", test_per_class)):
        y = np.repeat(np.arange(12), n)
        x = rng.integers(0, 256, (len(y), 3072), dtype=np.uint8)
        obj = {"data": x, "fine_labels": y.tolist(), "coarse_labels": (y // 3).tolist()}
        (folder / name).write_bytes(pickle.dumps(obj))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": fine, "coarse_label_names": coarse}))


def test_cifar100_pool_uses_coarse_labels(tmp_path, world_cache):
    write_cifar(tmp_path / "cifar")
    cfg = load_config(ROOT / "configs" / "builtin-tiny.yaml", tiny_overrides(
        str(tmp_path / "grid"), **{"pilot.pool": "cifar100", "data_root": str(tmp_path / "cifar"), "pilot.level": "auto",
                                   "pilot.superclasses": "[2,4]", "pilot.ratios": "[1.0,0.1]", "pilot.seeds": "[0]"}))
    rows = run_pilot(cfg).rows
    assert [(r["superclasses"], r["ratio"]) for r in rows] == [(2, 1.0), (2, 0.1), (4, 1.0), (4, 0.1)]
    assert {r["pool"] for r in rows} == {"CIFAR-100"} and {r["level"] for r in rows} == {0}
    for p in (tmp_path / "grid" / "cells").glob("*.json"):
        cell = json.loads(p.read_text())
        coarse = {int(c[4:]) // 3 for c in cell["classes"]}  # fine i is under coarse i // 3
        assert len(coarse) == cell["row"]["superclasses"] == len(set(cell["superclass_of"]))
    bad = load_config(ROOT / "configs" / "builtin-tiny.yaml", tiny_overrides(
        str(tmp_path / "bad"), **{"pilot.pool": "cifar100", "data_root": str(tmp_path / "cifar"), "pilot.level": "auto",
                                  "pilot.superclasses": "[5]"}))
    with pytest.raises(GranularityError, match="only 4 superclasses"):
        run_pilot(bad)


# ---------------------------------------------------------------------------------------------
# notebook 01


@pytest.mark.slow
@pytest.mark.xdist_group("main-job")
def test_notebook_01_on_builtin_tiny(main_job):
    """Notebook 01 as the main job executed it on builtin-tiny (preset, out_dir and figures_dir are all it takes)."""
    path = notebooks.NOTEBOOK_DIR / "01_granularity_pilot.ipynb"
    nb = nbformat.read(main_job.executed / path.name, as_version=4)
    assert nb.metadata["papermill"]["parameters"]["preset"] == "builtin-tiny"
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in outs)
    assert "| S \\ ratio |" in text and "gap" in text
    assert (main_job.figures / "pilot_gap_builtin-tiny.png").stat().st_size > 1000
    assert len(list(main_job.runs.glob("pilot-builtin-tiny-*/results.csv"))) == 1
    clean = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in clean.cells if c.cell_type == "code")


# ---------------------------------------------------------------------------------------------
# trained features (pilot.features=trained)


def test_relative_tail_divides_by_the_same_draws_ratio_one_cell():
    from ltkit.pilot import relative_tail, summarise

    rows = [dict(superclasses=2, seed=s, ratio=r, tail_acc=t, gap=0.0) for s, r, t in
            [(0, 1.0, 80.0), (0, 0.1, 40.0), (1, 1.0, 50.0), (1, 0.1, 40.0), (2, 0.1, 10.0)]]
    rel = {(r["seed"], r["ratio"]): r["tail_rel"] for r in relative_tail(rows)}
    assert rel[0, 1.0] == 100 and rel[0, 0.1] == 50 and rel[1, 0.1] == 80
    assert np.isnan(rel[2, 0.1])  # no ratio-1 cell for this draw
    at = {r["ratio"]: r for r in summarise(rows)}
    assert at[0.1]["tail_rel"] == 65 and at[0.1]["seeds"] == 3  # the NaN seed is left out of the mean


def test_trained_cell_learns_separable_images():
    """A scratch CNN trained for a few steps separates solid-colour classes; the cell is deterministic."""
    from ltkit.models import create_model
    from ltkit.pilot.learn import seeded_model, train_cell

    rng = np.random.default_rng(0)
    colours = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20]])

    def images(c, n):
        return np.clip(colours[c] + rng.normal(0, 10, (n, 32, 32, 3)), 0, 255).astype(np.uint8)

    train = [images(c, 16) for c in range(4)]
    test = [images(c, 8) for c in range(4)]
    make = seeded_model(lambda n: create_model("ltkit_cnn_tiny", n, img_size=32), 0)
    a = train_cell(train, test, head=16, ratio=0.5, seed=0, make_model=make, steps=40, lr=0.05, batch_size=32)
    b = train_cell(train, test, head=16, ratio=0.5, seed=0, make_model=make, steps=40, lr=0.05, batch_size=32)
    untrained = train_cell(train, test, head=16, ratio=0.5, seed=0, make_model=make, steps=1, lr=1e-6, batch_size=32)
    assert a == b
    assert a["overall_acc"] > 90 > untrained["overall_acc"]
    assert a["train_images"] == sum(ratio_counts(4, 16, 0.5))


def test_trained_grid_on_builtin_tiny(tmp_path, tiny_world, capsys):
    """The grid with a model trained per cell: its own folder and recipe, one JSON per cell, both tables, the figure."""
    from ltkit.cli import main

    out = tmp_path / "trained"
    args = ["pilot", "--config", str(ROOT / "configs" / "builtin-tiny.yaml"), "--figures", str(tmp_path / "figs"),
            *tiny_overrides(str(out), **{"pilot.features": "trained", "pilot.train_steps": 2,
                                         "pilot.train_batch_size": 8, "pilot.seeds": "[0]"})]
    assert main(args) == 0
    cells = grid_cells([2, 3], [1.0, 0.5, 0.1], [0])
    assert {p.name for p in (out / "cells").glob("*.json")} == {f"{c.name}.json" for c in cells}
    recipe = json.loads((out / "grid.json").read_text())["recipe"]
    assert recipe["probe"]["features"] == "trained" and recipe["probe"]["steps"] == 2
    row = json.loads(cell_path(out, cells[1]).read_text())["row"]
    assert row["train_images"] == sum(ratio_counts(6, 6, 0.5)) and "final_loss" in row
    table = (out / "gap_table.md").read_text()
    assert table.count("| S \\ ratio |") == 2 and "tail accuracy / tail accuracy at ratio 1" in table
    assert (tmp_path / "figs" / "pilot_trained_builtin-tiny.png").is_file()
    before = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert main(args) == 0  # resumes: nothing recomputed
    assert before == {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert main([*args, "pilot.features=learned"]) == 2
    assert "pilot.features='learned'" in capsys.readouterr().err


def test_trained_features_need_in_memory_images(tmp_path):
    from ltkit.errors import UserError
    from ltkit.pilot import class_images, folder_pool

    tax = write_folder_pool(tmp_path)
    pool = folder_pool(tmp_path / "images", str(tax), test_per_class=2)
    with pytest.raises(UserError, match="in-memory images"):
        class_images(pool, [0], 3, 2)
