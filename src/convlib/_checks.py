"""Argument checking shared by every convolution in convlib.

PyTorch's own convolutions fail deep inside C++ with messages that rarely name the argument at fault, or
(for some bad strides and paddings) not at all. convlib checks everything up front and raises a
``TypeError`` or ``ValueError`` whose message names the argument and what was wrong with it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

Pair = tuple[int, int]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def pair(value, name: str, *, minimum: int) -> Pair:
    """``value`` as a pair of ints ``(h, w)``: an int means the same along both axes (PyTorch's convention)."""
    if _is_int(value):
        values = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        values = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(values) < minimum:
        what = "negative" if minimum == 0 else f"less than {minimum}"
        raise ValueError(f"{name} must not be {what}, got {value!r}")
    return values


def check_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_floating(t: torch.Tensor, name: str) -> None:
    if not (t.is_floating_point() or t.is_complex()):
        raise TypeError(
            f"{name} must have a floating-point dtype (as nn.Conv2d requires), got {t.dtype}; "
            f"convert it with {name}.float() or {name}.double()"
        )


def check_groups(groups) -> int:
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    return int(groups)


def check_size(size, name: str) -> int:
    if not _is_int(size):
        raise TypeError(f"{name} must be an int, got {size!r}")
    if size < 1:
        raise ValueError(f"{name} must be at least 1, got {size}")
    return int(size)


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``floor((size + 2p - d(k-1) - 1) / s) + 1`` for already-checked ints (may be < 1)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_fits(size: Pair, kernel: Pair, padding: Pair, dilation: Pair, what: str = "input") -> None:
    """Raise if the dilated kernel does not fit in the padded input along either axis."""
    for axis, n, k, p, d in zip(("height", "width"), size, kernel, padding, dilation):
        span = d * (k - 1) + 1
        if span > n + 2 * p:
            raise ValueError(
                f"kernel larger than the padded {what} along the {axis}: the kernel spans {span} "
                f"(kernel {k}, dilation {d}) but the padded {what} is only {n + 2 * p} "
                f"({what} {n} + 2 x padding {p})"
            )


def same_padding(kernel: Pair, dilation: Pair) -> tuple[int, int, int, int]:
    """PyTorch's ``padding='same'``: total ``d(k-1)`` per axis, the odd pixel going to the bottom/right.

    Returned as ``(left, right, top, bottom)``, the order ``F.pad`` takes.
    """
    (kh, kw), (dh, dw) = kernel, dilation
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return (tw // 2, tw - tw // 2, th // 2, th - th // 2)


@dataclass
class ConvArgs:
    """Checked and normalised arguments of a 2-D convolution."""

    x: torch.Tensor  # always 4-D: N x C x H x W (already padded if padding was asymmetric 'same')
    weight: torch.Tensor  # O x C/g x kh x kw
    bias: torch.Tensor | None
    stride: Pair
    padding: Pair  # symmetric padding still to apply
    dilation: Pair
    groups: int
    unbatched: bool  # the caller passed C x H x W; squeeze the batch axis of the result

    @property
    def kernel_size(self) -> Pair:
        return (self.weight.shape[2], self.weight.shape[3])

    @property
    def output_hw(self) -> Pair:
        H, W = self.x.shape[2], self.x.shape[3]
        return (
            out_size(H, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0]),
            out_size(W, self.kernel_size[1], self.stride[1], self.padding[1], self.dilation[1]),
        )

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """Add the bias and drop the batch axis again for unbatched input."""
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y[0] if self.unbatched else y


def check_input_and_weight(x, weight, channels: str = "C", weight_layout: str = "(O, C/groups, kh, kw)") -> None:
    """The checks every convolution (and its transpose) makes on its input and weight tensors."""
    check_tensor(x, "input")
    check_tensor(weight, "weight")
    check_floating(x, "input")
    check_floating(weight, "weight")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"input must be 4-D (N, {channels}, H, W) or 3-D unbatched ({channels}, H, W), got shape {tuple(x.shape)}"
        )
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D {weight_layout}, got shape {tuple(weight.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(f"input and weight must have the same dtype, got {x.dtype} and {weight.dtype}")
    if x.device != weight.device:
        raise ValueError(f"input and weight must be on the same device, got {x.device} and {weight.device}")
    if min(weight.shape) < 1:
        raise ValueError(f"weight must not have an empty dimension, got shape {tuple(weight.shape)}")


def conv2d_args(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> ConvArgs:
    """Check the arguments of ``conv2d(x, weight, bias, stride, padding, dilation, groups)``.

    Follows ``torch.nn.functional.conv2d``: ``x`` is N x C x H x W (or unbatched C x H x W), ``weight`` is
    O x C/groups x kh x kw, ``bias`` has O entries; ``stride``, ``padding``, ``dilation`` are an int or a pair;
    ``padding`` may also be ``'valid'`` (no padding) or ``'same'`` (output as large as the input; stride 1).
    """
    check_input_and_weight(x, weight)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    if min(x.shape) < 1:
        raise ValueError(f"input must not have an empty dimension, got shape {tuple(x.shape)}")

    groups = check_groups(groups)
    N, C, H, W = x.shape
    O, Cg = weight.shape[0], weight.shape[1]
    if C % groups:
        raise ValueError(f"groups={groups} does not divide the input's {C} channels")
    if O % groups:
        raise ValueError(f"groups={groups} does not divide the weight's {O} out-channels")
    if Cg * groups != C:
        raise ValueError(
            f"input has {C} channels but weight expects weight.shape[1] * groups = {Cg} * {groups} = {Cg * groups}"
        )

    if bias is not None:
        check_tensor(bias, "bias")
        if bias.dim() != 1 or bias.shape[0] != O:
            raise ValueError(f"bias must be 1-D with {O} entries (one per out-channel), got shape {tuple(bias.shape)}")
        if bias.dtype != weight.dtype:
            raise TypeError(f"bias must have the weight's dtype {weight.dtype}, got {bias.dtype}")
        if bias.device != weight.device:
            raise ValueError(f"bias must be on the weight's device {weight.device}, got {bias.device}")

    stride = pair(stride, "stride", minimum=1)
    dilation = pair(dilation, "dilation", minimum=1)
    kernel = (weight.shape[2], weight.shape[3])
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
            left, right, top, bottom = same_padding(kernel, dilation)
            if (left, top) == (right, bottom):
                padding = (top, left)
            else:  # asymmetric: pad explicitly, as PyTorch does
                x = torch.nn.functional.pad(x, (left, right, top, bottom))
                padding = (0, 0)
        else:
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        padding = pair(padding, "padding", minimum=0)
    check_fits((x.shape[2], x.shape[3]), kernel, padding, dilation)
    return ConvArgs(x, weight, bias, stride, padding, dilation, groups, unbatched)
