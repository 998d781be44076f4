"""Properties on what ordinary draws never contain: NaN and inf, empty batches, views that are not contiguous and
channels-last storage, for every convolution method and every transposed-convolution method.

PyTorch's answers come from contiguous copies (conftest.on_contiguous). ``make test-deep`` runs these, like
every property, with thousands of examples each (HYPOTHESIS_PROFILE=deep).
"""

from __future__ import annotations

import pytest
import torch
from conftest import check_conv, conv_configs, tol, torch_conv2d, torch_conv_transpose2d
from hypothesis import given
from hypothesis import strategies as st
from test_odd_input import CONV2D_METHODS as CONV2D
from test_odd_input import transposed_method
from test_transposed import transposed_configs

from convlib.transposed import TRANSPOSED_METHODS

# (method, PyTorch's answer, the strategy that draws its configurations)
EVERY_METHOD = [(f, torch_conv2d, conv_configs(allow_same=True)) for f in CONV2D] + [
    (transposed_method(m), torch_conv_transpose2d, transposed_configs()) for m in TRANSPOSED_METHODS
]
IDS = [f.__name__ for f, _, _ in EVERY_METHOD]
CL = torch.channels_last


# ---------------------------------------------------------------- strategies


@st.composite
def non_finite(draw, t):
    """``t`` with some entries (a few, many or all) replaced by NaN, +inf or -inf."""
    if t is None:
        return None
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    share = draw(st.sampled_from([0.05, 0.3, 1.0]))
    where = torch.rand(t.shape, generator=gen) < share
    specials = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=t.dtype)
    t = t.clone()
    t[where] = specials[torch.randint(0, 3, (int(where.sum()),), generator=gen)]
    return t


STORAGE = ["contiguous", "channels_last", "hw_swapped", "sliced", "channels_last_sliced"]
CHANNELS_LAST_STORAGE = {"channels_last", "channels_last_sliced"}


def stored(t: torch.Tensor, storage: str, axis: int = 0) -> torch.Tensor:
    """``t``'s values in another memory layout: channels-last, H and W swapped in memory, or every other entry
    along ``axis`` of a larger tensor (plain or channels-last) whose other entries are NaN, so that a method
    reading outside the view cannot go unnoticed."""
    if storage == "contiguous":
        return t
    if storage == "channels_last":
        return t.contiguous(memory_format=CL)
    if storage == "hw_swapped":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    shape = list(t.shape)
    shape[axis] *= 2
    big = torch.full(shape, float("nan"), dtype=t.dtype)
    if storage == "channels_last_sliced":
        big = big.contiguous(memory_format=CL)
    view = big[(slice(None),) * axis + (slice(None, None, 2),)]
    view.copy_(t)
    return view


@st.composite
def stored_operands(draw, cfg):
    """The configuration with its input, weight and bias each in a drawn storage; returns the storages too."""
    x, weight, bias, kw = cfg
    x_storage, w_storage = draw(st.sampled_from(STORAGE)), draw(st.sampled_from(STORAGE))
    x = stored(x, x_storage, draw(st.integers(0, 3)))
    weight = stored(weight, w_storage, draw(st.integers(0, 3)))
    if bias is not None and draw(st.booleans()):
        bias = torch.stack([bias, bias], 1)[:, 0]  # a strided view
    return (x, weight, bias, kw), (x_storage, w_storage)


def _check_non_finite(got, expected):
    """NaN, +inf and -inf at the same places; the finite entries equal to round-off."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.isposinf(), expected.isposinf())
    assert torch.equal(got.isneginf(), expected.isneginf())
    torch.testing.assert_close(got, expected, equal_nan=True, **tol(got.dtype))


# ---------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("conv,reference,configs", EVERY_METHOD, ids=IDS)
@given(data=st.data())
def test_nan_and_inf_in_input_and_bias(conv, reference, configs, data):
    """NaN and inf in the input and the bias land where PyTorch puts them, for every method.

    (A NaN or inf in the *weight* is another matter: 0 * inf is NaN, and PyTorch's own backends disagree on whether
    the zero padding meets the weight, float32 (oneDNN) against float64 (im2col). Without padding, below.)
    """
    x, weight, bias, kw = data.draw(configs)
    x, bias = data.draw(non_finite(x)), data.draw(non_finite(bias))
    _check_non_finite(conv(x, weight, bias, **kw), reference(x, weight, bias, **kw))


@pytest.mark.parametrize("conv", CONV2D, ids=lambda f: f.__name__)
@given(cfg=conv_configs(max_padding=0), data=st.data())
def test_nan_and_inf_anywhere_without_padding(conv, cfg, data):
    """Without zero padding no zero meets the weight, and NaN/inf anywhere (weight included) match PyTorch."""
    x, weight, bias, kw = cfg
    x, weight, bias = (data.draw(non_finite(t)) if data.draw(st.booleans()) else t for t in (x, weight, bias))
    _check_non_finite(conv(x, weight, bias, **kw), torch_conv2d(x, weight, bias, **kw))


# ---------------------------------------------------------------- empty batches


@pytest.mark.parametrize("conv,reference,configs", EVERY_METHOD, ids=IDS)
@given(data=st.data())
def test_empty_batch(conv, reference, configs, data):
    """N = 0 gives PyTorch's empty result: its shape and dtype, stored contiguously, whatever the weight's storage."""
    x, weight, bias, kw = data.draw(configs)
    x = x[:0]
    weight = stored(weight, data.draw(st.sampled_from(STORAGE)), data.draw(st.integers(0, 3)))
    expected = reference(x, weight, bias, **kw)
    got = conv(x, weight, bias, **kw)
    assert got.shape == expected.shape and got.dtype == expected.dtype and got.is_contiguous()


# ---------------------------------------------------------------- views and channels-last storage


@pytest.mark.parametrize("conv,reference,configs", EVERY_METHOD, ids=IDS)
@given(data=st.data())
def test_any_storage(conv, reference, configs, data):
    """Transposed, sliced and channels-last operands give PyTorch's values, stored as PyTorch stores them.

    The result is channels-last when an operand is stored channels-last (PyTorch's rule; its corner cases, where
    a size of 1 makes the storage ambiguous, are compared with PyTorch itself in test_odd_input.py), else it is
    contiguous.
    """
    cfg, storages = data.draw(stored_operands(data.draw(configs)))
    check_conv(conv, cfg, reference=reference)
    x, weight, bias, kw = cfg
    got = conv(x, weight, bias, **kw)
    if min(x.shape) > 1 and min(weight.shape) > 1:  # no size of 1: the storage says one thing only
        wanted = CL if CHANNELS_LAST_STORAGE & set(storages) else torch.contiguous_format
        assert got.is_contiguous(memory_format=wanted)
