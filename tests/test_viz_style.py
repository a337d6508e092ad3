"""House style and figure saving: paper widths, stable names, byte-identical PDFs of unchanged figures."""
import base64
import time

import numpy as np
import pytest

from ltkit.viz import PALETTE, SHOT_COLOURS, figure, figure_size, save_figure


def _plot():
    fig, ax = figure("single")
    ax.plot(np.arange(5), np.arange(5) ** 2, "o-", label="x²")
    ax.legend()
    return fig


def test_figure_sizes_are_the_paper_widths():
    assert figure_size("single") == pytest.approx((3.25, 3.25 * 0.62))
    assert figure_size("double", 2.0) == (6.875, 2.0)
    fig, _ = figure("double", 1.5, ncols=2)
    assert tuple(fig.get_size_inches()) == pytest.approx((6.875, 1.5))
    with pytest.raises(ValueError, match="width='wide'"):
        figure_size("wide")
    assert set(SHOT_COLOURS.values()) <= set(PALETTE.values())


def test_unchanged_figure_saves_byte_identical(tmp_path):
    first = [p.read_bytes() for p in save_figure(_plot(), "curve", folder=tmp_path)]
    time.sleep(1.1)  # a creation date with one-second resolution would now differ
    paths = save_figure(_plot(), "curve", folder=tmp_path)
    assert [p.name for p in paths] == ["curve.pdf", "curve.png"]
    assert [p.read_bytes() for p in paths] == first
    assert b"CreationDate" not in first[0] and first[0].startswith(b"%PDF")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_a_changed_figure_changes_the_file_and_stems_with_folders_are_kept(tmp_path):
    a = save_figure(_plot(), tmp_path / "sub" / "curve", formats=("pdf",))[0].read_bytes()
    fig, ax = figure("single")
    ax.plot([0, 1], [1, 0])
    p = save_figure(fig, tmp_path / "sub" / "curve", formats=("pdf",))[0]
    assert p == tmp_path / "sub" / "curve.pdf" and p.read_bytes() != a


def test_saved_png_shows_the_file_that_was_saved(tmp_path):
    from ltkit.viz import saved_png

    paths = save_figure(_plot(), "curve", folder=tmp_path)
    img = saved_png(paths)
    assert img.data == (tmp_path / "curve.png").read_bytes() and img.format == "png"
    assert base64.b64decode(img._repr_png_()) == img.data  # what display() sends, whatever the matplotlib backend
    with pytest.raises(ValueError, match="no .png"):
        saved_png(save_figure(_plot(), "only_pdf", folder=tmp_path, formats=("pdf",)))
