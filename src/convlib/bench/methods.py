"""The methods the benchmark times, in one registry: how to call each, where it applies, what it keeps.

A method is timed as a zero-argument callable made once per layer from the layer's tensors (``make``), so that
work a method may legitimately keep between calls (a transformed kernel) is done outside the timed call, and
work it must redo is inside. Two builders cover the cases:

- :func:`per_call` ``(fn)``: ``fn(x, weight, bias, **kw)`` on every call (kernel transformed every call);
- :func:`cached` ``(prepare, apply)``: ``state = prepare(weight, **kw)`` once, ``apply(x, state, bias, **kw)``
  per call (kernel transformed once and kept).

Methods of modules that may be absent (``convlib.fft``, ``convlib.winograd``) are listed with their module and
function names and join the registry only where the module provides them: a variant is one line of
``_OPTIONAL``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F

from . import _fastpath
from .suite import Layer, naive_steps, toeplitz_nnz

__all__ = [
    "Method",
    "METHODS",
    "REFERENCE",
    "per_call",
    "cached",
    "skip_reason",
    "method_bytes",
    "NAIVE_MAX_STEPS",
    "TOEPLITZ_MAX_NNZ",
]

# methods too slow or too large for some shapes
NAIVE_MAX_STEPS = 20_000  # Python steps of conv2d_naive: g * Ho * Wo * kh * kw
TOEPLITZ_MAX_NNZ = 16_000_000  # non-zeros of the convolution matrix (16M: about 128 MB as CSR)

#: the method every other is compared with
REFERENCE = "F.conv2d"


@dataclass(frozen=True)
class Method:
    """One timed method: ``make(x, weight, bias, kw)`` returns the zero-argument call that is timed."""

    name: str
    short: str  # a column heading
    color: str
    make: Callable
    skip: Callable[[Layer], str | None] = lambda layer: None  # why not on this layer (None: it runs)
    nbytes: Callable[[Layer, int], int | None] = lambda layer, itemsize: None  # intermediates it materialises


def per_call(fn: Callable) -> Callable:
    """``make`` for a method that does all its work on every call: ``fn(x, weight, bias, **kw)``."""
    return lambda x, w, b, kw: lambda: fn(x, w, b, **kw)


def cached(prepare: Callable, apply: Callable) -> Callable:
    """``make`` for a method that transforms the kernel once (untimed) and reuses it on every call."""

    def make(x, w, b, kw):
        state = prepare(w, **kw)
        return lambda: apply(x, state, b, **kw)

    return make


def _naive_skip(layer: Layer) -> str | None:
    steps = naive_steps(layer)
    return f"{steps:,} Python steps" if steps > NAIVE_MAX_STEPS else None


def _toeplitz_skip(layer: Layer) -> str | None:
    nnz = toeplitz_nnz(layer)
    return f"M would have {nnz / 1e6:.0f}M non-zeros" if nnz > TOEPLITZ_MAX_NNZ else None


def _winograd_skip(layer: Layer) -> str | None:
    return None if layer.k == 3 and layer.stride == 1 else "Winograd F(m, 3x3) needs a 3x3 kernel and stride 1"


def _padded(layer: Layer) -> int:
    return layer.N * layer.C * (layer.H + 2 * layer.padding) ** 2


def _im2col_bytes(layer: Layer, itemsize: int) -> int:
    cols = layer.N * layer.C * layer.k**2 * layer.out_hw**2
    return itemsize * (_padded(layer) + cols)


def _shifted_bytes(layer: Layer, itemsize: int) -> int:
    L = layer.out_hw**2
    return itemsize * (_padded(layer) + layer.N * L * layer.O + layer.N * L * (layer.C // layer.groups))


def _toeplitz_bytes(layer: Layer, itemsize: int) -> int:
    return toeplitz_nnz(layer) * (itemsize + 4) + 4 * (layer.O * layer.out_hw**2 + 1)  # values, columns, rows


def _fast_bytes(layer: Layer, itemsize: int) -> int:
    return _fastpath.workspace_nbytes(_fastpath.plan_for(layer, itemsize=itemsize))


def _builtin() -> list[Method]:
    import convlib

    def naive_bytes(layer, itemsize):
        return itemsize * _padded(layer)

    return [
        Method(
            name="naive loops",
            short="naive",
            color="#8D69B8",
            make=per_call(convlib.conv2d_naive),
            skip=_naive_skip,
            nbytes=naive_bytes,
        ),
        Method(
            name="im2col (NCHW)",
            short="im2col",
            color="#3B75AF",
            make=per_call(convlib.conv2d_im2col),
            nbytes=_im2col_bytes,
        ),
        Method(
            name="shifted",
            short="shifted",
            color="#EF8636",
            make=per_call(convlib.conv2d_shifted),
            nbytes=_shifted_bytes,
        ),
        Method(
            name="Toeplitz (sparse)",
            short="Toeplitz",
            color="#C53A32",
            make=per_call(convlib.conv2d_toeplitz),
            skip=_toeplitz_skip,
            nbytes=_toeplitz_bytes,
        ),
        Method(
            name="convlib.conv2d", short="conv2d", color="#519E3E", make=per_call(convlib.conv2d), nbytes=_fast_bytes
        ),
        Method(name=REFERENCE, short="F.conv2d", color="#333333", make=per_call(F.conv2d)),
    ]


#: Methods of modules that may be absent: (name, short, colour, module, make from the module, skip). One line per
#: variant; e.g. a cached variant: ``lambda m: cached(m.kernel_spectra, m.conv2d_fft_spectra)``.
_OPTIONAL = (
    ("FFT", "FFT", "#17BECF", "convlib.fft", lambda m: per_call(m.conv2d_fft), None),
    ("Winograd", "Winograd", "#BCBD22", "convlib.winograd", lambda m: per_call(m.conv2d_winograd), _winograd_skip),
)


def _optional() -> list[Method]:
    """The methods of ``_OPTIONAL`` whose module exists here and provides what their line names."""
    found = []
    for name, short, color, module, make, skip in _OPTIONAL:
        try:
            made = make(importlib.import_module(module))
        except (ImportError, AttributeError):
            continue
        found.append(Method(name=name, short=short, color=color, make=made, skip=skip or (lambda layer: None)))
    return found


def _registry() -> dict[str, Method]:
    methods = _builtin()
    methods[-1:-1] = _optional()  # before the reference, which stays last
    return {m.name: m for m in methods}


#: name -> Method, slowest formulation first and the reference (``F.conv2d``) last
METHODS = _registry()


def skip_reason(method: str, layer: Layer) -> str | None:
    """Why a method is not timed on a layer (None: it is)."""
    return METHODS[method].skip(layer)


def method_bytes(method: str, layer: Layer, itemsize: int = 4) -> int | None:
    """Bytes of the intermediates a method materialises for a layer (the output itself not counted).

    naive: the padded input. im2col: the padded input and the patch matrix (N x C*kh*kw x Ho*Wo). shifted: its
    padded input, its accumulator and one shifted copy. Toeplitz: the sparse CSR matrix M (values + int32 column
    indices + row pointers). convlib.conv2d: what its workspace keeps (canvas, block buffers, patch block,
    re-ordered weights). F.conv2d and methods without a formula: None (not visible from Python).
    """
    return METHODS[method].nbytes(layer, itemsize)
