"""Shared hypothesis strategies: random but always-valid convolution configurations."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Hundreds of examples per property in CI; a quick profile for local iteration (HYPOTHESIS_PROFILE=dev).
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(1)  # the tests are many small problems; threads only add overhead


def tol(dtype):
    """Tolerances for comparing two summation orders of the same products."""
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}


def check_conv(conv, cfg, *, reference=F.conv2d, unbatched=False, contiguous=False, **extra):
    """Assert ``conv(x, weight, bias, **kw, **extra)`` equals ``reference`` on the drawn configuration.

    ``unbatched``: call both on the first image alone (C x H x W); ``contiguous``: the result must be contiguous.
    """
    x, weight, bias, kw = cfg
    if unbatched:
        x = x[0]
    expected = reference(x, weight, bias, **kw)
    got = conv(x, weight, bias, **kw, **extra)
    assert got.dim() == x.dim()
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    if contiguous:
        assert got.is_contiguous()
    torch.testing.assert_close(got, expected, **tol(x.dtype))


def int_or_pair(values):
    return st.one_of(values, st.tuples(values, values))


def as_pair(v):
    return v if isinstance(v, tuple) else (v, v)


@st.composite
def conv_configs(draw, max_groups=3, allow_same=False):
    """A random valid ``F.conv2d`` configuration: tensors plus keyword arguments.

    Batch, channels, groups, non-square inputs and kernels, stride, padding, dilation (each an int or a
    pair), with or without bias, float32 or float64; optionally padding='same'/'valid'.
    """
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = draw(st.integers(1, max_groups))
    N = draw(st.integers(1, 3))
    C = g * draw(st.integers(1, 3))
    O = g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(int_or_pair(st.integers(1, 3)))
    dilation = draw(int_or_pair(st.integers(1, 3)))
    padding = draw(int_or_pair(st.integers(0, 2)))
    if allow_same and draw(st.booleans()):
        padding = draw(st.sampled_from(["same", "valid"]))
        if padding == "same":
            stride = 1
    (dh, dw) = as_pair(dilation)
    ph, pw = (0, 0) if isinstance(padding, str) else as_pair(padding)
    # smallest input the dilated kernel fits in, plus a random margin
    H = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 6))
    W = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
    weight = torch.randn(O, C // g, kh, kw, generator=gen, dtype=dtype)
    bias = torch.randn(O, generator=gen, dtype=dtype) if draw(st.booleans()) else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=g)
    return x, weight, bias, kwargs
