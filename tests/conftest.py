"""Shared hypothesis strategies: random but always-valid convolution configurations."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

DEEP_EXAMPLES = 3000  # examples per property in the deep profile

# Hundreds of examples per property in CI; a quick profile for local iteration (HYPOTHESIS_PROFILE=dev); thousands
# for a deep run (HYPOTHESIS_PROFILE=deep, `make test-deep`: not in CI, it takes hours), fresh examples every time.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile(
    "deep",
    max_examples=DEEP_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(1)  # the tests are many small problems; threads only add overhead


def tol(dtype):
    """Tolerances for comparing two summation orders of the same products."""
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}


def on_contiguous(reference, x, weight, bias=None, *args, **kwargs):
    """``reference(x, weight, bias, ...)`` (PyTorch's convolution) called on contiguous copies of the tensors.

    PyTorch 2.14.1's own F.conv2d kills the process with a segmentation fault on some channels-last weights, e.g.
    ``F.conv2d(torch.randn(3, 3, 7, 1), torch.randn(3, 3, 3, 1).to(memory_format=torch.channels_last),
    torch.randn(3), (1, 3), (2, 2), (1, 3))``, and a randomly drawn configuration must never take the test run
    down. The values do not depend on the memory layout, so every comparison with PyTorch on drawn tensors goes
    through here; memory formats are compared with PyTorch's on fixed cases (test_odd_input.py).
    """
    contiguous = [None if t is None else t.contiguous() for t in (x, weight, bias)]
    return reference(*contiguous, *args, **kwargs)


def torch_conv2d(x, weight, bias=None, *args, **kwargs):
    """``F.conv2d`` on contiguous copies (see :func:`on_contiguous`)."""
    return on_contiguous(F.conv2d, x, weight, bias, *args, **kwargs)


def torch_conv_transpose2d(x, weight, bias=None, *args, **kwargs):
    """``F.conv_transpose2d`` on contiguous copies (see :func:`on_contiguous`)."""
    return on_contiguous(F.conv_transpose2d, x, weight, bias, *args, **kwargs)


def check_conv(conv, cfg, *, reference=F.conv2d, unbatched=False, contiguous=False, **extra):
    """Assert ``conv(x, weight, bias, **kw, **extra)`` equals ``reference`` on the drawn configuration.

    ``unbatched``: call both on the first image alone (C x H x W); ``contiguous``: the result must be contiguous.
    The reference sees contiguous copies (:func:`on_contiguous`); ``conv`` the tensors as drawn.
    """
    x, weight, bias, kw = cfg
    if unbatched:
        x = x[0]
    expected = on_contiguous(reference, x, weight, bias, **kw)
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
def conv_configs(draw, max_groups=3, allow_same=False, max_padding=2):
    """A random valid ``F.conv2d`` configuration: tensors plus keyword arguments.

    Batch, channels, groups, non-square inputs and kernels, stride, padding (at most ``max_padding``), dilation
    (each an int or a pair), with or without bias, float32 or float64; optionally padding='same'/'valid'.
    """
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = draw(st.integers(1, max_groups))
    N = draw(st.integers(1, 3))
    C = g * draw(st.integers(1, 3))
    O = g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(int_or_pair(st.integers(1, 3)))
    dilation = draw(int_or_pair(st.integers(1, 3)))
    padding = draw(int_or_pair(st.integers(0, max_padding)))
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
