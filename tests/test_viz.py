"""Figures: separation numbers, UMAP panels, PCA patch maps (random and real weights), saved files."""
import numpy as np
import pytest
import torch

from ltkit.viz import save_figure
from ltkit.viz import pca_patches as pp
from ltkit.viz import separation as sep
from ltkit.viz import umap_panels as up


def _clusters(spread: float, n: int = 60, dim: int = 16, classes: int = 3, seed: int = 0):
    """Gaussian clusters around fixed, well-apart centres; `spread` is the within-class std."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3 + 5  # offset: not centred on the origin
    y = np.repeat(np.arange(classes), n)
    return centres[y] + rng.normal(size=(len(y), dim)) * spread, y


def test_separation_moves_the_right_way_with_cluster_spread():
    numbers = [sep.separation(*_clusters(s)) for s in (0.2, 1.0, 3.0)]
    sil = [n["silhouette"] for n in numbers]
    ratio = [n["ratio"] for n in numbers]
    assert sil[0] > sil[1] > sil[2] and sil[0] > 0.5
    assert ratio[0] < ratio[1] < ratio[2]
    assert numbers[0]["n"] == 180 and numbers[0]["classes"] == 3


def test_separation_ignores_feature_scale_and_needs_two_classes():
    x, y = _clusters(1.0)
    a, b = sep.separation(x, y), sep.separation(10 * x, y)
    assert a["silhouette"] == pytest.approx(b["silhouette"]) and a["ratio"] == pytest.approx(b["ratio"])
    assert np.isnan(sep.compactness_ratio(x[y == 0], y[y == 0]))
    with pytest.raises(ValueError, match="N labels"):
        sep.separation(x, y[:-1])


def test_confusing_pairs_and_subset_picker():
    counts = np.array([500, 300, 50, 10, 5])
    conf = np.eye(5) * 0.8
    conf[4, 1] = 0.15  # the tail class 4 is mistaken for the head class 1
    conf[3, 0] = 0.05
    pairs = up.confusing_pairs(conf, counts, n=2)
    assert [(h, t) for h, t, _ in pairs] == [(1, 4), (0, 3)] and pairs[0][2] == pytest.approx(0.15)
    parent = np.array([1, 1, 1, 4, 0, 2])  # auxiliary classes 5..10 and the target each was queried from
    targets, aux = up.pick_classes([1, 4], parent, 5, aux_per_target=2)
    assert targets == [1, 4] and aux == [5, 6, 8]
    assert up.pick_classes(range(5), parent, 5, max_classes=6) == ([0, 1, 2, 3, 4], [9])
    pred = np.array([0, 1, 1, 2])
    assert up.confusion_matrix(pred, np.array([0, 0, 1, 2]), 3)[0].tolist() == [0.5, 0.5, 0.0]


@pytest.mark.slow
def test_umap_leaves_torch_at_its_thread_count():
    """Under OMP_NUM_THREADS=1 (as the demo's kernels run), numba's OpenMP layer would raise torch to every core."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np, torch; from ltkit.viz.umap_panels import embed; "
            "embed(np.random.default_rng(0).normal(size=(60, 8))); print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"} | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"


def test_umap_panels_on_random_features(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 3], 20)  # targets 0, 1; class 3 is auxiliary (L = 3), child of target 1
    panels = [up.Panel(f"p{i}", rng.normal(size=(60, 8)) + labels[:, None] * i, labels) for i in range(2)]
    xy = up.embed(panels[0].features, seed=0)
    assert xy.shape == (60, 2) and np.allclose(xy, up.embed(panels[0].features, seed=0))
    fig = up.draw_panels(panels, ["a", "b", "c", "aux-b"], targets=[0, 1], aux=[3], aux_parent=np.array([1]),
                         train_counts=[100, 5, 50])
    assert panels[1].numbers["silhouette"] > panels[0].numbers["silhouette"]  # the shifted panel separates
    assert panels[0].numbers["n"] == 40  # numbers use the target classes only
    paths = save_figure(fig, "umap", folder=tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths)
    assert "| p1 |" in up.numbers_table(panels)


def test_patch_pca_on_a_tiny_random_vit(tmp_path):
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("test_vit", pretrained=False, img_size=32, patch_size=4, num_classes=0).eval()
    x = torch.randn(3, 3, 32, 32)
    feats = pp.spatial_features(vit, x)
    assert feats.shape[:3] == (3, 8, 8)
    assert pp.spatial_features(vit, x, layer="blocks.2").shape == feats.shape
    m = pp.patch_pca(feats, threshold=0.4)
    assert m.pc1.shape == m.mask.shape == (3, 8, 8) and m.rgb.shape == (3, 8, 8, 3)
    assert m.pc1.min() == 0.0 and m.pc1.max() == 1.0 and m.rgb.min() >= 0.0 and m.rgb.max() <= 1.0
    assert (m.rgb[~m.mask] == 1.0).all()  # background is blank
    assert (pp.patch_pca(feats, 0.9).mask.sum() < m.mask.sum())
    shown = (np.random.default_rng(0).random((3, 32, 32, 3)) * 255).astype(np.uint8)
    paths = save_figure(pp.pca_figure(shown, {"random": m, "again": m}), "pca", folder=tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(ValueError, match="threshold"):
        pp.patch_pca(feats, 1.5)
    for maps in ({"EfficientNet-Lite0": m}, {"EfficientNet-Lite0": m, "a much longer model name": m}):
        fig = pp.pca_figure(shown, maps)
        assert not _overlapping_texts(fig), _overlapping_texts(fig)


def _overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of a figure whose drawn boxes intersect."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    from matplotlib.text import Text

    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts]
    return [(a, b) for k, (a, ba) in enumerate(boxes) for b, bb in boxes[k + 1:] if ba.overlaps(bb)]


def test_pca_on_a_real_photo_finds_the_subject():
    """Grace Hopper against a plain background: the foreground is the middle of the frame, not its sides."""
    torch.set_num_threads(1)
    import timm

    from ltkit.models import efficientnet_lite0

    model = efficientnet_lite0()
    photo = pp.sample_photos(["grace_hopper"])["grace_hopper"]
    tf = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    with torch.inference_mode():  # the real weights: the well-known top-3 (api-facts §10)
        top = model(tf(photo)[None]).softmax(1)[0].topk(3).indices.tolist()
    assert set(top) == {400, 667, 652}  # academic gown, mortarboard, military uniform
    x, shown = pp.photo_batch(model, [photo], size=320)
    assert shown.shape == (1, 320, 320, 3)
    mask = pp.patch_pca(pp.spatial_features(model, x, "blocks.5"), 0.5).mask[0]
    h, w = mask.shape
    centre, sides = mask[:, int(0.3 * w):int(0.7 * w)].mean(), np.r_[mask[:, :int(0.2 * w)], mask[:, int(0.8 * w):]].mean()
    assert centre > 0.4 and sides < 0.1, mask.astype(int)


def _res(overall, few, seed_shift=0.0, **recipe):
    r = {"overall": overall + seed_shift, "many": 0.8, "medium": 0.6, "few": few + seed_shift}
    return dict(r, recipe={"aux": "none", "loss": "balce", "classifier": "crt", **recipe})


def test_tables_state_each_recipe_and_the_change(tmp_path):
    from ltkit.viz import tables

    results = {"Baseline": [_res(0.70, 0.40), _res(0.70, 0.40, 0.02)],
               "+ Neighbor Category": [_res(0.75, 0.55, aux="neighbours"), _res(0.75, 0.55, 0.02, aux="neighbours")]}
    rows = tables.table_rows(results, tables.TAB6_COLUMNS, previous=True)
    assert rows[1].cells["few"][2] == pytest.approx(15.0) and rows[0].cells["few"][2] is None
    md = tables.markdown(rows, tables.TAB6_COLUMNS)
    assert "| + Neighbor Category | neighbour categories (SD) / balce / crt | 80.0 ± 0.0 (+0.0) |" in md
    assert "56.0 ± 1.4 (+15.0)" in md  # few: mean over seeds, sample std, change against the row above
    tex = tables.latex(rows, tables.TAB6_COLUMNS, caption="Tab. 6 & more", label="tab:c")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"Tab. 6 \& more" in tex
    assert r"56.0 $\pm$ 1.4 {\scriptsize $\uparrow$15.0}" in tex and tex.count(r"\\") == 3
    with pytest.raises(ValueError, match="recipe"):
        tables.table_rows({"x": [{"overall": 0.5, "many": 0.5, "medium": 0.5, "few": 0.5}]})
    abl = {"k": {1: [_res(0.70, 0.5)], 5: [_res(0.74, 0.6)]}, "aux_ratio": {"0:1:3": [_res(0.7, 0.5)], None: [_res(0.74, 0.6)]}}
    fig = tables.ablation_figure(abl, {"k": 5, "aux_ratio": None})
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["0:1:3", "auto"]
    assert "| auto (default) | 74.0 |" in tables.ablation_markdown(abl, {"aux_ratio": None})
    assert len(save_figure(fig, "fig5", folder=tmp_path)) == 2


def test_catalogue_renders_the_figures_readme(tmp_path):
    from ltkit.viz import catalogue, figure

    fig, ax = figure()
    ax.plot([0, 1])
    save_figure(fig, "b_curve", folder=tmp_path)
    save_figure(figure()[0], "a_other", folder=tmp_path)
    catalogue.record(tmp_path, "b_curve", "A line that rises.", "| x | y |\n|---|---|\n| 1 | 2 |", "a test")
    catalogue.record(tmp_path, "gone", "A figure whose file is missing.")
    with pytest.raises(ValueError, match="one sentence"):
        catalogue.record(tmp_path, "c", " ")
    text = catalogue.write_readme(tmp_path, intro="Made by a test.").read_text()
    assert "![b_curve](b_curve.png)\n\nA line that rises.\n\n| x | y |" in text
    assert "`b_curve.pdf`, `b_curve.png`; made by a test." in text
    assert "gone" not in text and "- [a_other.png](a_other.png)" in text


def test_ablation_latex_one_row_per_value_with_default_and_std():
    from ltkit.viz import tables

    abl = {"k": {1: [_res(0.70, 0.5), _res(0.70, 0.5, 0.02)], 5: [_res(0.74, 0.6), _res(0.74, 0.6, 0.02)]},
           "aux_ratio": {"0:1:3": [_res(0.7, 0.5), _res(0.7, 0.5)], None: [_res(0.74, 0.6), _res(0.74, 0.6)]}}
    tex = tables.ablation_latex(abl, {"k": 5, "aux_ratio": None}, caption="Fig. 5 & more", label="tab:abl")
    lines = tex.splitlines()
    assert lines.count(r"\toprule") == 1 and lines.count(r"\bottomrule") == 1
    assert lines.count(r"\midrule") == 2  # below the header, and between the two settings
    rows = [ln for ln in lines if ln.endswith(r"\\") and not ln.startswith("Setting")]
    assert len(rows) == 4  # one per value
    assert rows[0].startswith("k & 1 & 71.0 $\\pm$ 1.4 & 80.0 $\\pm$ 0.0")  # mean ± sample std over 2 seeds
    assert rows[1].startswith(" & 5 (default) & 75.0 $\\pm$ 1.4") and rows[3].startswith(" & auto (default) &")
    assert rows[2].startswith(r"aux\_ratio & 0:1:3 &") and r"Fig. 5 \& more" in tex and r"\label{tab:abl}" in tex
    one_seed = tables.ablation_latex({"k": {1: [_res(0.7, 0.5)]}})
    assert r"\pm" not in one_seed and "(default)" not in one_seed


def test_ablation_summary_names_the_setting_that_moved_overall_most():
    from ltkit.viz import tables

    abl = {"k": {1: [_res(0.65, 0.5)], 5: [_res(0.69, 0.5)]}, "aux_cap": {10: [_res(0.60, 0.5)], 50: [_res(0.69, 0.5)]}}
    text = tables.ablation_summary(abl, {"aux_cap": 50})
    assert text.startswith("Overall moved most with aux_cap: 60.0 at 10 vs 69.0 at 50 (default), a 9.0-point range")
    assert "(k 4.0 points)" in text and "one seed" in text
    seeds = {"k": {1: [_res(0.65, 0.5), _res(0.69, 0.5)], 5: [_res(0.66, 0.5), _res(0.70, 0.5)]},
             "aux_cap": {10: [_res(0.60, 0.5), _res(0.60, 0.5)], 50: [_res(0.69, 0.5), _res(0.69, 0.5)]}}
    assert tables.ablation_summary(seeds).endswith("; within the seed std: k")  # 1 point apart, std 2.8


def test_separation_summary_states_the_direction_and_when_nothing_separates():
    def panels(*numbers):
        return [up.Panel(t, np.zeros((0, 2)), np.zeros(0), {"silhouette": s, "ratio": r, "n": 40, "classes": 2})
                for t, (s, r) in zip(["(a) x", "(b) y", "(c) base, val", "(d) aux, val"], numbers)]

    weak = up.separation_summary(panels((-0.03, 3.7), (0.006, 3.3), (-0.003, 2.99), (0.006, 2.515)))
    assert weak.startswith("from (c) base, val to (d) aux, val: silhouette did not change clearly (-0.003 to 0.006)"
                           " and the intra/inter ratio fell from 2.990 to 2.515 (tighter)")
    assert "no panel separates the target classes clearly" in weak and "(-0.030 to 0.006)" in weak
    worse = up.separation_summary(panels((0.1, 1.0), (0.6, 0.4), (0.5, 0.5), (0.3, 0.8)))
    assert "silhouette fell from 0.500 to 0.300 (worse)" in worse and "ratio rose from 0.500 to 0.800 (worse)" in worse
    assert worse.endswith("above 0.25 (some structure) in (b), (c), (d)") and "no panel" not in worse
    same = up.separation_summary(panels((0.1, 1.0), (0.1, 1.0), (0.2, 1.0), (0.2, float("nan"))))
    assert "silhouette did not change clearly (0.200 to 0.200)" in same and "ratio cannot be computed" in same
    small = up.separation_summary(panels((0.1, 1.0), (0.1, 1.0), (0.3, 1.0), (0.32, 0.97)))
    assert "silhouette did not change clearly" in small and "ratio did not change clearly (1.000 to 0.970)" in small


def test_late_gain_reads_the_last_fifth_of_the_steps(tmp_path):
    import json

    from ltkit.viz.curves import late_gain

    rows = [{"steps": s, "val_overall": v} for s, v in ((100, 0.30), (200, 0.50), (300, 0.60), (400, 0.64), (500, 0.65))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert late_gain(tmp_path) == pytest.approx(1.0)  # from step 400 (the last at or before 0.8 x 500) to 500
    assert late_gain(tmp_path, fraction=0.5) == pytest.approx(15.0)  # from step 200
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="two epochs"):
        late_gain(tmp_path)
