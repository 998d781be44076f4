"""convlib.conv_transpose2d (every method) against F.conv_transpose2d, and the adjoint of convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import as_pair, check_conv, int_or_pair, torch_conv2d, torch_conv_transpose2d
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib.transposed import TRANSPOSED_METHODS


@st.composite
def transposed_configs(draw, max_groups=3):
    """A random valid ``F.conv_transpose2d`` configuration: tensors plus keyword arguments.

    Batch, channels, groups, non-square inputs and kernels, stride, padding, output_padding (each axis below
    its stride or its dilation), dilation (each an int or a pair), with or without bias, float32 or float64.
    The input is just large enough for a non-empty output, plus a random margin.
    """
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = draw(st.integers(1, max_groups))
    N = draw(st.integers(1, 3))
    C_in = g * draw(st.integers(1, 3))
    C_out = g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(int_or_pair(st.integers(1, 3)))
    dilation = draw(int_or_pair(st.integers(1, 3)))
    padding = draw(int_or_pair(st.integers(0, 3)))
    (sh, sw), (dh, dw), (ph, pw) = as_pair(stride), as_pair(dilation), as_pair(padding)
    oph = draw(st.integers(0, max(sh, dh) - 1))
    opw = draw(st.integers(0, max(sw, dw) - 1))
    output_padding = (oph, opw) if draw(st.booleans()) or oph != opw else oph

    def smallest(k, s, p, op, d):  # the smallest i with (i-1)*s - 2p + d(k-1) + op + 1 >= 1
        short = 2 * p - d * (k - 1) - op
        return 1 + max(0, -(-short // s))

    H = smallest(kh, sh, ph, oph, dh) + draw(st.integers(0, 5))
    W = smallest(kw, sw, pw, opw, dw) + draw(st.integers(0, 5))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(N, C_in, H, W, generator=gen, dtype=dtype)
    weight = torch.randn(C_in, C_out // g, kh, kw, generator=gen, dtype=dtype)
    bias = torch.randn(C_out, generator=gen, dtype=dtype) if draw(st.booleans()) else None
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, groups=g, dilation=dilation)
    return x, weight, bias, kwargs


def test_strategy_reaches_the_edges():
    """The strategy produces output sizes of exactly 1 and output_padding >= stride (allowed by dilation)."""
    seen = {"Ho=1": False, "op>=s": False}

    @given(cfg=transposed_configs())
    def collect(cfg):
        x, weight, bias, kw = cfg
        y = torch_conv_transpose2d(x, weight, bias, **kw)  # PyTorch accepts every configuration drawn
        seen["Ho=1"] |= y.shape[2] == 1
        seen["op>=s"] |= as_pair(kw["output_padding"])[0] >= as_pair(kw["stride"])[0]

    collect()
    assert all(seen.values()), seen


# ---------------------------------------------------------------- equal to PyTorch, property-based


@pytest.mark.parametrize("method", TRANSPOSED_METHODS)
@given(cfg=transposed_configs())
def test_conv_transpose2d_equals_F_conv_transpose2d(method, cfg):
    check_conv(convlib.conv_transpose2d, cfg, reference=F.conv_transpose2d, method=method)


@pytest.mark.parametrize("method", TRANSPOSED_METHODS)
@given(cfg=transposed_configs(max_groups=2))
def test_conv_transpose2d_unbatched(method, cfg):
    check_conv(convlib.conv_transpose2d, cfg, reference=F.conv_transpose2d, unbatched=True, method=method)


@given(cfg=transposed_configs())
def test_output_size_formula_matches_pytorch(cfg):
    x, weight, bias, kw = cfg
    Ho, Wo = torch_conv_transpose2d(x, weight, bias, **kw).shape[2:]
    (sh, sw), (ph, pw) = as_pair(kw["stride"]), as_pair(kw["padding"])
    (oph, opw), (dh, dw) = as_pair(kw["output_padding"]), as_pair(kw["dilation"])
    assert convlib.transposed_output_size(x.shape[2], weight.shape[2], sh, ph, oph, dh) == Ho
    assert convlib.transposed_output_size(x.shape[3], weight.shape[3], sw, pw, opw, dw) == Wo


@given(cfg=transposed_configs())
def test_transposed_convolution_is_the_adjoint_of_convolution(cfg):
    """<conv2d(z, W), x> == <z, conv_transpose2d(x, W)>: the same weight, the transposed matrix.

    The convolution maps the transposed convolution's output size back to the input size, except when
    output_padding >= stride (allowed when it is below the dilation): then it returns floor(op/s) more rows or
    columns, which no input pixel of the transposed convolution reaches, and the adjoint is the cropped one.
    """
    x, weight, _, kw = cfg
    x, weight = x.double(), weight.double()
    y = convlib.conv_transpose2d(x, weight, **kw)
    z = torch.randn_like(y)
    conv = torch_conv2d(z, weight, None, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    extra = [op // s for op, s in zip(as_pair(kw["output_padding"]), as_pair(kw["stride"]))]
    assert list(conv.shape[2:]) == [x.shape[2] + extra[0], x.shape[3] + extra[1]]
    conv = conv[:, :, : x.shape[2], : x.shape[3]]
    torch.testing.assert_close((conv * x).sum(), (z * y).sum(), rtol=1e-10, atol=1e-10)


@given(cfg=transposed_configs())
def test_zero_insertion_pieces(cfg):
    """insert_zeros keeps every pixel on a stride grid; flip_swap_kernel is an involution on its layout."""
    x, weight, _, kw = cfg
    sh, sw = as_pair(kw["stride"])
    up = convlib.insert_zeros(x, kw["stride"])
    assert up.shape[2:] == ((x.shape[2] - 1) * sh + 1, (x.shape[3] - 1) * sw + 1)
    assert torch.equal(up[:, :, ::sh, ::sw], x)
    between = torch.ones(up.shape[2:], dtype=torch.bool)
    between[::sh, ::sw] = False
    assert torch.all(up[:, :, between] == 0)  # nothing but zeros in between
    g = kw["groups"]
    flipped = convlib.flip_swap_kernel(weight, g)
    assert flipped.shape == (weight.shape[1] * g, weight.shape[0] // g, *weight.shape[2:])
    assert torch.equal(convlib.flip_swap_kernel(flipped, g), weight)


# ---------------------------------------------------------------- worked examples


def test_seed_example():
    """The widely shared example: Y = corr2d(arange(30) as 5x6, arange(8) as 2x4); transposed back to 5x6."""
    X = torch.arange(30.0).reshape(5, 6)
    K = torch.arange(8.0).reshape(2, 4)
    Y = convlib.corr2d(X, K)
    for method in TRANSPOSED_METHODS:
        T = convlib.conv_transpose2d(Y[None, None], K[None, None], method=method)[0, 0]
        assert T.shape == (5, 6)
        assert T[:2].tolist() == [[0, 184, 580, 1216, 1116, 720], [736, 2120, 4208, 5984, 4880, 2904]]
        assert torch.equal(T, F.conv_transpose2d(Y[None, None], K[None, None])[0, 0])


def test_output_padding_is_not_zero_padding():
    """With padding 1, the extra row that output_padding adds holds values the padding would have cut off."""
    x = torch.ones(1, 1, 2, 2)
    w = torch.ones(1, 1, 3, 3)
    y0 = convlib.conv_transpose2d(x, w, stride=2, padding=1)
    y1 = convlib.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    assert y0.shape[2:] == (3, 3) and y1.shape[2:] == (4, 4)
    assert torch.equal(y1[..., :3, :3], y0)
    assert y1[0, 0, 3].tolist() == [1, 2, 1, 1]  # not zeros: row 3 of the 5 x 5 canvas, which padding 1 cut


def test_checkerboard_overlap_counts():
    """Kernel 3, stride 2: the output pixels are covered by 1, 2 or 4 stamps; kernel 4, stride 2: evenly."""
    ones = torch.ones(1, 1, 4, 4)
    c3 = convlib.conv_transpose2d(ones, torch.ones(1, 1, 3, 3), stride=2)[0, 0]
    along = torch.tensor([1.0, 1, 2, 1, 2, 1, 2, 1, 1])  # stamps at 0, 2, 4, 6, each 3 wide
    assert torch.equal(c3, torch.outer(along, along))
    assert c3[1:4, 1:4].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    c4 = convlib.conv_transpose2d(ones, torch.ones(1, 1, 4, 4), stride=2, padding=1)[0, 0]
    assert torch.equal(c4[1:-1, 1:-1], torch.full((6, 6), 4.0))


# ---------------------------------------------------------------- bad input: clear errors

X = torch.randn(1, 4, 5, 5)
WT = torch.randn(4, 2, 3, 3)

BAD_CALLS = [
    ((X, WT), {"output_padding": 1}, ValueError, "output_padding must be smaller than the stride or the dilation"),
    ((X, WT), {"stride": 2, "output_padding": 2}, ValueError, "output_padding must be smaller than the stride"),
    ((X, WT), {"stride": (2, 1), "output_padding": (1, 1)}, ValueError, "along the width"),
    ((X, WT), {"output_padding": -1}, ValueError, "output_padding must not be negative"),
    ((X, WT), {"padding": 6}, ValueError, "would be empty along the height"),
    ((X, WT), {"padding": (0, 6)}, ValueError, "would be empty along the width"),
    ((X, WT), {"padding": "same"}, TypeError, "has no 'same' or 'valid'"),
    ((X, WT), {"padding": -1}, ValueError, "padding must not be negative"),
    ((X, WT), {"stride": 0}, ValueError, "stride must be at least 1"),
    ((X, WT), {"dilation": 0}, ValueError, "dilation must be at least 1"),
    ((X, WT), {"groups": 3}, ValueError, "groups=3 does not divide the input's 4 channels"),
    ((X, WT), {"groups": 0}, ValueError, "groups must be at least 1"),
    ((X, torch.randn(2, 4, 3, 3)), {}, ValueError, "in-channels first"),
    ((X, torch.randn(4, 2, 3)), {}, ValueError, "weight must be 4-D"),
    ((torch.randn(5, 5), WT), {}, ValueError, "input must be 4-D"),
    ((X, WT, torch.randn(4)), {"groups": 1}, ValueError, "bias must be 1-D with 2 entries"),
    ((X, WT, torch.randn(3)), {"groups": 2}, ValueError, "bias must be 1-D with 4 entries"),
    ((X, WT, torch.randn(2, dtype=torch.float64)), {}, TypeError, "bias must have the weight's dtype"),
    ((X.double(), WT), {}, TypeError, "same dtype"),
    ((X.long(), WT.long()), {}, TypeError, "floating-point dtype"),
    ((X.numpy(), WT), {}, TypeError, "input must be a torch.Tensor"),
    ((X, WT), {"method": "fft"}, ValueError, "method must be one of"),
]


@pytest.mark.parametrize("method", TRANSPOSED_METHODS)
@pytest.mark.parametrize("args,kwargs,exc,words", BAD_CALLS)
def test_conv_transpose2d_bad_input(method, args, kwargs, exc, words):
    kwargs = {"method": method} | kwargs
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        convlib.conv_transpose2d(*args, **kwargs)


def test_output_padding_allowed_by_dilation():
    """output_padding 1 with stride 1 is fine when the dilation is 2 (PyTorch's rule: < stride OR < dilation)."""
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 3, 3)
    for method in TRANSPOSED_METHODS:
        y = convlib.conv_transpose2d(x, w, output_padding=1, dilation=2, method=method)
        torch.testing.assert_close(y, F.conv_transpose2d(x, w, output_padding=1, dilation=2))
        assert y.shape[2:] == (8, 8)


@pytest.mark.parametrize(
    "args,exc,words",
    [
        ((4, 3, 2, 1, 2), ValueError, "output_padding must be smaller than the stride or the dilation"),
        ((2, 1, 1, 2), ValueError, "would be empty"),
        ((0, 3), ValueError, "size must be at least 1"),
        ((4, 3, 2.0), TypeError, "stride must be an int"),
        ((4, 3, 1, -1), ValueError, "padding must not be negative"),
    ],
)
def test_transposed_output_size_bad_input(args, exc, words):
    with pytest.raises(exc, match=words):
        convlib.transposed_output_size(*args)


def test_transposed_output_size_examples():
    assert convlib.transposed_output_size(4, 3, stride=2, padding=1) == 7
    assert convlib.transposed_output_size(4, 3, stride=2, padding=1, output_padding=1) == 8
    assert convlib.transposed_output_size(4, 3, dilation=2, output_padding=1) == 9


def test_helpers_bad_input():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        convlib.insert_zeros(torch.ones(3), 2)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        convlib.insert_zeros(torch.ones(3, 3), 0)
    with pytest.raises(ValueError, match="groups=2 does not divide the weight's 3 in-channels"):
        convlib.flip_swap_kernel(torch.ones(3, 1, 2, 2), 2)
