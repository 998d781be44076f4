"""Chapter 1's convlib: the seven-loop nest, one output entry taken apart, and the figures that draw them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import conv_configs, tol, torch_conv2d  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import convlib  # noqa: E402

# ---------------------------------------------------------------- conv2d_loops (also in test_core's CONV_METHODS)


def test_conv2d_loops_cs231n_layout():
    """The CS231n demo's shapes: 5x5x3 input, two 3x3x3 filters, stride 2, padding 1 -> 3x3x2."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (1, 3, 5, 5), generator=gen).double()
    w = torch.randint(-1, 2, (2, 3, 3, 3), generator=gen).double()
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    y = convlib.conv2d_loops(x, w, b, stride=2, padding=1)
    assert y.shape == (1, 2, 3, 3)
    assert torch.equal(y, F.conv2d(x, w, b, stride=2, padding=1))  # integers: exact


def test_conv2d_loops_depthwise_groups():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    w = torch.randn(8, 1, 3, 2, dtype=torch.float64)
    expected = F.conv2d(x, w, groups=4, stride=(2, 1))
    torch.testing.assert_close(convlib.conv2d_loops(x, w, groups=4, stride=(2, 1)), expected)


def test_conv2d_loops_keeps_dtype():
    x, w = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 2, 2)
    assert convlib.conv2d_loops(x, w).dtype == torch.float32
    assert convlib.conv2d_loops(x.double(), w.double()).dtype == torch.float64


# ---------------------------------------------------------------- entry_products


@st.composite
def config_and_index(draw):
    x, weight, bias, kw = draw(conv_configs(max_groups=3, allow_same=True))
    y = torch_conv2d(x, weight, bias, **kw)
    index = tuple(draw(st.integers(0, s - 1)) for s in y.shape)
    return x, weight, bias, kw, y, index


@given(case=config_and_index())
def test_entry_products_value_equals_F_conv2d(case):
    x, weight, bias, kw, y, index = case
    ep = convlib.entry_products(x, weight, bias, **kw, index=index)
    torch.testing.assert_close(ep.value, y[index], **tol(x.dtype))
    # the pieces add up: products are window * weight, sums are their sums, value is sums + bias
    assert torch.equal(ep.products, ep.window * ep.weight)
    torch.testing.assert_close(ep.channel_sums, ep.products.sum(dim=(1, 2)))
    b = ep.bias if bias is not None else 0
    torch.testing.assert_close(ep.value, ep.channel_sums.sum() + b)
    assert ep.index == index
    n, o = index[0], index[1]
    assert torch.equal(ep.weight, weight[o])
    Cg, O, g = weight.shape[1], weight.shape[0], kw["groups"]
    assert ep.channels == tuple(range((o // (O // g)) * Cg, (o // (O // g) + 1) * Cg))
    # taps on the padding read zeros; the others read the input at the unpadded position
    top, left = ep.padding
    H, W = x.shape[2:]
    assert ep.input_size == (H, W)
    for k, c in enumerate(ep.channels):
        for u, r in enumerate(ep.rows):
            for v, col in enumerate(ep.cols):
                if ep.in_padding[u, v]:
                    assert ep.window[k, u, v] == 0
                else:
                    assert ep.window[k, u, v] == x[n, c, r - top, col - left]
    head = f"Y[{index[0]}, {o}, {index[2]}, {index[3]}] = " + (f"b[{o}] + " if bias is not None else "") + "sum over"
    assert str(ep).splitlines()[0].startswith(head)


@given(case=config_and_index())
def test_entry_products_unbatched(case):
    x, weight, bias, kw, y, index = case
    ep = convlib.entry_products(x[0], weight, bias, **kw, index=index[1:])
    torch.testing.assert_close(ep.value, y[(0, *index[1:])], **tol(x.dtype))
    assert ep.index == (0, *index[1:])


def test_entry_products_by_hand():
    """A case small enough to check with pen and paper."""
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]])  # 2 x 2 x 2
    w = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # 1 x 2 x 2 x 2
    ep = convlib.entry_products(x, w, torch.tensor([10.0]), padding=1, index=(0, 1, 1))
    # window for output (1, 1) is rows 1-2, columns 1-2 of the padded input = the whole input
    assert ep.rows == (1, 2) and ep.cols == (1, 2) and ep.padding == (1, 1)
    assert ep.window.tolist() == x.tolist()
    assert ep.products.tolist() == [[[1, -2], [0, 8]], [[0, 1], [1, 0]]]
    assert ep.channel_sums.tolist() == [7, 2]
    assert ep.value.item() == 19
    assert not ep.in_padding.any()
    text = str(ep)
    assert "Y[0, 0, 1, 1] = 7 + 2 + 10 (bias) = 19" in text
    assert "K[0, 1]" in text
    # the corner output reads mostly padding
    corner = convlib.entry_products(x, w, None, padding=1, index=(0, 0, 0))
    assert corner.in_padding.tolist() == [[True, True], [True, False]]
    assert corner.value.item() == 1 * 2  # only W[0, 0, 1, 1] = 2 meets x[0, 0, 0] = 1, x[1, 0, 0] = 0
    assert str(corner).splitlines()[-1] == "Y[0, 0, 0, 0] = 2 + 0 = 2"


def test_entry_products_non_integers_formatting():
    x = torch.full((1, 2, 2), 0.5)
    w = torch.full((1, 1, 2, 2), 0.25)
    ep = convlib.entry_products(x, w, index=(0, 0, 0))
    assert str(ep).splitlines()[-1] == "Y[0, 0, 0, 0] = 0.5 = 0.5"


def test_entry_products_same_padding_asymmetric():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    w = torch.randn(3, 2, 2, 4, dtype=torch.float64)  # even kernel: 'same' pads 0 top / 1 bottom, 1 left / 2 right
    y = F.conv2d(x, w, padding="same")
    for index in [(0, 0, 0, 0), (0, 2, 4, 5), (0, 1, 2, 3)]:
        ep = convlib.entry_products(x, w, padding="same", index=index)
        torch.testing.assert_close(ep.value, y[index])
    assert ep.padding == (0, 1)


@pytest.mark.parametrize(
    "index,exc,words",
    [
        ((0, 0, 0), ValueError, r"index must have 4 entries \(n, o, i, j\)"),
        ((0, 2, 0, 0), ValueError, "index o=2 is out of range"),
        ((0, 0, 3, 0), ValueError, "index i=3 is out of range"),
        ((1, 0, 0, 0), ValueError, "index n=1 is out of range"),
        ((0, 0, 0, -1), ValueError, "index j=-1 is out of range"),
        ((0, 0, 0, 0.0), TypeError, "index must be a tuple of ints"),
        (0, TypeError, "index must be a tuple of ints"),
    ],
)
def test_entry_products_bad_index(index, exc, words):
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    with pytest.raises(exc, match=words):
        convlib.entry_products(x, w, stride=2, padding=1, index=index)


def test_entry_products_bad_conv_args_and_unbatched_index():
    with pytest.raises(ValueError, match="input has 4 channels"):
        convlib.entry_products(torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3), index=(0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"index must have 3 entries \(o, i, j\)"):
        convlib.entry_products(torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3), index=(0, 0, 0, 0))
    with pytest.raises(TypeError, match="index"):
        convlib.entry_products(torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3))  # index is keyword-only, required


# ---------------------------------------------------------------- figures


def _rects(ax, colour):
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    return [
        (p.get_x(), p.get_y(), p.get_width(), p.get_height())
        for p in ax.patches
        if isinstance(p, Rectangle) and p.get_edgecolor() == to_rgba(colour) and not p.get_fill()
    ]


def _demo():
    gen = torch.Generator().manual_seed(30)
    x = torch.randint(0, 3, (1, 3, 5, 5), generator=gen).float()
    w = torch.randint(-1, 2, (2, 3, 3, 3), generator=gen).float()
    return x, w, torch.tensor([1.0, 0.0])


def test_show_conv_layer_highlights_window_filter_and_output():
    x, w, b = _demo()
    fig = convlib.viz.show_conv_layer(x, w, b, stride=2, padding=1, index=(1, 2, 1))
    hl = convlib.viz.PALETTE["highlight"]
    try:
        assert fig.get_size_inches()[0] <= convlib.viz.MAX_FIG_WIDTH
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == 3 + 2 * 3 + 2  # input channels, filter channels, output channels
        grid = [[fig.axes[r * 4 + c] for c in range(4)] for r in range(3)]  # 3 rows x (input, W0, W1, output)
        for c in range(3):
            assert _rects(grid[c][0], hl) == [(2, 4, 3, 3)]  # window of Y[1, 2, 1]: rows 4-6, cols 2-4
            assert _rects(grid[c][2], hl) == [(0, 0, 3, 3)]  # filter W[1] outlined
            assert _rects(grid[c][1], hl) == []  # filter W[0] not
        assert _rects(grid[1][3], hl) == [(1, 2, 1, 1)]  # output cell (i=2, j=1) of Y[1]
        assert _rects(grid[0][3], hl) == []
        assert grid[2][3].get_visible() is False  # 3 input channels, only 2 outputs
        assert "Y[0, 1, 2, 1] = " in fig._suptitle.get_text()
        assert grid[0][3].get_title() == "output Y[0, 0]"
    finally:
        plt.close(fig)


def test_show_conv_layer_without_output_and_dilated_taps():
    x, w, b = _demo()
    fig = convlib.viz.show_conv_layer(x[0], w, b, padding=2, dilation=2, index=(0, 1, 0), output=False)
    try:
        assert len(fig.axes) == 3 * 3  # 3 channels x (input + 2 filters), no output column
        taps = _rects(fig.axes[0], convlib.viz.PALETTE["highlight"])
        assert sorted(taps) == sorted((c, r, 1, 1) for r in (1, 3, 5) for c in (0, 2, 4))  # every tap, d = 2
    finally:
        plt.close("all")


def test_show_conv_layer_bad_input():
    x, w, b = _demo()
    with pytest.raises(ValueError, match="draws one image"):
        convlib.viz.show_conv_layer(x.repeat(2, 1, 1, 1), w, b)
    with pytest.raises(ValueError, match=r"index must be \(o, i, j\)"):
        convlib.viz.show_conv_layer(x, w, b, index=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="index o=2 is out of range"):
        convlib.viz.show_conv_layer(x, w, b, index=(2, 0, 0))
    with pytest.raises(ValueError, match="input has 3 channels"):
        convlib.viz.show_conv_layer(x, w[:, :2], b)


def test_show_entry_products_figure():
    x, w, b = _demo()
    ep = convlib.entry_products(x, w, b, stride=2, padding=1, index=(0, 0, 0, 1))
    fig = convlib.viz.show_entry_products(ep)
    try:
        assert fig.get_size_inches()[0] <= convlib.viz.MAX_FIG_WIDTH
        assert len(fig.axes) == 9
        s = ep.channel_sums.tolist()
        terms = " + ".join(f"({v:g})" if v < 0 else f"{v:g}" for v in s)
        assert fig._suptitle.get_text() == f"Y[0, 0, 0, 1] = {terms} + 1 (bias) = {ep.value.item():g}"
        from matplotlib.colors import to_rgba

        grey = to_rgba(convlib.viz.PALETTE["padding"])
        cells = fig.axes[0].images[0].get_array()  # kh x kw x 4: the colour of every tap of the window
        n_grey = int(np.all(np.isclose(cells, grey), axis=-1).sum())
        assert n_grey == int(ep.in_padding.sum()) == 3  # the top row of the window is padding
        # the tick labels count the input's rows and columns: padded columns 2-4 are input columns 1-3, and the
        # padded row 0 is the input's row -1
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3"]
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["-1", "0", "1"]
        assert fig.axes[2].get_title() == f"products: sum {s[0]:g}"
        texts = [t.get_text() for t in fig.axes[2].texts]
        assert "-0" not in texts
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- conv2d_macs


@given(cfg=conv_configs(max_groups=3, allow_same=True))
def test_conv2d_macs_counts_one_per_output_and_weight_of_its_group(cfg):
    x, weight, bias, kw = cfg
    y = torch_conv2d(x, weight, bias, **kw)
    expected = y.numel() * weight.shape[1] * weight.shape[2] * weight.shape[3]
    assert convlib.conv2d_macs(tuple(x.shape), tuple(weight.shape), **kw) == expected
    assert convlib.conv2d_macs(tuple(x.shape[1:]), list(weight.shape), **kw) == expected // x.shape[0]


def test_conv2d_macs_examples_and_errors():
    assert convlib.conv2d_macs((1, 3, 5, 5), (2, 3, 3, 3), stride=2, padding=1) == 18 * 27
    assert convlib.conv2d_macs((10, 8, 32, 32), (16, 8, 3, 3), padding=1) == 10 * 16 * 32 * 32 * 8 * 9
    assert convlib.conv2d_macs((10, 8, 32, 32), (8, 1, 3, 3), padding=1, groups=8) == 10 * 8 * 32 * 32 * 9
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
        convlib.conv2d_macs((1, 3), (2, 3, 3, 3))
    with pytest.raises(TypeError, match="weight_shape must be a tuple of ints"):
        convlib.conv2d_macs((1, 3, 5, 5), (2, 3, 3))
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
        convlib.conv2d_macs((1, 3, 5, 5.0), (2, 3, 3, 3))
    with pytest.raises(ValueError, match="input has 4 channels"):
        convlib.conv2d_macs((1, 4, 5, 5), (2, 3, 3, 3))
    with pytest.raises(ValueError, match="groups=2"):
        convlib.conv2d_macs((1, 4, 5, 5), (3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="groups must be at least 1"):
        convlib.conv2d_macs((1, 4, 5, 5), (2, 4, 3, 3), groups=0)
    with pytest.raises(ValueError, match="kernel larger than the padded input"):
        convlib.conv2d_macs((1, 3, 2, 5), (2, 3, 3, 3))
    with pytest.raises(ValueError, match="input_shape entry must be at least 1"):
        convlib.conv2d_macs((1, 0, 5, 5), (2, 3, 3, 3))
    assert convlib.conv2d_macs((0, 3, 5, 5), (2, 3, 3, 3)) == 0  # an empty batch needs no work
    with pytest.raises(TypeError, match="groups must be an int"):
        convlib.conv2d_macs((1, 4, 5, 5), (2, 4, 3, 3), groups=2.0)
