"""convlib.plot.show_patch_column: it outlines the window, the column and the pixel that belong together."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import convlib  # noqa: E402


def _outlines(ax):
    return [
        (p.get_y(), p.get_x(), p.get_height(), p.get_width())
        for p in ax.patches
        if isinstance(p, Rectangle) and not p.get_fill()
    ]


@pytest.mark.parametrize(
    "C,H,W,kh,kw,kwargs,position",
    [
        (1, 4, 4, 2, 2, {}, (1, 2)),
        (3, 4, 5, 2, 3, {"stride": 2, "padding": 1}, (2, 1)),
        (2, 6, 6, 2, 2, {"dilation": 2, "padding": (1, 0)}, (1, 0)),
    ],
)
def test_patch_column_marks_matching_window_column_and_pixel(C, H, W, kh, kw, kwargs, position):
    torch.manual_seed(0)
    x, w = torch.randn(C, H, W), torch.randn(C, kh, kw)
    ax_in, ax_cols, ax_out = convlib.plot.show_patch_column(x, w, position=position, channel=C - 1, **kwargs)
    Y = F.conv2d(x[None], w[None], **kwargs)[0, 0]
    Ho, Wo = Y.shape
    i, j = position
    l = i * Wo + j
    cols = convlib.im2col(x[None], (kh, kw), **kwargs)[0]
    assert _outlines(ax_cols) == [(0, l, cols.shape[0], 1)]  # the whole column l
    assert _outlines(ax_out) == [(i, j, 1, 1)]  # the pixel it produces
    assert ax_out.get_title().endswith(f"Y[{i}, {j}] = {float(Y[i, j]):.2f}")
    s, d = (
        convlib._checks.pair(kwargs.get("stride", 1), "s", minimum=1),
        convlib._checks.pair(kwargs.get("dilation", 1), "d", minimum=1),
    )
    if d == (1, 1):  # one rectangle: the window, in padded coordinates
        assert _outlines(ax_in) == [(i * s[0], j * s[1], kh, kw)]
    else:  # one outline per tap
        taps = {(i * s[0] + u * d[0], j * s[1] + v * d[1]) for u in range(kh) for v in range(kw)}
        assert {(r, c) for r, c, _, _ in _outlines(ax_in)} == taps
    plt.close("all")


def test_patch_column_bad_input():
    x, w = torch.randn(2, 4, 4), torch.randn(2, 2, 2)
    with pytest.raises(ValueError, match="outside the 3 x 3 output"):
        convlib.plot.show_patch_column(x, w, position=(3, 0))
    with pytest.raises(ValueError, match="same C"):
        convlib.plot.show_patch_column(x, torch.randn(3, 2, 2))
    with pytest.raises(ValueError, match="channel must be in 0..1"):
        convlib.plot.show_patch_column(x, w, channel=2)
    plt.close("all")
