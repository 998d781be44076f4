"""convlib.viz.frames: what every animation depicts equals PyTorch, frame by frame, computed without matplotlib.

The functions here are pure torch; this file never imports matplotlib (and a test proves the frames module works
with matplotlib unimportable). ``import convlib`` loads no plotting stack at all.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import conv_configs, tol
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convlib
from convlib.viz import frames

FRAMES = settings(max_examples=40, deadline=None)  # no drawing: cheap enough for many examples


def cs231n_example():
    """A CS231n-sized example: a 3 x 5 x 5 input, two 3 x 3 x 3 filters, stride 2, padding 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (3, 5, 5), generator=g).float()
    w = torch.randint(-1, 2, (2, 3, 3, 3), generator=g).float()
    b = torch.tensor([1.0, 0.0])
    return x, w, b, dict(stride=2, padding=1)


def one_image(cfg):
    x, weight, bias, kw = cfg
    kw = dict(kw)
    kw.pop("groups")
    return x[:1], weight, bias, kw


def geometry(kw):
    return {k: kw[k] for k in ("stride", "padding", "dilation")}


# ---------------------------------------------------------------- one filter over one image


@FRAMES
@given(cfg=conv_configs(max_groups=1))
def test_window_sum_frames_equal_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    o = weight.shape[0] - 1
    fr = frames.window_sum_frames(x, weight, bias, out_channel=o, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, o]
    torch.testing.assert_close(fr.values, expected, **tol(x.dtype))
    assert len(fr.frames) == expected.numel()
    for f in fr.frames:  # one sum per input channel: the single-channel convolutions, plus the bias once
        for c, partial in enumerate(f["partials"]):
            single = F.conv2d(x[:, c : c + 1], weight[o : o + 1, c : c + 1], None, **kw)[0, 0, f["i"], f["j"]]
            assert partial == pytest.approx(float(single), rel=1e-4, abs=1e-4)
        assert f["value"] == pytest.approx(float(expected[f["i"], f["j"]]), rel=1e-4, abs=1e-4)
        assert f["bias"] == (0.0 if bias is None else float(bias[o]))


@FRAMES
@given(cfg=conv_configs(max_groups=1))
def test_patch_matrix_frames_equal_unfold_and_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    fr = frames.patch_matrix_frames(x, weight, bias, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, 0]
    torch.testing.assert_close(fr.values, expected, **tol(x.dtype))
    cols = F.unfold(x, weight.shape[2:], **geometry(kw))[0]
    for f in fr.frames:
        assert f["l"] == f["i"] * expected.shape[1] + f["j"]
        torch.testing.assert_close(torch.tensor(f["column"], dtype=x.dtype), cols[:, f["l"]])


@FRAMES
@given(cfg=conv_configs(max_groups=1, allow_same=True))
def test_filter_panels_are_the_padded_input_the_filter_and_the_patch_matrix(cfg):
    x, weight, bias, kw = one_image(cfg)
    o = weight.shape[0] - 1
    fr = frames.patch_matrix_frames(x, weight, bias, out_channel=o, **kw)
    # the patch matrix is F.unfold of the padded input ('same' and 'valid' included)
    cols = F.unfold(fr.padded[None], weight.shape[2:], dilation=kw["dilation"], stride=kw["stride"])[0]
    assert torch.equal(fr.cols, cols)
    assert torch.equal(fr.kernel, weight[o].double())
    assert fr.bias == (None if bias is None else float(bias[o]))
    # the input sits inside the padded grid where the sides say, and only zeros lie around it
    top, bottom, left, right = fr.sides
    Hp, Wp = fr.padded.shape[1:]
    assert torch.equal(fr.padded[:, top : Hp - bottom, left : Wp - right], x[0].double())
    torch.testing.assert_close(fr.padded.abs().sum(), x.double().abs().sum(), equal_nan=True)  # zeros around it
    torch.testing.assert_close(fr.output, F.conv2d(x, weight, bias, **kw)[0, o].double(), **tol(x.dtype))


@FRAMES
@given(cfg=conv_configs(max_groups=1))
def test_toeplitz_row_frames_equal_conv2d(cfg):
    x, weight, bias, kw = one_image(cfg)
    fr = frames.toeplitz_row_frames(x, weight, bias, max_frames=100, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, 0]
    torch.testing.assert_close(fr.values, expected, **tol(x.dtype))
    assert len(fr.frames) == expected.numel()
    # the inputs a row reads are the pixels that influence that output (its window minus the padding)
    for f in fr.frames:
        probe = x.clone().requires_grad_(True)
        F.conv2d(probe, torch.ones_like(weight), None, **kw)[0, 0, f["i"], f["j"]].backward()
        assert f["reads"] == torch.nonzero(probe.grad.flatten()).flatten().tolist()


@FRAMES
@given(cfg=conv_configs(max_groups=1), max_frames=st.integers(1, 6))
def test_feature_map_frames_equal_unfold_and_conv2d(cfg, max_frames):
    x, weight, bias, kw = one_image(cfg)
    o = weight.shape[0] - 1
    fr = frames.feature_map_frames(x, weight, bias, out_channel=o, max_frames=max_frames, **kw)
    expected = F.conv2d(x, weight, bias, **kw)[0, o]
    Ho, Wo = expected.shape
    torch.testing.assert_close(fr.values, expected, **tol(x.dtype))
    per = -(-Ho // max_frames)
    assert len(fr.frames) == -(-Ho // per) <= max_frames
    cols = F.unfold(x, weight.shape[2:], **geometry(kw))[0]
    # the bands cover every output row once, in order, and each is K_row @ its block of columns
    assert [f["rows"][0] for f in fr.frames] == list(range(0, Ho, per)) and fr.frames[-1]["rows"][1] == Ho
    for f in fr.frames:
        (i0, i1), (l0, l1) = f["rows"], f["columns"]
        assert (l0, l1) == (i0 * Wo, i1 * Wo) and 1 <= i1 - i0 <= per
        torch.testing.assert_close(torch.tensor(f["outputs"], dtype=x.dtype), expected[i0:i1], **tol(x.dtype))
        torch.testing.assert_close(torch.tensor(f["column"], dtype=x.dtype), cols[:, l0])
        assert f["value"] == pytest.approx(float(expected[i0, 0]), rel=1e-4, abs=1e-4)


def test_max_frames_limits_the_frames():
    x, w, b, kw = cs231n_example()
    fr = frames.window_sum_frames(x, w, b, max_frames=4, **kw)
    assert len(fr.frames) == 4
    assert [(f["i"], f["j"]) for f in fr.frames] == [(0, 0), (0, 1), (0, 2), (1, 0)]


# ---------------------------------------------------------------- transposed convolution


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


@FRAMES
@given(cfg=transposed_configs())
def test_transposed_stamp_frames_equal_conv_transpose2d(cfg):
    x, weight, kw = cfg
    o = weight.shape[1] - 1
    fr = frames.transposed_stamp_frames(x, weight, out_channel=o, max_frames=100, **kw)
    expected = F.conv_transpose2d(x.unsqueeze(0), weight, None, **kw)[0, o]
    torch.testing.assert_close(fr.values, expected, **tol(x.dtype))
    assert len(fr.frames) == x.shape[1] * x.shape[2]
    # every stamp adds exactly x[:, i, j] * kernel: the canvases grow by one scaled kernel per frame
    s, d, k = kw["stride"], kw["dilation"], weight.shape[2:]
    prev = torch.zeros_like(torch.tensor(fr.frames[0]["canvas"], dtype=torch.float64))
    for f in fr.frames:
        canvas = torch.tensor(f["canvas"], dtype=torch.float64)
        stamp = (x[:, f["i"], f["j"]].double().view(-1, 1, 1) * weight[:, o].double()).sum(0)
        expected_delta = torch.zeros_like(canvas)
        expected_delta[
            f["i"] * s : f["i"] * s + d * (k[0] - 1) + 1 : d, f["j"] * s : f["j"] * s + d * (k[1] - 1) + 1 : d
        ] = stamp
        torch.testing.assert_close(canvas - prev, expected_delta)
        # the cells the frame outlines are the stamp's
        covered = torch.zeros_like(canvas, dtype=torch.bool)
        covered[f["i"] * s : f["i"] * s + d * (k[0] - 1) + 1 : d, f["j"] * s : f["j"] * s + d * (k[1] - 1) + 1 : d] = 1
        assert sorted(f["cells"]) == sorted(map(tuple, torch.nonzero(covered).tolist()))
        prev = canvas
    ph = kw["padding"]
    assert fr.crop == (ph, ph, *expected.shape)


# ---------------------------------------------------------------- stride / padding / dilation


def test_settings_frames_output_sizes_equal_conv2d():
    fr = frames.settings_frames(size=7, kernel_size=3)
    assert len(fr.frames) == len(frames.DEFAULT_SETTINGS)
    for f, (Ho, Wo) in zip(fr.frames, fr.values.tolist()):
        shape = F.conv2d(
            torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), None, f["stride"], f["padding"], f["dilation"]
        ).shape[2:]
        assert (Ho, Wo) == (f["Ho"], f["Wo"]) == tuple(shape)


@settings(max_examples=40, deadline=None)
@given(
    H=st.integers(3, 9),
    W=st.integers(3, 9),
    k=st.integers(1, 3),
    st_=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)), min_size=1, max_size=4),
)
def test_settings_frames_random_settings(H, W, k, st_):
    sets = [dict(stride=s, padding=p, dilation=d) for s, p, d in st_]
    assume(all(d * (k - 1) + 1 <= min(H, W) + 2 * p for _, p, d in st_))  # the kernel fits (else: a clear error)
    fr = frames.settings_frames((H, W), k, sets)
    for f in fr.frames:
        shape = F.conv2d(
            torch.zeros(1, 1, H, W), torch.zeros(1, 1, k, k), None, f["stride"], f["padding"], f["dilation"]
        ).shape[2:]
        assert (
            (f["Ho"], f["Wo"])
            == tuple(shape)
            == convlib.conv2d_output_shape((H, W), k, **{key: f[key] for key in ("stride", "padding", "dilation")})
        )
        # the taps of the outlined windows are the input positions F.unfold reads for them (-1: padding)
        index = torch.arange(1.0, H * W + 1).reshape(1, 1, H, W)  # pixel (r, q) holds r*W + q + 1; padding 0
        cols = F.unfold(index, k, **{key: f[key] for key in ("stride", "padding", "dilation")})[0].long() - 1
        for window in f["windows"]:
            read = cols[:, window["i"] * f["Wo"] + window["j"]].tolist()
            taps = [r * W + q if 0 <= r < H and 0 <= q < W else -1 for r, q in window["taps"]]
            assert taps == read
        assert [(w["i"], w["j"]) for w in f["windows"]] == sorted({(0, 0), (f["Ho"] - 1, f["Wo"] - 1)})
        for i in range(f["Ho"]):  # window (i, j) starts at input row i*s - p, column j*s - p
            for j in range(f["Wo"]):
                r, q = f["starts"][i * f["Wo"] + j]
                assert (r, q) == (i * f["stride"][0] - f["padding"][0], j * f["stride"][1] - f["padding"][1])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda x, w: frames.window_sum_frames(x.expand(2, -1, -1, -1), w), ValueError, "one image"),
        (lambda x, w: frames.patch_matrix_frames(x, w, out_channel=2), ValueError, "out_channel"),
        (lambda x, w: frames.feature_map_frames(x, w, max_frames=0), ValueError, "max_frames"),
        (lambda x, w: frames.toeplitz_row_frames(x, w, max_frames=True), TypeError, "max_frames"),
        (lambda x, w: frames.transposed_stamp_frames(x, w.transpose(0, 1), out_channel=3), ValueError, "out_channel"),
        (lambda x, w: frames.settings_frames(settings=[dict(padding=-1)]), ValueError, "padding"),
    ],
)
def test_bad_input_raises_clear_error(call, exc, words):
    x, w, _, _ = cs231n_example()
    with pytest.raises(exc, match=words):
        call(x.unsqueeze(0), w)


# ---------------------------------------------------------------- no plotting library needed


def _python(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_import_convlib_loads_no_plotting_widget_or_data_stack():
    heavy = ("matplotlib", "seaborn", "PIL", "ipywidgets", "scipy", "torchvision")
    code = f"import convlib, sys; print([m for m in {heavy!r} if m in sys.modules])"
    assert _python(code) == "[]"
    code = f"import convlib.viz, sys; print([m for m in {heavy!r} if m in sys.modules])"  # the package is lazy too
    assert _python(code) == "[]"


def test_frames_work_with_matplotlib_unimportable():
    out = _python(
        """
        import sys
        sys.modules["matplotlib"] = None  # any import of matplotlib now raises ImportError
        import torch
        from convlib.viz import frames
        x, w = torch.arange(16.0).reshape(1, 4, 4), torch.ones(1, 1, 2, 2)
        n = [len(frames.window_sum_frames(x, w).frames), len(frames.patch_matrix_frames(x, w).frames),
             len(frames.toeplitz_row_frames(x, w).frames), len(frames.feature_map_frames(x, w).frames),
             len(frames.transposed_stamp_frames(x, w).frames), len(frames.settings_frames().frames)]
        print(n)
        """
    )
    assert out == "[9, 9, 9, 3, 12, 6]"
