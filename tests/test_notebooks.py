"""The main job on builtin-tiny: world figures, then every numbered notebook executed by a real kernel."""
import json

import nbformat

from ltkit import demo, notebooks


def test_notebooks_are_committed_clean():
    for path in notebooks.numbered_notebooks():
        nb = nbformat.read(path, as_version=4)
        assert "preset" in notebooks.parameter_names(nb), f"{path.name}: no `preset` in the parameters cell"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def test_inject_parameters_after_the_parameters_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("preset = 'builtin'\nk = 5", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(preset)")])
    assert notebooks.parameter_names(nb) == ["preset", "k"]
    notebooks.inject_parameters(nb, {"preset": "builtin-tiny"})
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"] and "preset = 'builtin-tiny'" in nb.cells[2].source


def test_main_job_on_builtin_tiny(tiny_world, tmp_path, monkeypatch):
    """`python -m ltkit demo` writes the figures and a summary, and every notebook runs without error."""
    figs, executed = tmp_path / "figures", tmp_path / "executed"
    params = {"preset": "builtin-tiny", "out_dir": str(tmp_path / "runs"), "figures_dir": str(figs),
              "ablations": {"k": [1, 3]}}  # one ablation keeps the test short; k=3 is the preset's own run
    monkeypatch.setattr(demo, "_notebook_parameters", lambda preset: params)
    assert demo.main(["--preset", "builtin-tiny", "--figures", str(figs), "--executed", str(executed)]) == 0
    for stem in ("world_contact_sheet", "class_counts"):
        assert (figs / f"{stem}.png").stat().st_size > 1000 and (figs / f"{stem}.pdf").exists()
    summary = json.loads((figs / "summary.json").read_text())
    names = [p.name for p in notebooks.numbered_notebooks()]
    assert [r["notebook"] for r in summary["notebooks"]] == names
    assert summary["world"]["few"] > 0 and summary["world"]["many"] > 0
    assert (figs / "fig5_ablations_builtin-tiny.png").exists()
    tables = (figs / "tables_builtin-tiny.md").read_text()
    assert "Baseline (BalCE)" in tables and "+ Direct Classifier" in tables
    for name in names:  # executed copies carry outputs and no error
        nb = nbformat.read(executed / name, as_version=4)
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outs if o.output_type == "error"]
