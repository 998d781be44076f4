"""convlib.viz's animations: they draw the frames of convlib.viz.frames (tested there against PyTorch), frames a
reader can read (960 pixels wide, no text under 10 pt, no number clipped), and the HTML is small, offline and
playable."""

from __future__ import annotations

import re

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from conftest import conv_configs, tol
from hypothesis import given, settings
from hypothesis import strategies as st
from test_viz_frames import cs231n_example

import convlib
from convlib import viz
from convlib.viz import frames as pure

matplotlib.use("Agg")
# The value tests build animations without rendering them to HTML; matplotlib warns about that on deletion.
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering anything")

# Every animation draws a figure when it is built (about 0.1-1 s): fewer examples than the pure-number tests.
DRAWN = settings(max_examples=8, deadline=None)


def one_image(cfg):
    x, weight, bias, kw = cfg
    return x[:1], weight, bias, kw


# ---------------------------------------------------------------- the numbers the frames show


def book_examples():
    """Each animation with the arguments of a chapter that shows it, and the frames function it draws."""
    x, w, b, kw = cs231n_example()
    X3, W3 = torch.arange(1.0, 49).reshape(1, 3, 4, 4), torch.arange(1.0, 25).reshape(2, 3, 2, 2)
    Xt, Kt = torch.arange(30.0).reshape(1, 5, 6), torch.arange(8.0).reshape(1, 1, 2, 4)
    x4, K3 = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    return {
        "window_sum": (viz.animate_window_sum, pure.window_sum_frames, (x, w, b), kw),
        "patch_matrix": (viz.animate_patch_matrix, pure.patch_matrix_frames, (X3, W3), {}),
        "toeplitz_row": (viz.animate_toeplitz_row, pure.toeplitz_row_frames, (Xt, Kt), {}),
        "transposed_stamp": (viz.animate_transposed_stamp, pure.transposed_stamp_frames, (x4, K3), dict(stride=2)),
        "settings": (viz.animate_settings, pure.settings_frames, (), dict(size=7, kernel_size=3)),
        "feature_map": (viz.animate_feature_map, pure.feature_map_frames, (photo(), sobel_rgb()), {}),
    }


BOOK = ["window_sum", "patch_matrix", "toeplitz_row", "transposed_stamp", "settings", "feature_map"]


@pytest.mark.parametrize("name", BOOK)
def test_animation_draws_the_frames_of_its_pure_function(name):
    animate, compute, args, kw = book_examples()[name]
    an, fr = animate(*args, **kw), compute(*args, **kw)
    assert an.frames == fr.frames and torch.equal(an.values, fr.values) and an.title == fr.title


@DRAWN
@given(cfg=conv_configs(max_groups=1))
def test_window_sum_depicts_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    kw.pop("groups")
    o = weight.shape[0] - 1
    an = viz.animate_window_sum(x, weight, bias, out_channel=o, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, o]
    torch.testing.assert_close(an.values, expected, **tol(x.dtype))
    assert an.n_frames == expected.numel()
    assert an.frames == pure.window_sum_frames(x, weight, bias, out_channel=o, max_frames=100, **kw).frames


def test_max_frames_limits_the_frames():
    x, w, b, kw = cs231n_example()
    an = viz.animate_window_sum(x, w, b, max_frames=4, **kw)
    assert an.n_frames == 4
    assert [(f["i"], f["j"]) for f in an.frames] == [(0, 0), (0, 1), (0, 2), (1, 0)]


@st.composite
def exact_configs(draw):
    """Stride 1 and an output as wide as the input (``layout='exact'``): dilation * (kw - 1) == 2 * padding."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    C, O = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh = draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kw = draw(st.sampled_from([k for k in (1, 2, 3, 4, 5) if dw * (k - 1) % 2 == 0]))
    pw, ph = dw * (kw - 1) // 2, draw(st.integers(0, 2))
    H = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 5))
    W = draw(st.integers(1, 7))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(C, H, W, generator=gen, dtype=dtype)
    weight = torch.randn(O, C, kh, kw, generator=gen, dtype=dtype)
    bias = torch.randn(O, generator=gen, dtype=dtype) if draw(st.booleans()) else None
    return x, weight, bias, dict(padding=(ph, pw), dilation=(dh, dw))


@settings(max_examples=25, deadline=None)  # more than DRAWN: the edge cases (narrow images, empty taps) matter
@given(cfg=exact_configs())
def test_tap_slices_accumulate_conv2d_tap_by_tap(cfg):
    x, weight, bias, kw = cfg
    o = weight.shape[0] - 1
    an = viz.animate_tap_slices(x, weight, bias, out_channel=o, **kw)
    C, H, W = x.shape
    O, _, kh, kwid = weight.shape
    (ph, pw), (dh, dw) = kw["padding"], kw["dilation"]
    assert an.n_frames == kh * kwid
    torch.testing.assert_close(an.values, F.conv2d(x[None], weight, bias, **kw)[0, o], **tol(x.dtype))
    flat = x.reshape(C, H * W)
    for t, f in enumerate(an.frames):
        u, v = divmod(t, kwid)
        assert (f["u"], f["v"]) == (u, v) and f["offset"] == (u * dh - ph) * W + (v * dw - pw)
        # after tap t: F.conv2d with only the first t + 1 taps of the kernel kept
        mask = (torch.arange(kh * kwid) <= t).to(x.dtype).reshape(kh, kwid)
        partial = F.conv2d(x[None], weight * mask, bias, **kw)[0, o]
        torch.testing.assert_close(torch.tensor(f["partial"], dtype=x.dtype), partial, **tol(x.dtype))
        # the slice: output q reads x.flat[q + offset]; where the true pixel lies left or right of the image, the
        # slice read the neighbouring row's edge pixel instead (crossed out, corrected); the outputs outside the
        # slice's range read only padding
        (q0, q1), (s0, s1) = f["writes"], f["reads"]
        if q1 > q0:
            assert (s0, s1) == (q0 + f["offset"], q1 + f["offset"]) and 0 <= s0 < s1 <= H * W
        else:  # a tap that reads only padding
            assert (q0, q1) == (s0, s1) == (0, 0)
        wrapped = dict(f["wrapped"])
        for q in range(an.values.numel()):
            i, j = divmod(q, W)
            r, c = i + u * dh - ph, j + v * dw - pw
            inside = 0 <= r < H and 0 <= c < W
            term = float(weight[o, :, u, v] @ x[:, r, c]) if inside else 0.0
            assert f["contribution"][q] == pytest.approx(term, rel=1e-4, abs=1e-4)
            if inside:
                assert q0 <= q < q1 and q not in wrapped
            elif q0 <= q < q1:  # read across a row edge: the previous row's last pixel or the next row's first
                assert q in wrapped and 0 <= r < H, "only a read across a row edge is corrected"
                assert wrapped[q] == q + f["offset"] and wrapped[q] // W == r + (1 if c >= W else -1)
        assert len(wrapped) == len(f["wrapped"])
        assert all(0 <= q_in < flat.shape[1] for q_in in wrapped.values())


# ---------------------------------------------------------------- the HTML: small, offline, playable


def all_examples():
    x, w, b, kw = cs231n_example()
    t_x = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    t_w = torch.tensor([[[[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 2.0]]]])
    return {
        "window_sum": lambda: viz.animate_window_sum(x, w, b, **kw),
        "patch_matrix": lambda: viz.animate_patch_matrix(x, w, b, **kw),
        "toeplitz_row": lambda: viz.animate_toeplitz_row(x, w, b, **kw),
        "transposed_stamp": lambda: viz.animate_transposed_stamp(t_x, t_w, stride=2),
        "settings": lambda: viz.animate_settings(),
        "feature_map": lambda: viz.animate_feature_map(photo(), sobel_rgb()),
        "tap_slices": lambda: viz.animate_tap_slices(
            torch.arange(1.0, 21.0).reshape(1, 4, 5), torch.tensor([[[[1.0, 2, 1], [0, 1, 0], [-1, 1, 2]]]]), padding=1
        ),
    }


def photo():
    """A 3 x 36 x 36 stand-in for a photograph in [0, 1]: smooth colour gradients, a disc, and a little noise."""
    g = torch.Generator().manual_seed(0)
    r = torch.linspace(0, 1, 36)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    disc = (((yy - 0.5) ** 2 + (xx - 0.4) ** 2) < 0.08).float()
    img = torch.stack([0.3 + 0.5 * xx * (1 - disc), 0.2 + 0.6 * yy, 0.5 * disc + 0.3 * (1 - xx)])
    return (img + 0.05 * torch.rand(3, 36, 36, generator=g)).clamp(0, 1)


def sobel_rgb():
    """Sobel x applied to the channel mean: 1 x 3 x 3 x 3."""
    return convlib.kernels.sobel_x().expand(1, 3, 3, 3) / 3


@pytest.mark.parametrize("name", list(all_examples()))
def test_html_is_small_offline_and_has_every_frame(name):
    an = all_examples()[name]()
    html = an._repr_html_()
    assert 5 < an.size_kb < viz.MAX_KB, f"{name}: {an.size_kb:.0f} KB"
    frames = re.findall(r'frames\[\d+\] = "data:image/png;base64,', html)
    assert len(frames) == an.n_frames > 1
    assert not re.search(r"(src|href)=\"https?://", html), "the page would fetch something from the network"
    assert "font-awesome" not in html and 'class="fa ' not in html
    assert 'title="Play"' in html and "play_animation()" in html
    assert "<Animation" in repr(an)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: viz.animate_tap_slices(
            torch.randn(2, 3, 4, generator=g),
            torch.randn(2, 2, 2, 3, generator=g),
            torch.randn(2, generator=g),
            padding=(1, 1),
            out_channel=1,
        ),  # C = 2, bias
        lambda g: viz.animate_tap_slices(
            torch.randn(1, 3, 1, generator=g), torch.randn(1, 1, 3, 3, generator=g), padding=1
        ),  # W = 1: taps that read only padding
        lambda g: viz.animate_tap_slices(
            torch.randn(1, 6, 6, generator=g), torch.randn(1, 1, 2, 3, generator=g), padding=(0, 2), dilation=2
        ),
        lambda g: viz.animate_feature_map(
            torch.randn(1, 7, 9, generator=g), torch.randn(1, 1, 3, 3, generator=g), padding=1, max_frames=1
        ),  # grey, zero padding, one frame
        lambda g: viz.animate_feature_map(
            torch.randn(2, 9, 9, generator=g),
            torch.randn(3, 2, 2, 2, generator=g),
            torch.randn(3, generator=g),
            stride=2,
            dilation=2,
            out_channel=2,
        ),
    ],
    ids=["tap-channels-bias", "tap-empty-taps", "tap-dilated", "map-one-frame", "map-strided"],
)
def test_unusual_cases_draw_every_frame(make):
    """The property tests check the numbers without drawing; here the frames of odd cases are drawn."""
    an = make(torch.Generator().manual_seed(0))
    assert len(re.findall(r'frames\[\d+\] = "data:image/png;base64,', an.to_html())) == an.n_frames


def test_html_over_the_size_limit_raises():
    x, w, b, kw = cs231n_example()
    an = viz.animate_window_sum(x, w, b, **kw)
    an.max_kb = 10
    with pytest.raises(ValueError, match="more than max_kb=10"):
        an.to_html()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda x, w: viz.animate_window_sum(x.expand(2, -1, -1, -1), w), ValueError, "one image"),
        (lambda x, w: viz.animate_window_sum(x, w[:, :2]), ValueError, "channels"),
        (lambda x, w: viz.animate_patch_matrix(x, w, out_channel=2), ValueError, "out_channel"),
        (lambda x, w: viz.animate_toeplitz_row(x, w, stride=0), ValueError, "stride"),
        (lambda x, w: viz.animate_window_sum(x.long(), w), TypeError, "floating-point"),
        (lambda x, w: viz.animate_patch_matrix(x[:, :, :1, :1], w), ValueError, "kernel larger"),
        (lambda x, w: viz.animate_transposed_stamp(x, w), ValueError, "C_in x C_out/groups x kh x kw"),
        (
            lambda x, w: viz.animate_transposed_stamp(x[0], w.transpose(0, 1), stride=1, output_padding=1),
            ValueError,
            "output_padding",
        ),
        (lambda x, w: viz.animate_transposed_stamp(x[0], w.transpose(0, 1), padding=5), ValueError, "would be empty"),
        (lambda x, w: viz.animate_settings(settings=[dict(strides=2)]), ValueError, "unknown setting"),
        (lambda x, w: viz.animate_settings(size=2, kernel_size=5), ValueError, "kernel larger"),
        (lambda x, w: viz.animate_settings(settings=[]), ValueError, "at least one"),
        (lambda x, w: viz.animate_feature_map(x, w, max_frames=0), ValueError, "max_frames"),
        (lambda x, w: viz.animate_feature_map(x, w, max_frames=2.0), TypeError, "max_frames"),
        (lambda x, w: viz.animate_feature_map(x, w, out_channel=-1), ValueError, "out_channel"),
        (lambda x, w: viz.animate_feature_map(x[:, :2], w), ValueError, "channels"),
        (lambda x, w: viz.animate_tap_slices(x, w, padding=1, stride=2), ValueError, "stride-1"),
        (lambda x, w: viz.animate_tap_slices(x, w), ValueError, "as wide as the input"),
        (lambda x, w: viz.animate_tap_slices(x, w, padding=(1, 2)), ValueError, "as wide as the input"),
        (lambda x, w: viz.animate_tap_slices(x, w, padding=1, out_channel=2), ValueError, "out_channel"),
    ],
)
def test_bad_input_raises_clear_error(call, exc, words):
    x, w, _, _ = cs231n_example()
    with pytest.raises(exc, match=words):
        call(x.unsqueeze(0), w)


# ---------------------------------------------------------------- pictures a reader can read


def _texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]


def assert_frame_readable(fig, name: str = "") -> None:
    """The frame on display: no text under 11 pt, none outside the figure, no number wider than its cell."""
    renderer = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height()
    for text in _texts(fig):
        assert text.get_fontsize() >= 11, f"{name}: {text.get_text()!r} at {text.get_fontsize()} pt"
        box = text.get_window_extent(renderer)
        assert box.x0 >= -1 and box.x1 <= W + 1 and box.y0 >= -1 and box.y1 <= H + 1, f"{name}: {text.get_text()!r}"
    for ax in fig.axes:
        cell = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0])
        for text in ax.texts:
            if text.get_ha() == "center" and text.get_va() == "center" and text.get_text().strip():
                assert text.get_window_extent(renderer).width <= cell, f"{name}: {text.get_text()!r} clipped"


def _every_frame(an):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(an.fig)  # the figure is closed (no pyplot canvas): draw it on its own
    for t in range(an.n_frames):
        an.anim._func(t)
        canvas.draw()
        yield t


# the numbers the first frame of each book example must write (none left out for want of room): its grids
WRITTEN = {
    "window_sum": 3 * 7 * 7 + 3 * 3 * 3 + 1,  # padded channels, kernel channels, Y[0, 0, 0]
    "patch_matrix": 4 * 4 + 12 + 12 * 9 + 1,  # channel 0, K_row, cols, Y[0, 0, 0]
    "toeplitz_row": 30 + 8 + 1,  # X.flatten(), row 0's kernel taps, Y[0, 0, 0]
    "transposed_stamp": 4 + 9 + 9,  # X, the first stamp, the cells it wrote
    "tap_slices": 20 + 20 + 9,  # X.flatten(), X, K
}


def book_animations():
    made = {name: lambda m=m, a=a, k=k: m(*a, **k) for name, (m, _, a, k) in book_examples().items()}
    made["tap_slices"] = all_examples()["tap_slices"]
    return made


@pytest.mark.parametrize("name", [*BOOK, "tap_slices"])
def test_frames_are_wide_and_their_text_readable(name):
    """At least 900 pixels wide, 8 inches: shown in the book's text column (700 to 800 CSS pixels) at 0.9 to 1.0
    of its size, so text of 11 pt or more reads at 10 pt or more; nothing outside the frame, every number
    written in a cell inside its cell, and no number of the book's examples left out for want of room."""
    an = book_animations()[name]()
    fig = an.fig
    width_in = fig.get_size_inches()[0]
    assert width_in <= viz.MAX_FIG_WIDTH and width_in * fig.dpi >= 900
    for t in _every_frame(an):
        if t == 0 and name in WRITTEN:
            centred = [x for ax in fig.axes for x in ax.texts if x.get_ha() == "center" and x.get_va() == "center"]
            assert len(centred) >= WRITTEN[name], f"{name}: numbers left out"
        assert_frame_readable(fig, name)


@pytest.mark.parametrize("name", ["window_sum", "patch_matrix", "toeplitz_row", "feature_map", "tap_slices"])
def test_titles_use_the_books_notation(name):
    """K the kernel (never W, a width), X and Y capitals, Y with the indices of the text, no 'h*W + w' axis,
    and a bias term only where there is a bias."""
    an = book_animations()[name]()
    has_bias = name == "window_sum"
    for _ in _every_frame(an):
        words = " ".join(t.get_text() for t in _texts(an.fig))
        assert "W[" not in words and "W_row" not in words and "h*W" not in words and "x.flatten" not in words
        assert ("(b[0])" in words) == has_bias and "+ b " not in words and "+ b\n" not in words
    if name != "feature_map" and name != "tap_slices":
        assert re.search(r"Y\[0, \d+, \d+, \d+\] = ", an.fig._suptitle.get_text())


def test_settings_animation_ties_each_window_to_its_output_cell():
    an = viz.animate_settings()
    ax_in, ax_out = an.fig.axes
    for t in _every_frame(an):
        f = an.frames[t]

        def outlined(ax):
            return {(int(p.get_y()), int(p.get_x()), p.get_edgecolor()) for p in ax.patches if not p.get_fill()}

        top, left = f["sides"][0], f["sides"][2]
        for window in f["windows"]:  # the window's taps and the cell (i, j) it writes: one colour
            (colour,) = {c for r, q, c in outlined(ax_out) if (r, q) == (window["i"], window["j"])}
            taps = {(r - top, q - left) for r, q, c in outlined(ax_in) if c == colour}
            assert taps == set(window["taps"])
        assert len({c for *_, c in outlined(ax_out)}) == len(f["windows"])
