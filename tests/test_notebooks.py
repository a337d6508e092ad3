"""The main job on builtin-tiny: world figures, then every numbered notebook executed by a real kernel."""
import pytest
import json
from pathlib import Path

import nbformat
import numpy as np

from ltkit import notebooks


def test_notebooks_are_committed_clean():
    for path in notebooks.numbered_notebooks():
        nb = nbformat.read(path, as_version=4)
        assert "preset" in notebooks.parameter_names(nb), f"{path.name}: no `preset` in the parameters cell"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def test_parameters_become_literals_or_are_refused():
    import numpy as np
    import pytest

    from ltkit.errors import UserError

    value = {"out": Path("/tmp/x"), "k": np.int64(3), "lr": np.float32(0.5), "ks": (1, np.int64(2)),
             "grid": np.arange(2), "none": None}
    assert notebooks.literal(value) == {"out": "/tmp/x", "k": 3, "lr": 0.5, "ks": [1, 2], "grid": [0, 1], "none": None}
    assert type(notebooks.literal(np.int64(3))) is int
    with pytest.raises(UserError, match=r"parameter p\['f'\]: builtin_function_or_method is not a literal"):
        notebooks.literal({"f": len}, "p")


def test_papermill_injects_and_records_parameters(tmp_path):
    """A real kernel: the injected cell follows `parameters`, undeclared names are left out, values arrive typed."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("preset = 'builtin'\nk = 5\nout = ''", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(preset, k + 1, type(out).__name__)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "01_t.ipynb", tmp_path / "out" / "01_t.ipynb"
    nbformat.write(nb, src)
    assert notebooks.parameter_names(nb) == ["preset", "k", "out"]
    done = notebooks.execute(src, out, {"preset": "builtin-tiny", "k": np.int64(2), "out": tmp_path,
                                        "undeclared": 1}, progress=False)
    assert done.cells[2].metadata["tags"] == ["injected-parameters"] and "undeclared" not in done.cells[2].source
    assert done.cells[3].outputs[0]["text"] == "builtin-tiny 3 str\n"
    assert nbformat.read(out, as_version=4).metadata["papermill"]["parameters"]["k"] == 2


def test_headless_runs_turn_widgets_off_unless_asked(tmp_path):
    """A notebook's live widgets are off in a headless run (nbclient can hang on them), on when asked."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("widgets = True", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print(widgets)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "w.ipynb")
    off = notebooks.execute(tmp_path / "w.ipynb", tmp_path / "off.ipynb", {}, progress=False)
    assert off.cells[-1].outputs[0]["text"] == "False\n"
    on = notebooks.execute(tmp_path / "w.ipynb", tmp_path / "on.ipynb", {"widgets": True}, progress=False)
    assert on.cells[-1].outputs[0]["text"] == "True\n"


@pytest.mark.slow
@pytest.mark.xdist_group("main-job")
def test_main_job_on_builtin_tiny(main_job):
    """`python -m ltkit demo` writes the figures and a summary, and every notebook runs without error."""
    figs, executed, timings = main_job.figures, main_job.executed, main_job.timings  # conftest runs it once
    for stem in ("world_contact_sheet", "class_counts"):
        assert (figs / f"{stem}.png").stat().st_size > 1000 and (figs / f"{stem}.pdf").exists()
    summary = json.loads((figs / "summary.json").read_text())
    names = [p.name for p in notebooks.numbered_notebooks()]
    assert summary["notebooks"] == names
    assert summary["world"]["few"] > 0 and summary["world"]["many"] > 0
    assert "seconds" not in json.dumps(summary)  # figures/ holds what was made; how long it took is apart
    times = json.loads(timings.read_text())
    assert [r["notebook"] for r in times["notebooks"]] == names
    for stem in ("fig2_umap_builtin-tiny", "fig6_pca_photos", "fig6_pca_builtin-tiny", "fig5_curation_builtin-tiny"):
        assert f"![{stem}]({stem}.png)" in (figs / "README.md").read_text()  # notebook 04, catalogued
        assert (figs / f"{stem}.pdf").exists()
    assert times["trainings"] and all(r["seconds"] > 0 for r in times["trainings"])  # trained once, up front
    assert sorted(r["run"] for r in times["trainings"]) == summary["trainings"]
    tables = (figs / "tables_builtin-tiny.md").read_text()
    assert "Baseline (BalCE)" in tables and "+ Direct Classifier" in tables
    assert "equal compute: 30 optimizer steps per row" in tables  # the preset's budget, named in each table
    assert (figs / "curves_builtin-tiny.png").exists()
    assert "## Tab. 6 (change against the row above; equal compute" in tables
    tex = (figs / "tables_builtin-tiny.tex").read_text()
    assert tex.count("\\begin{tabular}") == 3 and "\\label{tab:curation}" in tex  # Tab. 2, Tab. 6, Fig. 5
    for name in names:  # executed copies carry outputs and no error
        nb = nbformat.read(executed / name, as_version=4)
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outs if o.output_type == "error"]
    nb04 = nbformat.read(executed / "04_feature_visualization.ipynb", as_version=4)
    for cell in nb04.cells:  # every figure the notebook saves is also shown where it is made
        if cell.cell_type == "code" and "save_figure(" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:200]
