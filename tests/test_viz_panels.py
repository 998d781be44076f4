"""convlib.viz's panel figures: a patch column outlines the window, the column and the pixel that belong together;
the stamps and the zero-insertion view show the numbers of F.conv_transpose2d, outlined where they belong."""

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


# ---------------------------------------------------------------- show_patch_column


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
    ax_in, ax_cols, ax_out = convlib.viz.show_patch_column(x, w, position=position, channel=C - 1, **kwargs)
    Y = F.conv2d(x[None], w[None], **kwargs)[0, 0]
    Ho, Wo = Y.shape
    i, j = position
    l = i * Wo + j
    cols = convlib.im2col(x[None], (kh, kw), **kwargs)[0]
    assert _outlines(ax_cols) == [(0, l, cols.shape[0], 1)]  # the whole column l
    assert _outlines(ax_out) == [(i, j, 1, 1)]  # the pixel it produces
    assert ax_out.get_title().endswith(f"Y[0, 0, {i}, {j}] = {float(Y[i, j]):.2f}")
    s, d = (
        convlib.args.pair(kwargs.get("stride", 1), "s", minimum=1),
        convlib.args.pair(kwargs.get("dilation", 1), "d", minimum=1),
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
        convlib.viz.show_patch_column(x, w, position=(3, 0))
    with pytest.raises(ValueError, match="same C"):
        convlib.viz.show_patch_column(x, torch.randn(3, 2, 2))
    with pytest.raises(ValueError, match="channel must be in 0..1"):
        convlib.viz.show_patch_column(x, w, channel=2)
    plt.close("all")


# ---------------------------------------------------------------- show_stamps and show_zero_insertion


def _numbers(ax, shape):
    return torch.tensor([float(t.get_text()) for t in ax.texts]).reshape(shape)


@pytest.mark.parametrize("h,w,kh,kw,stride,padding", [(2, 2, 3, 3, 2, 0), (2, 3, 2, 3, 1, 1), (3, 2, 3, 2, 3, 1)])
def test_show_stamps_panels(h, w, kh, kw, stride, padding):
    x = torch.arange(1.0, h * w + 1).reshape(h, w)
    K = torch.arange(1.0, kh * kw + 1).reshape(kh, kw)
    axes = convlib.viz.show_stamps(x, K, stride=stride, padding=padding)
    assert len(axes) == h * w + 2  # input, one stamp per pixel, sum
    full = F.conv_transpose2d(x[None, None], K[None, None], stride=stride)[0, 0]
    assert torch.equal(_numbers(axes[-1], full.shape), full)  # the sum panel shows the full canvas
    cut = F.conv_transpose2d(x[None, None], K[None, None], stride=stride, padding=padding)[0, 0]
    assert torch.equal(full[padding : full.shape[0] - padding, padding : full.shape[1] - padding], cut)
    for n, ax in enumerate(axes[1:-1]):
        i, j = divmod(n, w)
        assert _outlines(ax) == [(i * stride, j * stride, kh, kw)]
        stamp = _numbers(ax, full.shape)[i * stride : i * stride + kh, j * stride : j * stride + kw]
        assert torch.equal(stamp, x[i, j] * K)
    plt.close("all")


@pytest.mark.parametrize("stride,padding,dilation", [(2, 0, 1), (2, 1, 1), (3, 2, 2), (1, 0, 1)])
def test_show_zero_insertion_panels(stride, padding, dilation):
    x = torch.arange(1.0, 7).reshape(2, 3)
    K = torch.arange(1.0, 10).reshape(3, 3)
    ax_k, ax_rot, ax_in, ax_out = convlib.viz.show_zero_insertion(x, K, stride, padding, dilation)
    y = F.conv_transpose2d(x[None, None], K[None, None], stride=stride, padding=padding, dilation=dilation)[0, 0]
    assert torch.equal(_numbers(ax_out, y.shape), y)
    assert torch.equal(_numbers(ax_rot, (3, 3)), K.flip(0, 1))
    q = dilation * 2 - padding
    assert {(r, c) for r, c, _, _ in _outlines(ax_in)} == {
        (q + i * stride, q + j * stride) for i in range(2) for j in range(3)
    }
    plt.close("all")


def test_show_zero_insertion_needs_padding_within_reach():
    with pytest.raises(ValueError, match="needs padding <= d\\(k-1\\) = 2"):
        convlib.viz.show_zero_insertion(torch.ones(2, 2), torch.ones(3, 3), stride=2, padding=3)


def test_stamp_figures_check_their_arguments_like_pytorch():
    x, K = torch.ones(2, 2), torch.ones(3, 3)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        convlib.viz.show_stamps(x, K, stride=0)
    with pytest.raises(TypeError, match="padding must be an int"):
        convlib.viz.show_stamps(x, K, padding=0.5)
    with pytest.raises(ValueError, match="dilation must be at least 1"):
        convlib.viz.show_zero_insertion(x, K, dilation=0)
