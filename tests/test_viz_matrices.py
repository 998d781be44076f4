"""The matrix figures of convlib.viz: they draw what they say, and reject mismatched shapes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import convlib  # noqa: E402
from convlib.toeplitz import block_rows  # noqa: E402

K = torch.arange(8.0).reshape(1, 1, 2, 4)  # the chapter's kernel; its tap K[0, 0] = 0


def _texts(ax):
    return [t.get_text() for t in ax.texts if t.get_text()]


def test_show_conv_matrix_writes_stored_entries_and_outlines_rows():
    M = convlib.conv_matrix(K, (5, 6))
    ax = convlib.viz.show_conv_matrix(M, (5, 6), (4, 3), highlight_rows=[4], title="M")
    texts = _texts(ax)
    assert len(texts) == M.values().numel() == 12 * 8  # every stored entry, the stored zeros included
    assert texts.count("0") == 12  # tap K[0, 0] = 0 once per row
    outlines = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert len(outlines) == 1 and outlines[0].get_height() == 1 and outlines[0].get_width() == 30
    assert ax.get_title() == "M"
    plt.close("all")


def test_show_conv_matrix_dense_input_skips_zeros_and_checks_shape():
    M = convlib.conv_matrix(K, (5, 6), sparse=False)
    ax = convlib.viz.show_conv_matrix(M, (5, 6), (4, 3))
    assert len(_texts(ax)) == int(torch.count_nonzero(M)) == 12 * 7
    with pytest.raises(ValueError, match="not \\(O\\*Ho\\*Wo, C\\*H\\*W\\)"):
        convlib.viz.show_conv_matrix(M, (5, 7), (4, 3))
    plt.close("all")


def test_show_toeplitz_blocks_outlines_each_nonzero_block():
    M = convlib.conv_matrix(K, (5, 6))
    B = block_rows(2, 4, 5)
    ax = convlib.viz.show_toeplitz_blocks(M, (3, 6), B, title="blocks")
    outlines = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert len(outlines) == int((B >= 0).sum()) == 8
    colours = convlib.viz.kernel_row_colors(2)
    for p in outlines:  # each outline is coloured by the kernel row of its block
        i, r = int(p.get_y()) // 3, int(p.get_x()) // 6
        assert np.allclose(p.get_edgecolor()[:3], colours[B[i, r]])
    with pytest.raises(ValueError, match="blocks of"):
        convlib.viz.show_toeplitz_blocks(M, (3, 5), B)
    plt.close("all")


def test_spy_counts_stored_entries():
    M = convlib.conv_matrix(torch.randn(2, 2, 3, 3), (2, 6, 6), padding=1)
    ax = convlib.viz.spy(M, block_shape=(36, 36))
    assert ax.get_title() == f"72 x 72, {M.values().numel()} non-zeros ({M.values().numel() / 72**2:.1%})"
    assert len(ax.lines) == 2  # one vertical and one horizontal channel boundary
    plt.close("all")


def test_kernel_row_colors_go_light_to_dark():
    shades = convlib.viz.kernel_row_colors(3)
    assert len(shades) == 3 and sum(shades[0]) > sum(shades[1]) > sum(shades[2])
    assert convlib.viz.kernel_row_colors(1) == [convlib.viz.PALETTE["kernel"]]
