"""convlib.nhwc (numpy, channels-last) against F.conv2d with explicit layout permutes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import int_or_pair
from hypothesis import given
from hypothesis import strategies as st

import convlib
from convlib import nhwc

METHODS = [nhwc.conv_reference, nhwc.conv_matmul, nhwc.conv_im2col]


@st.composite
def nhwc_configs(draw):
    """Random valid NHWC input, kh x kw x C x O weight, stride and padding (int or pair)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(int_or_pair(st.integers(1, 3)))
    padding = draw(int_or_pair(st.integers(0, 2)))
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    H = max(1, kh - 2 * ph) + draw(st.integers(0, 6))
    W = max(1, kw - 2 * pw) + draw(st.integers(0, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Z = rng.standard_normal((N, H, W, C)).astype(dtype)
    weight = rng.standard_normal((kh, kw, C, O)).astype(dtype)
    return Z, weight, stride, padding


def _expected(Z, weight, stride, padding):
    """PyTorch's answer: NHWC -> NCHW, (kh, kw, C, O) -> (O, C, kh, kw), conv2d, back to NHWC."""
    # standard NCHW strides (see the note in nhwc.conv_reference: permuted views with C == 1 trip oneDNN)
    x = torch.tensor(Z).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
    w = torch.tensor(weight).permute(3, 2, 0, 1).clone(memory_format=torch.contiguous_format)
    assert x.stride()[1] == x.shape[2] * x.shape[3]
    return F.conv2d(x, w, stride=stride, padding=padding).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("conv", METHODS, ids=lambda f: f.__name__)
@given(cfg=nhwc_configs())
def test_nhwc_equals_F_conv2d(conv, cfg):
    Z, weight, stride, padding = cfg
    expected = _expected(Z, weight, stride, padding)
    got = conv(Z, weight, stride=stride, padding=padding)
    assert got.shape == expected.shape
    assert got.dtype == Z.dtype
    tol = 1e-4 if Z.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@given(cfg=nhwc_configs())
def test_nhwc_matches_nchw_convlib(cfg):
    """The same numbers as the NCHW torch implementations once the layouts are permuted."""
    Z, weight, stride, padding = cfg
    x = torch.tensor(Z, dtype=torch.float64).permute(0, 3, 1, 2)
    w = torch.tensor(weight, dtype=torch.float64).permute(3, 2, 0, 1)
    y = convlib.conv2d_shifted(x, w, stride=stride, padding=padding).permute(0, 2, 3, 1).numpy()
    got = nhwc.conv_im2col(Z.astype(np.float64), weight.astype(np.float64), stride=stride, padding=padding)
    np.testing.assert_allclose(got, y, rtol=1e-10, atol=1e-10)


def test_seed_shapes():
    """The numpy seed's shapes: Z 10 x 32 x 32 x 8, W 3 x 3 x 8 x 16 -> 10 x 30 x 30 x 16."""
    rng = np.random.default_rng(0)
    Z, W = rng.standard_normal((10, 32, 32, 8)), rng.standard_normal((3, 3, 8, 16))
    ref = _expected(Z, W, 1, 0)
    assert ref.shape == (10, 30, 30, 16)
    for conv in METHODS:
        assert np.linalg.norm(conv(Z, W) - ref) < 1e-9


def test_reference_one_channel_permuted_case():
    """The shape on which F.conv2d on a permuted single-channel view went wrong (torch 2.14.1, oneDNN)."""
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((1, 5, 5, 1)).astype(np.float32)
    W = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    x = torch.tensor(Z.astype(np.float64)).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
    w = torch.tensor(W.astype(np.float64)).permute(3, 2, 0, 1).clone(memory_format=torch.contiguous_format)
    naive = convlib.conv2d_naive(x, w, stride=(1, 2)).permute(0, 2, 3, 1).numpy()
    for conv in METHODS:
        np.testing.assert_allclose(conv(Z, W, stride=(1, 2)), naive, rtol=1e-5, atol=1e-5)


Z0 = np.zeros((1, 6, 6, 4))
W0 = np.zeros((3, 3, 4, 2))

BAD = [
    ((Z0[0], W0), {}, ValueError, "Z must be 4-D"),
    ((Z0, W0[0]), {}, ValueError, "weight must be 4-D"),
    ((Z0, np.zeros((3, 3, 5, 2))), {}, ValueError, "Z has 4 channels"),
    ((Z0, np.zeros((7, 3, 4, 2))), {}, ValueError, "kernel larger than the padded input"),
    ((Z0, W0), {"stride": 0}, ValueError, "stride must be at least 1"),
    ((Z0, W0), {"padding": -1}, ValueError, "padding must not be negative"),
    ((Z0, W0), {"padding": "same"}, TypeError, "padding must be an int or a pair"),
    ((torch.zeros(1, 6, 6, 4), W0), {}, TypeError, "Z must be a numpy array"),
    ((Z0.astype(np.int64), W0), {}, TypeError, "Z must have a floating-point dtype"),
    ((Z0.astype(np.float32), W0), {}, TypeError, "same dtype"),
    ((np.zeros((1, 0, 6, 4)), W0), {}, ValueError, "Z must not have an empty height, width or channel"),
    ((Z0, np.zeros((3, 3, 4, 0))), {}, ValueError, "nor weight an empty dimension"),
]


@pytest.mark.parametrize("conv", METHODS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args,kwargs,exc,words", BAD)
def test_nhwc_bad_input(conv, args, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        conv(*args, **kwargs)
