"""What the transform methods (FFT, Winograd) share: kept kernel transforms, the direct path, the result.

**Kernel transforms kept between calls** (:class:`KernelCache`): the FFT's kernel spectra, Winograd's ``G g G^T``.

A fast convolution transforms its kernel before it multiplies. In a network the weights change only when the
optimizer steps, so the transform can be done once and reused by every call until then. A
:class:`KernelCache` holds such transforms. It knows a weight by its identity (the same tensor object, held by
a weak reference, so the cache keeps no weight alive) and by its version counter ``weight._version``, which
every in-place change (``optimizer.step()``, ``weight.mul_(2)``, ``weight[0] = 1``) increments: a changed
weight is transformed afresh.

Two cases are never cached, because a stale or shared entry would be wrong: a weight that autograd would record
(grad mode on and ``weight.requires_grad``: the transform must be part of this call's graph), and an inference
tensor (made under ``torch.inference_mode()``: it has no version counter). A change made through ``weight.data``
bypasses the version counter, as it bypasses autograd: call :meth:`KernelCache.clear` after one.

**NaN and infinity.** A transform mixes many inputs into each transformed value, so a NaN or an infinity
reaches outputs that PyTorch's direct sum keeps finite: the FFT spreads it over every output of the image (and,
through ``inf - inf``, turns infinities into NaN), Winograd over every output of the tiles that read it. To return
what ``F.conv2d`` returns, NaN and inf included, the fast methods first check that their input and weight
are finite (one reduction, :func:`all_finite`) and otherwise compute the direct way (:func:`direct_conv2d`);
``finite_check=False`` skips the check and shows the spreading.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch

__all__ = ["KernelCache", "check_cache", "all_finite", "direct_conv2d", "finish", "compute_dtype"]


class KernelCache:
    """Transformed kernels, reused while the weight is the same tensor with the same ``_version``.

    ``maxsize`` entries at most (least recently used dropped first). ``hits`` and ``misses`` count the
    lookups that found a valid entry and those that had to transform (uncacheable calls count as neither).
    """

    def __init__(self, maxsize: int = 16):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, got {maxsize!r}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict = OrderedDict()

    @staticmethod
    def cacheable(weight: torch.Tensor) -> bool:
        """False for a weight autograd would record, and for an inference tensor (no version counter)."""
        if weight.is_inference():
            return False
        return not (weight.requires_grad and torch.is_grad_enabled())

    def get(self, weight: torch.Tensor, key: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached transform of ``weight`` under ``key``, or ``compute()`` (stored if cacheable)."""
        if not self.cacheable(weight):
            return compute()
        full_key = (id(weight), weight.dtype, weight.device, *key)
        entry = self._entries.get(full_key)
        if entry is not None and entry[0]() is weight and entry[1] == weight._version:
            self.hits += 1
            self._entries.move_to_end(full_key)
            return entry[2]
        self.misses += 1
        value = compute()
        self._entries[full_key] = (weakref.ref(weight), weight._version, value)
        self._entries.move_to_end(full_key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KernelCache({len(self)} of {self.maxsize} entries, {self.hits} hits, {self.misses} misses)"


def check_cache(cache) -> None:
    """``cache`` must be a :class:`KernelCache` or None (``TypeError`` otherwise)."""
    if cache is not None and not isinstance(cache, KernelCache):
        raise TypeError(f"cache must be a convlib.KernelCache or None, got {type(cache).__name__}")


def all_finite(*tensors) -> bool:
    """True if no tensor holds a NaN or an infinity: one sum per tensor (``None`` skipped).

    A NaN or an infinity makes the sum NaN or infinite; a sum of finite values that overflows reads as not
    finite too, which only sends such (extreme) input down the direct path.
    """
    return all(bool(torch.isfinite(t.sum())) for t in tensors if t is not None)


def _circular_pad(x: torch.Tensor, sides) -> torch.Tensor:
    """``x`` (N x C x H x W) padded by wrapping around, any amount (``F.pad(mode='circular')`` allows at most H)."""
    H, W = x.shape[-2:]
    rows = torch.arange(-sides.top, H + sides.bottom, device=x.device) % H
    cols = torch.arange(-sides.left, W + sides.right, device=x.device) % W
    return x.index_select(2, rows).index_select(3, cols)


def direct_conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode="zeros"):
    """The direct way (im2col and one product per group), which gives PyTorch's NaN and inf: the fallback."""
    from .args import padding_sides, pair, suggests_channels_last
    from .im2col import conv2d_im2col

    if padding_mode != "circular":
        return conv2d_im2col(x, weight, bias, stride, padding, dilation, groups)
    stride, dilation = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    sides = padding_sides(padding, tuple(weight.shape[2:]), dilation, stride)
    x4 = _circular_pad(x if x.dim() == 4 else x[None], sides)
    y = conv2d_im2col(x4, weight, bias, stride, 0, dilation, groups)
    if suggests_channels_last(x) or suggests_channels_last(weight):
        y = y.contiguous(memory_format=torch.channels_last)
    return y if x.dim() == 4 else y[0]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the transforms run in: float32 and float64 as they are, 16-bit floats in float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def finish(a, y: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """``y`` (N x O x Ho x Wo, any strides) as PyTorch returns it: a new tensor, NCHW or channels-last as the
    input or weight, bias added, ``out_dtype``, without the batch axis for an unbatched input. ``a``: the
    call's :class:`convlib.args.ConvArgs`."""
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    if torch.is_grad_enabled() and y.requires_grad:  # out= does not record for autograd
        z = y if a.bias is None else y + a.bias.view(1, -1, 1, 1)
        z = z.to(out_dtype).contiguous(memory_format=fmt)
        return z[0] if a.unbatched else z
    out = torch.empty(y.shape, dtype=out_dtype, device=y.device, memory_format=fmt)
    if a.bias is None:
        out.copy_(y)
    elif out_dtype == y.dtype:
        torch.add(y, a.bias.view(1, -1, 1, 1), out=out)
    else:
        out.copy_(y + a.bias.to(y.dtype).view(1, -1, 1, 1))
    return out[0] if a.unbatched else out
