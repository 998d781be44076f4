"""convlib's core against PyTorch: conv_output_size, conv2d_naive, im2col, col2im, conv2d_im2col."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import as_pair, check_conv, conv_configs, tol, torch_conv2d
from hypothesis import given

import convlib

CONV_METHODS = [convlib.conv2d_naive, convlib.conv2d_im2col, convlib.conv2d_loops]


# ---------------------------------------------------------------- equal to PyTorch, property-based


@pytest.mark.parametrize("conv", CONV_METHODS, ids=lambda f: f.__name__)
@given(cfg=conv_configs(allow_same=True))
def test_conv_equals_F_conv2d(conv, cfg):
    check_conv(conv, cfg)


@pytest.mark.parametrize("conv", CONV_METHODS, ids=lambda f: f.__name__)
@given(cfg=conv_configs(max_groups=2))
def test_conv_unbatched_input(conv, cfg):
    check_conv(conv, cfg, unbatched=True)


@given(cfg=conv_configs())
def test_conv_output_size_matches_pytorch_shape(cfg):
    x, weight, bias, kw = cfg
    Ho, Wo = torch_conv2d(x, weight, bias, **kw).shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = as_pair(kw["stride"]), as_pair(kw["padding"]), as_pair(kw["dilation"])
    assert convlib.conv_output_size(x.shape[2], weight.shape[2], sh, ph, dh) == Ho
    assert convlib.conv_output_size(x.shape[3], weight.shape[3], sw, pw, dw) == Wo
    shape = convlib.conv2d_output_shape(x.shape[2:], weight.shape[2:], kw["stride"], kw["padding"], kw["dilation"])
    assert shape == (Ho, Wo)


@given(cfg=conv_configs())
def test_im2col_equals_unfold(cfg):
    x, weight, _, kw = cfg
    args = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"])
    k = tuple(weight.shape[2:])
    expected = F.unfold(x, k, **args)
    got = convlib.im2col(x, k, **args)
    assert got.shape == expected.shape
    assert torch.equal(got, expected)  # pure data movement: bit-identical
    assert torch.equal(convlib.im2col(x[0], k, **args), F.unfold(x[0], k, **args))


@given(cfg=conv_configs())
def test_col2im_equals_fold(cfg):
    x, weight, _, kw = cfg
    args = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"])
    k = tuple(weight.shape[2:])
    H, W = x.shape[2:]
    L = F.unfold(x, k, **args).shape[-1]
    cols = torch.randn(x.shape[0], x.shape[1] * k[0] * k[1], L, dtype=x.dtype)
    expected = F.fold(cols, (H, W), k, **args)
    got = convlib.col2im(cols, (H, W), k, **args)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **tol(x.dtype))


@given(cfg=conv_configs())
def test_col2im_is_adjoint_of_im2col(cfg):
    """<im2col(x), c> == <x, col2im(c)>: what makes col2im the transpose."""
    x, weight, _, kw = cfg
    x = x.double()
    args = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"])
    k = tuple(weight.shape[2:])
    cols = convlib.im2col(x, k, **args)
    c = torch.randn_like(cols)
    lhs = (cols * c).sum()
    rhs = (x * convlib.col2im(c, x.shape[2:], k, **args)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(cfg=conv_configs())
def test_patch_view_shares_memory(cfg):
    x, weight, _, kw = cfg
    (sh, sw), (ph, pw), (dh, dw) = as_pair(kw["stride"]), as_pair(kw["padding"]), as_pair(kw["dilation"])
    x = F.pad(x, (pw, pw, ph, ph))  # patch_view reads an already padded input
    view = convlib.patch_view(x, tuple(weight.shape[2:]), kw["stride"], kw["dilation"])
    assert view.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    n, c, u, v = x.shape[0] - 1, x.shape[1] - 1, weight.shape[2] - 1, weight.shape[3] - 1
    i, j = view.shape[4] - 1, view.shape[5] - 1
    assert view[n, c, u, v, i, j] == x[n, c, i * sh + u * dh, j * sw + v * dw]


# ---------------------------------------------------------------- worked examples (fixed numbers)


def test_conv_output_size_examples():
    assert convlib.conv_output_size(5, 3, stride=2, padding=1) == 3  # CS231n demo
    assert convlib.conv_output_size(32, 5) == 28  # a CIFAR-10 layer
    assert convlib.conv_output_size(6, 3, stride=2) == 2  # floor((6 - 3) / 2) + 1
    assert convlib.conv_output_size(7, 3, dilation=2) == 3  # dilated kernel spans 5
    assert convlib.conv_output_size(9, 4, padding="same") == 9
    assert convlib.conv_output_size(9, 4, padding="valid") == 6


def test_col2im_of_im2col_counts_overlaps():
    x = torch.ones(1, 1, 4, 4)
    counts = convlib.col2im(convlib.im2col(x, 3), (4, 4), 3)
    expected = torch.tensor([[1.0, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    assert torch.equal(counts[0, 0], expected)


def test_im2col_small_example():
    x = torch.arange(1.0, 17).reshape(1, 1, 4, 4)
    cols = convlib.im2col(x, 2)
    assert cols[0, 0].tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    y = convlib.conv2d_im2col(x, torch.arange(1.0, 5).reshape(1, 1, 2, 2))
    assert y.flatten().tolist() == [44, 54, 64, 84, 94, 104, 124, 134, 144]


def test_corr2d_seed_example():
    X = torch.arange(30).reshape(5, 6)
    K = torch.arange(8).reshape(2, 4)
    Y = convlib.corr2d(X, K)
    assert Y.tolist() == [[184, 212, 240], [352, 380, 408], [520, 548, 576], [688, 716, 744]]
    torch.testing.assert_close(Y.double(), F.conv2d(X[None, None].double(), K[None, None].double())[0, 0])


@given(cfg=conv_configs(max_groups=1))
def test_corr2d_equals_F_conv2d_one_channel(cfg):
    x, weight, _, _ = cfg
    X, K = x[0, 0], weight[0, 0]
    if K.shape[0] > X.shape[0] or K.shape[1] > X.shape[1]:
        return
    torch.testing.assert_close(convlib.corr2d(X, K), torch_conv2d(X[None, None], K[None, None])[0, 0], **tol(x.dtype))


def test_corr2d_bad_input():
    with pytest.raises(ValueError, match="must be 2-D"):
        convlib.corr2d(torch.ones(1, 3, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        convlib.corr2d(torch.ones(3, 3), torch.ones(4, 2))
    with pytest.raises(TypeError, match="K must be a torch.Tensor"):
        convlib.corr2d(torch.ones(3, 3), [[1.0]])


def test_same_padding_asymmetric_even_kernel():
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    w = torch.randn(4, 3, 4, 2, dtype=torch.float64)
    for conv in CONV_METHODS:
        y = conv(x, w, padding="same", dilation=(1, 3))
        torch.testing.assert_close(y, F.conv2d(x, w, padding="same", dilation=(1, 3)))
        assert y.shape[2:] == x.shape[2:]


# ---------------------------------------------------------------- bad input: clear errors

X = torch.randn(1, 4, 6, 6)
WT = torch.randn(2, 4, 3, 3)

BAD_CONV_CALLS = [
    # (args, kwargs, exception, words that must appear in the message)
    ((torch.randn(6, 6), WT), {}, ValueError, "input must be 4-D"),
    ((torch.randn(1, 1, 4, 6, 6), WT), {}, ValueError, "input must be 4-D"),
    ((X, torch.randn(2, 4, 3)), {}, ValueError, "weight must be 4-D"),
    ((X, torch.randn(2, 3, 3, 3)), {}, ValueError, "input has 4 channels"),
    ((X, torch.randn(2, 4, 3, 3)), {"groups": 2}, ValueError, "input has 4 channels"),
    ((X, torch.randn(3, 2, 3, 3)), {"groups": 2}, ValueError, "does not divide the weight's 3 out-channels"),
    ((torch.randn(1, 3, 6, 6), torch.randn(2, 1, 3, 3)), {"groups": 2}, ValueError, "does not divide the input's 3"),
    ((X, WT), {"groups": 0}, ValueError, "groups must be at least 1"),
    ((X, WT), {"groups": 1.5}, TypeError, "groups must be an int"),
    ((X, torch.randn(2, 4, 7, 3)), {}, ValueError, "kernel larger than the padded input"),
    ((X, WT), {"dilation": 3}, ValueError, "kernel larger than the padded input"),
    ((X, WT), {"stride": 0}, ValueError, "stride must be at least 1"),
    ((X, WT), {"stride": (1, -1)}, ValueError, "stride"),
    ((X, WT), {"dilation": 0}, ValueError, "dilation must be at least 1"),
    ((X, WT), {"padding": -1}, ValueError, "padding must not be negative"),
    ((X, WT), {"padding": (1, 2, 3)}, TypeError, "padding must be an int or a pair"),
    ((X, WT), {"stride": 1.0}, TypeError, "stride must be an int or a pair"),
    ((X, WT), {"stride": True}, TypeError, "stride must be an int or a pair"),
    ((X, WT), {"padding": "full"}, ValueError, "padding must be an int, a pair, 'valid' or 'same'"),
    ((X, WT), {"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
    ((X, WT, torch.randn(3)), {}, ValueError, "bias must be 1-D with 2 entries"),
    ((X, WT, torch.randn(2, 1)), {}, ValueError, "bias must be 1-D with 2 entries"),
    ((X, WT, [0.0, 1.0]), {}, TypeError, "bias must be a torch.Tensor"),
    ((X, WT, torch.randn(2, dtype=torch.float64)), {}, TypeError, "bias must have the weight's dtype"),
    ((X.numpy(), WT), {}, TypeError, "input must be a torch.Tensor"),
    ((X, WT.tolist()), {}, TypeError, "weight must be a torch.Tensor"),
    ((X.double(), WT), {}, TypeError, "same dtype"),
    ((X.long(), WT.long()), {}, TypeError, "floating-point dtype"),
    ((torch.randn(2, 4, 0, 6), WT), {}, ValueError, "empty channel, height or width"),
]


@pytest.mark.parametrize("conv", CONV_METHODS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args,kwargs,exc,words", BAD_CONV_CALLS)
def test_conv_bad_input_raises_clear_error(conv, args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        conv(*args, **kwargs)


BAD_IM2COL_CALLS = [
    ((torch.randn(6, 6), 3), {}, ValueError, "input must be 4-D"),
    ((X, 7), {}, ValueError, "kernel larger than the padded input"),
    ((X, 3), {"dilation": 3}, ValueError, "kernel larger than the padded input"),
    ((X, 0), {}, ValueError, "kernel_size must be at least 1"),
    ((X, 3), {"stride": 0}, ValueError, "stride must be at least 1"),
    ((X, 3), {"padding": -2}, ValueError, "padding must not be negative"),
    ((X, (3, 3, 3)), {}, TypeError, "kernel_size must be an int or a pair"),
    ((X.numpy(), 3), {}, TypeError, "input must be a torch.Tensor"),
]


@pytest.mark.parametrize("args,kwargs,exc,words", BAD_IM2COL_CALLS)
def test_im2col_bad_input(args, kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        convlib.im2col(*args, **kwargs)


def test_col2im_bad_input():
    cols = torch.randn(1, 18, 16)
    with pytest.raises(ValueError, match="has 16 columns but an output of 5x5"):
        convlib.col2im(cols, (5, 5), 3)
    with pytest.raises(ValueError, match="not a multiple of kh\\*kw = 4"):
        convlib.col2im(cols, (6, 6), 2)
    with pytest.raises(ValueError, match="cols must be 3-D"):
        convlib.col2im(torch.randn(18), (6, 6), 3)
    with pytest.raises(ValueError, match="kernel larger than the padded output"):
        convlib.col2im(cols, (2, 2), 3)
    with pytest.raises(TypeError, match="cols must be a torch.Tensor"):
        convlib.col2im(cols.numpy(), (6, 6), 3)
    assert convlib.col2im(cols, (6, 6), 3).shape == (1, 2, 6, 6)


def test_patch_view_needs_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        convlib.patch_view(X.transpose(2, 3), 3)


@pytest.mark.parametrize(
    "args,exc,words",
    [
        ((0, 3), ValueError, "size must be at least 1"),
        ((5, 0), ValueError, "kernel_size must be at least 1"),
        ((5, 3, 0), ValueError, "stride must be at least 1"),
        ((5, 3, 1, -1), ValueError, "padding must not be negative"),
        ((5, 3, 1, 0, 0), ValueError, "dilation must be at least 1"),
        ((5, 7), ValueError, "kernel larger than the padded input"),
        ((5.0, 3), TypeError, "size must be an int"),
        ((5, 3, 2, "same"), ValueError, "padding='same' needs stride 1"),
        ((5, 3, 1, "full"), ValueError, "padding must be an int"),
    ],
)
def test_conv_output_size_bad_input(args, exc, words):
    with pytest.raises(exc, match=words):
        convlib.conv_output_size(*args)
