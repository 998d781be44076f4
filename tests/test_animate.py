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
DRAWN = settings(max_examples=8, deadline=None)


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
        expected_delta[
            f["i"] * s : f["i"] * s + d * (k[0] - 1) + 1 : d, f["j"] * s : f["j"] * s + d * (k[1] - 1) + 1 : d
        ] = stamp
        torch.testing.assert_close(canvas - prev, expected_delta)
        prev = canvas


def test_settings_explorer_output_sizes_equal_conv2d():
    an = animate.settings_explorer(size=7, kernel_size=3)
    assert an.n_frames == len(animate.DEFAULT_SETTINGS)
    for f, (Ho, Wo) in zip(an.frames, an.values.tolist()):
        shape = F.conv2d(
            torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), None, f["stride"], f["padding"], f["dilation"]
        ).shape[2:]
        assert (Ho, Wo) == (f["Ho"], f["Wo"]) == tuple(shape)


@settings(max_examples=10, deadline=None)
@given(
    H=st.integers(3, 9),
    W=st.integers(3, 9),
    k=st.integers(1, 3),
    st_=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)), min_size=1, max_size=4),
)
def test_settings_explorer_random_settings(H, W, k, st_):
    sets = [dict(stride=s, padding=p, dilation=d) for s, p, d in st_]
    assume(all(d * (k - 1) + 1 <= min(H, W) + 2 * p for _, p, d in st_))  # the kernel fits (else: a clear error)
    an = animate.settings_explorer((H, W), k, sets)
    for f in an.frames:
        shape = F.conv2d(
            torch.zeros(1, 1, H, W), torch.zeros(1, 1, k, k), None, f["stride"], f["padding"], f["dilation"]
        ).shape[2:]
        assert (
            (f["Ho"], f["Wo"])
            == tuple(shape)
            == convlib.conv2d_output_shape((H, W), k, **{key: f[key] for key in ("stride", "padding", "dilation")})
        )


@DRAWN
@given(cfg=conv_configs(max_groups=1), max_frames=st.integers(1, 6))
def test_feature_map_depicts_unfold_and_conv2d(cfg, max_frames):
    x, weight, bias, kw = one_image(cfg)
    kw.pop("groups")
    o = weight.shape[0] - 1
    an = animate.feature_map(x, weight, bias, out_channel=o, max_frames=max_frames, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, o]
    Ho, Wo = expected.shape
    torch.testing.assert_close(an.values, expected, **tol(x.dtype))
    per = -(-Ho // max_frames)
    assert an.n_frames == -(-Ho // per) <= max_frames
    cols = F.unfold(x, weight.shape[2:], **{k: kw[k] for k in ("stride", "padding", "dilation")})[0]
    # the bands cover every output row once, in order, and each is W_row @ its block of columns
    assert [f["rows"][0] for f in an.frames] == list(range(0, Ho, per)) and an.frames[-1]["rows"][1] == Ho
    for f in an.frames:
        (i0, i1), (l0, l1) = f["rows"], f["columns"]
        assert (l0, l1) == (i0 * Wo, i1 * Wo) and 1 <= i1 - i0 <= per
        torch.testing.assert_close(torch.tensor(f["outputs"], dtype=x.dtype), expected[i0:i1], **tol(x.dtype))
        torch.testing.assert_close(torch.tensor(f["column"], dtype=x.dtype), cols[:, l0])
        assert f["value"] == pytest.approx(float(expected[i0, 0]), rel=1e-4, abs=1e-4)


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
    an = animate.tap_slices(x, weight, bias, out_channel=o, **kw)
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
        "feature_map": lambda: animate.feature_map(photo(), sobel_rgb()),
        "tap_slices": lambda: animate.tap_slices(
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
    assert 5 < an.size_kb < animate.MAX_KB, f"{name}: {an.size_kb:.0f} KB"
    frames = re.findall(r'frames\[\d+\] = "data:image/png;base64,', html)
    assert len(frames) == an.n_frames > 1
    assert not re.search(r"(src|href)=\"https?://", html), "the page would fetch something from the network"
    assert "font-awesome" not in html and 'class="fa ' not in html
    assert 'title="Play"' in html and "play_animation()" in html
    assert "<Animation" in repr(an)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: animate.tap_slices(
            torch.randn(2, 3, 4, generator=g),
            torch.randn(2, 2, 2, 3, generator=g),
            torch.randn(2, generator=g),
            padding=(1, 1),
            out_channel=1,
        ),  # C = 2, bias
        lambda g: animate.tap_slices(
            torch.randn(1, 3, 1, generator=g), torch.randn(1, 1, 3, 3, generator=g), padding=1
        ),  # W = 1: taps that read only padding
        lambda g: animate.tap_slices(
            torch.randn(1, 6, 6, generator=g), torch.randn(1, 1, 2, 3, generator=g), padding=(0, 2), dilation=2
        ),
        lambda g: animate.feature_map(
            torch.randn(1, 7, 9, generator=g), torch.randn(1, 1, 3, 3, generator=g), padding=1, max_frames=1
        ),  # grey, zero padding, one frame
        lambda g: animate.feature_map(
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
        (
            lambda x, w: animate.transposed_stamp(x[0], w.transpose(0, 1), stride=1, output_padding=1),
            ValueError,
            "output_padding",
        ),
        (lambda x, w: animate.transposed_stamp(x[0], w.transpose(0, 1), padding=5), ValueError, "crops"),
        (lambda x, w: animate.settings_explorer(settings=[dict(strides=2)]), ValueError, "unknown setting"),
        (lambda x, w: animate.settings_explorer(size=2, kernel_size=5), ValueError, "kernel larger"),
        (lambda x, w: animate.settings_explorer(settings=[]), ValueError, "at least one"),
        (lambda x, w: animate.feature_map(x, w, max_frames=0), ValueError, "max_frames"),
        (lambda x, w: animate.feature_map(x, w, max_frames=2.0), TypeError, "max_frames"),
        (lambda x, w: animate.feature_map(x, w, out_channel=-1), ValueError, "out_channel"),
        (lambda x, w: animate.feature_map(x[:, :2], w), ValueError, "channels"),
        (lambda x, w: animate.tap_slices(x, w, padding=1, stride=2), ValueError, "stride-1"),
        (lambda x, w: animate.tap_slices(x, w), ValueError, "as wide as the input"),
        (lambda x, w: animate.tap_slices(x, w, padding=(1, 2)), ValueError, "as wide as the input"),
        (lambda x, w: animate.tap_slices(x, w, padding=1, out_channel=2), ValueError, "out_channel"),
    ],
)
def test_bad_input_raises_clear_error(call, exc, words):
    x, w, _, _ = cs231n_example()
    with pytest.raises(exc, match=words):
        call(x.unsqueeze(0), w)
