"""convlib.animate: what the animations depict equals PyTorch; the HTML is small, offline and playable."""

from __future__ import annotations

import re

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from conftest import conv_configs, tol
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convlib
from convlib import animate

matplotlib.use("Agg")
# The value tests build animations without rendering them to HTML; matplotlib warns about that on deletion.
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering anything")

# Every animation draws a figure when it is built (about 0.1-1 s): fewer examples than the pure-number tests.
DRAWN = settings(max_examples=10, deadline=None)


def cs231n_example():
    """A CS231n-sized example: a 3 x 5 x 5 input, two 3 x 3 x 3 filters, stride 2, padding 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (3, 5, 5), generator=g).float()
    w = torch.randint(-1, 2, (2, 3, 3, 3), generator=g).float()
    b = torch.tensor([1.0, 0.0])
    return x, w, b, dict(stride=2, padding=1)


def one_image(cfg):
    x, weight, bias, kw = cfg
    return x[:1], weight, bias, kw


# ---------------------------------------------------------------- the numbers the frames show


@DRAWN
@given(cfg=conv_configs(max_groups=1))
def test_window_sum_depicts_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    kw.pop("groups")
    o = weight.shape[0] - 1
    an = animate.window_sum(x, weight, bias, out_channel=o, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, o]
    torch.testing.assert_close(an.values, expected, **tol(x.dtype))
    assert an.n_frames == expected.numel()
    for f in an.frames:  # one sum per input channel: the single-channel convolutions, plus the bias once
        for c, partial in enumerate(f["partials"]):
            single = F.conv2d(x[:, c : c + 1], weight[o : o + 1, c : c + 1], None, **kw)[0, 0, f["i"], f["j"]]
            assert partial == pytest.approx(float(single), rel=1e-4, abs=1e-4)
        assert f["value"] == pytest.approx(float(expected[f["i"], f["j"]]), rel=1e-4, abs=1e-4)


@DRAWN
@given(cfg=conv_configs(max_groups=1))
def test_patch_matrix_depicts_unfold_and_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    kw.pop("groups")
    an = animate.patch_matrix(x, weight, bias, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, 0]
    torch.testing.assert_close(an.values, expected, **tol(x.dtype))
    cols = F.unfold(x, weight.shape[2:], **{k: kw[k] for k in ("stride", "padding", "dilation")})[0]
    for f in an.frames:
        assert f["l"] == f["i"] * expected.shape[1] + f["j"]
        torch.testing.assert_close(torch.tensor(f["column"], dtype=x.dtype), cols[:, f["l"]])


@DRAWN
@given(cfg=conv_configs(max_groups=1))
def test_toeplitz_row_depicts_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    kw.pop("groups")
    an = animate.toeplitz_row(x, weight, bias, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, 0]
    torch.testing.assert_close(an.values, expected, **tol(x.dtype))
    assert an.n_frames == expected.numel()
    # the inputs a row reads are the pixels that influence that output (its window minus the padding)
    for f in an.frames:
        probe = x.clone().requires_grad_(True)
        F.conv2d(probe, torch.ones_like(weight), None, **kw)[0, 0, f["i"], f["j"]].backward()
        assert f["reads"] == torch.nonzero(probe.grad.flatten()).flatten().tolist()


@st.composite
def transposed_configs(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    C, O = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    op = draw(st.integers(0, max(s, d) - 1))
    full = min((H - 1) * s + d * (kh - 1) + 1, (W - 1) * s + d * (kw - 1) + 1)
    p = draw(st.integers(0, (full - 1) // 2))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(C, H, W, generator=gen, dtype=dtype)
    weight = torch.randn(C, O, kh, kw, generator=gen, dtype=dtype)
    return x, weight, dict(stride=s, padding=p, output_padding=op, dilation=d)


@DRAWN
@given(cfg=transposed_configs())
def test_transposed_stamp_depicts_conv_transpose2d(cfg):
    x, weight, kw = cfg
    o = weight.shape[1] - 1
    an = animate.transposed_stamp(x, weight, out_channel=o, max_frames=100, **kw)
    expected = F.conv_transpose2d(x.unsqueeze(0), weight, None, **kw)[0, o]
    torch.testing.assert_close(an.values, expected, **tol(x.dtype))
    assert an.n_frames == x.shape[1] * x.shape[2]
    # every stamp adds exactly x[:, i, j] * kernel: the canvases grow by one scaled kernel per frame
    s, d, k = kw["stride"], kw["dilation"], weight.shape[2:]
    prev = torch.zeros_like(torch.tensor(an.frames[0]["canvas"], dtype=torch.float64))
    for f in an.frames:
        canvas = torch.tensor(f["canvas"], dtype=torch.float64)
        stamp = (x[:, f["i"], f["j"]].double().view(-1, 1, 1) * weight[:, o].double()).sum(0)
        expected_delta = torch.zeros_like(canvas)
        expected_delta[f["i"] * s : f["i"] * s + d * (k[0] - 1) + 1 : d,
                       f["j"] * s : f["j"] * s + d * (k[1] - 1) + 1 : d] = stamp  # fmt: skip
        torch.testing.assert_close(canvas - prev, expected_delta)
        prev = canvas


def test_settings_explorer_output_sizes_equal_conv2d():
    an = animate.settings_explorer(size=7, kernel_size=3)
    assert an.n_frames == len(animate.DEFAULT_SETTINGS)
    for f, (Ho, Wo) in zip(an.frames, an.values.tolist()):
        shape = F.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), None, f["stride"], f["padding"],
                         f["dilation"]).shape[2:]  # fmt: skip
        assert (Ho, Wo) == (f["Ho"], f["Wo"]) == tuple(shape)


@settings(max_examples=10, deadline=None)
@given(H=st.integers(3, 9), W=st.integers(3, 9), k=st.integers(1, 3),
       st_=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)), min_size=1, max_size=4))
def test_settings_explorer_random_settings(H, W, k, st_):  # fmt: skip
    sets = [dict(stride=s, padding=p, dilation=d) for s, p, d in st_]
    assume(all(d * (k - 1) + 1 <= min(H, W) + 2 * p for _, p, d in st_))  # the kernel fits (else: a clear error)
    an = animate.settings_explorer((H, W), k, sets)
    for f in an.frames:
        shape = F.conv2d(torch.zeros(1, 1, H, W), torch.zeros(1, 1, k, k), None, f["stride"], f["padding"],
                         f["dilation"]).shape[2:]  # fmt: skip
        assert (f["Ho"], f["Wo"]) == tuple(shape) == convlib.conv2d_output_shape((H, W), k, **{
            key: f[key] for key in ("stride", "padding", "dilation")})  # fmt: skip


def test_max_frames_limits_the_frames():
    x, w, b, kw = cs231n_example()
    an = animate.window_sum(x, w, b, max_frames=4, **kw)
    assert an.n_frames == 4
    assert [(f["i"], f["j"]) for f in an.frames] == [(0, 0), (0, 1), (0, 2), (1, 0)]


# ---------------------------------------------------------------- the HTML: small, offline, playable


def all_examples():
    x, w, b, kw = cs231n_example()
    t_x = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    t_w = torch.tensor([[[[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 2.0]]]])
    return {
        "window_sum": lambda: animate.window_sum(x, w, b, **kw),
        "patch_matrix": lambda: animate.patch_matrix(x, w, b, **kw),
        "toeplitz_row": lambda: animate.toeplitz_row(x, w, b, **kw),
        "transposed_stamp": lambda: animate.transposed_stamp(t_x, t_w, stride=2),
        "settings_explorer": lambda: animate.settings_explorer(),
    }


@pytest.mark.parametrize("name", list(all_examples()))
def test_html_is_small_offline_and_has_every_frame(name):
    an = all_examples()[name]()
    html = an._repr_html_()
    assert 5 < an.size_kb < animate.MAX_KB, f"{name}: {an.size_kb:.0f} KB"
    frames = re.findall(r'frames\[\d+\] = "data:image/png;base64,', html)
    assert len(frames) == an.n_frames > 1
    assert not re.search(r"(src|href)=\"https?://", html), "the page would fetch something from the network"
    assert "font-awesome" not in html and 'class="fa ' not in html
    assert 'title="Play"' in html and "play_animation()" in html
    assert "<Animation" in repr(an)


def test_html_over_the_size_limit_raises():
    x, w, b, kw = cs231n_example()
    an = animate.window_sum(x, w, b, **kw)
    an.max_kb = 10
    with pytest.raises(ValueError, match="more than max_kb=10"):
        an.to_html()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda x, w: animate.window_sum(x.expand(2, -1, -1, -1), w), ValueError, "one image"),
        (lambda x, w: animate.window_sum(x, w[:, :2]), ValueError, "channels"),
        (lambda x, w: animate.patch_matrix(x, w, out_channel=2), ValueError, "out_channel"),
        (lambda x, w: animate.toeplitz_row(x, w, stride=0), ValueError, "stride"),
        (lambda x, w: animate.window_sum(x.long(), w), TypeError, "floating-point"),
        (lambda x, w: animate.patch_matrix(x[:, :, :1, :1], w), ValueError, "kernel larger"),
        (lambda x, w: animate.transposed_stamp(x, w), ValueError, "C x O x kh x kw"),
        (lambda x, w: animate.transposed_stamp(x[0], w.transpose(0, 1), stride=1, output_padding=1), ValueError,
         "output_padding"),
        (lambda x, w: animate.transposed_stamp(x[0], w.transpose(0, 1), padding=5), ValueError, "crops"),
        (lambda x, w: animate.settings_explorer(settings=[dict(strides=2)]), ValueError, "unknown setting"),
        (lambda x, w: animate.settings_explorer(size=2, kernel_size=5), ValueError, "kernel larger"),
        (lambda x, w: animate.settings_explorer(settings=[]), ValueError, "at least one"),
    ],
)
def test_bad_input_raises_clear_error(call, exc, words):
    x, w, _, _ = cs231n_example()
    with pytest.raises(exc, match=words):
        call(x.unsqueeze(0), w)
