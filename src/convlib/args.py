"""The argument conventions of every convolution in convlib, written once.

convlib follows ``torch.nn.functional.conv2d`` and ``conv_transpose2d`` argument for argument:

* **Layouts.** The input ``x`` is N x C x H x W, or unbatched C x H x W (the result then has no batch axis
  either); the weight is O x C/g x kh x kw for a convolution and C_in x C_out/g x kh x kw for a transposed one;
  the bias has one entry per output channel, or is None. An empty batch (N = 0) gives an empty result.
* **Sizes.** ``stride``, ``padding``, ``dilation`` and ``output_padding`` are an int (the same along both
  axes) or a pair ``(h, w)``, as PyTorch accepts them: Python ints, NumPy integers, 0-d integer tensors, and
  sequences of one or two of them. ``padding`` is the number of zeros added on *each* side; ``dilation=1``
  means no dilation. A convolution's ``padding`` may also be ``'valid'`` (none) or ``'same'`` (the output as
  large as the input; stride 1), which pads ``d(k-1)`` in all per axis, the odd pixel at the bottom/right.
* **Output size**, the book's central equation, per axis: ``floor((n + 2p - d(k-1) - 1) / s) + 1``
  (:func:`output_length`), and for a transposed convolution ``(n-1)s - 2p + d(k-1) + a + 1``
  (:func:`transposed_length`).
* **Results** are stored as PyTorch stores them: channels-last when the input or the weight is stored
  channels-last (PyTorch's rule, :func:`suggests_channels_last`), contiguous otherwise and for an empty batch.
  NaN and inf in the input and the bias land where PyTorch puts them. (In the weight they meet the zeros of
  the padding, 0 * inf = NaN, which PyTorch's own backends do not agree on: oneDNN in float32 sometimes skips
  the padding, its im2col path in float64 never does.)
* **Tensors** are dense (strided) tensors; a sparse or mkldnn one raises a ``TypeError`` that says to call
  ``.to_dense()``.

Two deliberate differences: a weight with no input channels (PyTorch returns an empty result with no
out-channels) and a transposed convolution whose output would have no rows or columns (PyTorch returns an
empty result for an empty batch and raises otherwise) raise a ``ValueError`` for every batch, empty or not.

Bad arguments raise a ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong value) whose
message names the argument and says what to do. Every other module calls the functions here, so a rule or a
message changes in this file alone.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch

__all__ = [
    "Pair",
    "Sides",
    "is_int",
    "as_int",
    "as_length",
    "pair",
    "output_length",
    "output_hw",
    "transposed_length",
    "padding_sides",
    "check_fits",
    "check_tensor",
    "check_floating",
    "check_images",
    "check_input_and_weight",
    "check_bias",
    "check_groups",
    "suggests_channels_last",
    "channels_last_result",
    "finish",
    "ConvArgs",
    "conv2d_args",
]

Pair = tuple[int, int]


class Sides(NamedTuple):
    """Zero padding on each side of an image: ``(top, bottom, left, right)``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def symmetric(self) -> bool:
        return self.top == self.bottom and self.left == self.right

    @property
    def lrtb(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)``: the order ``torch.nn.functional.pad`` takes."""
        return (self.left, self.right, self.top, self.bottom)

    @property
    def total(self) -> Pair:
        """Zeros added along the height and along the width."""
        return (self.top + self.bottom, self.left + self.right)


# ---------------------------------------------------------------- integers and pairs


def is_int(value) -> bool:
    """True for what PyTorch accepts as an int: ``int``, NumPy integers, 0-d integer tensors (never ``bool``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return (
        isinstance(value, torch.Tensor)
        and value.dim() == 0
        and not value.is_floating_point()
        and not value.is_complex()
        and value.dtype != torch.bool
    )


def as_int(value, name: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python int: ``TypeError`` if it is not an integer, ``ValueError`` if below ``minimum``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must {_at_least(minimum)}, got {value}")
    return value


def as_length(value, name: str, *, minimum: int | None = None) -> int:
    """One axis's size or step: an int as :func:`as_int` takes it, or a sequence of one (``stride=(2,)``).

    PyTorch's one-axis convolutions (``conv1d``) take their sizes in both forms; so do convlib's one-axis
    formulas (:func:`convlib.conv_output_size`, :func:`convlib.transposed_output_size`).
    """
    if isinstance(value, (tuple, list, torch.Size)) and len(value) == 1 and is_int(value[0]):
        value = value[0]
    elif not is_int(value):
        raise TypeError(f"{name} must be an int (or a sequence of one int), got {value!r}")
    return as_int(value, name, minimum=minimum)


def _at_least(minimum: int) -> str:
    return "not be negative" if minimum == 0 else f"be at least {minimum}"


def pair(value, name: str, *, minimum: int) -> Pair:
    """``value`` as a pair of ints ``(h, w)``: an int (or a sequence of one) means the same along both axes."""
    if is_int(value):
        values = (int(value), int(value))
    elif isinstance(value, (tuple, list, torch.Size)) and len(value) in (1, 2) and all(is_int(v) for v in value):
        values = (int(value[0]), int(value[-1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{name} must {_at_least(minimum)}, got {value!r}")
    return values


def check_groups(groups) -> int:
    """``groups`` as an int of at least 1."""
    return as_int(groups, "groups", minimum=1)


# ---------------------------------------------------------------- sizes


def output_length(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """``floor((n + 2p - d(k-1) - 1) / s) + 1``: a convolution's output length along one axis.

    For checked ints (no argument checks here: :func:`convlib.conv_output_size` is the checked, public form).
    With unequal padding on the two sides, pass ``n`` plus the extra zeros of the larger side and ``p`` of the
    smaller one. The result is below 1 when the dilated kernel does not fit (see :func:`check_fits`).
    """
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def output_hw(size: Pair, kernel_size: Pair, stride: Pair, sides: Sides, dilation: Pair) -> Pair:
    """``(Ho, Wo)`` for zero padding given per side: :func:`output_length` along each axis."""
    per_axis = zip(size, kernel_size, stride, ((sides.top, sides.bottom), (sides.left, sides.right)), dilation)
    # with unequal sides ('same' with an odd total) the larger side's extra zeros lengthen the input
    return tuple(output_length(n + hi - lo, k, s, lo, d) for n, k, s, (lo, hi), d in per_axis)


def transposed_length(n: int, k: int, s: int = 1, p: int = 0, a: int = 0, d: int = 1) -> int:
    """``(n - 1)s - 2p + d(k-1) + a + 1``: a transposed convolution's output length along one axis.

    ``a`` is ``output_padding``. A convolution with the same ``k, s, p, d`` maps this length back to ``n``.
    """
    return (n - 1) * s - 2 * p + d * (k - 1) + a + 1


def padding_sides(padding, kernel_size: Pair, dilation: Pair = (1, 1), stride: Pair = (1, 1)) -> Sides:
    """A convolution's ``padding`` (int, pair, ``'valid'`` or ``'same'``) as the zeros on each side.

    ``'same'`` pads ``d(k-1)`` per axis in all, ``floor`` of half of it on the top/left and the rest on the
    bottom/right, as PyTorch does; it needs stride 1.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return Sides(0, 0, 0, 0)
        if padding == "same":
            if tuple(stride) != (1, 1):
                raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={tuple(stride)}")
            th, tw = dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1)
            return Sides(th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = pair(padding, "padding", minimum=0)
    return Sides(ph, ph, pw, pw)


def check_fits(size: Pair, kernel_size: Pair, sides: Sides, dilation: Pair, what: str = "input") -> None:
    """Raise ``ValueError`` if the dilated kernel does not fit in the padded ``what`` along either axis."""
    for axis, n, k, total, d in zip(("height", "width"), size, kernel_size, sides.total, dilation):
        span = d * (k - 1) + 1
        if span > n + total:
            raise ValueError(
                f"kernel larger than the padded {what} along the {axis}: the kernel spans {span} "
                f"(kernel {k}, dilation {d}) but the padded {what} is only {n + total} "
                f"({what} {n} + padding {total})"
            )


# ---------------------------------------------------------------- tensors


def check_tensor(t, name: str) -> torch.Tensor:
    """``t`` itself if it is a dense (strided) ``torch.Tensor``; ``TypeError`` naming ``name`` otherwise."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(
            f"{name} must be a dense (strided) tensor, got layout {t.layout}; convert it with {name}.to_dense() first"
        )
    return t


def check_floating(t: torch.Tensor, name: str) -> None:
    if not (t.is_floating_point() or t.is_complex()):
        raise TypeError(
            f"{name} must have a floating-point dtype (as nn.Conv2d requires), got {t.dtype}; "
            f"convert it with {name}.float() or {name}.double()"
        )


def check_images(x, channels: str = "C") -> None:
    """``x`` is a dense 4-D N x C x H x W tensor or a 3-D unbatched C x H x W one, with images in it.

    The batch may be empty (N = 0: PyTorch returns an empty result); the channels, height and width may not.
    """
    check_tensor(x, "input")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"input must be 4-D (N, {channels}, H, W) or 3-D unbatched ({channels}, H, W), got shape {tuple(x.shape)}"
        )
    if min(x.shape[-3:]) < 1:
        raise ValueError(
            f"input must not have an empty channel, height or width (an empty batch is fine), "
            f"got shape {tuple(x.shape)}"
        )


def check_input_and_weight(x, weight, channels: str = "C", weight_layout: str = "(O, C/groups, kh, kw)") -> None:
    """The checks every convolution (and its transpose) makes on its input and weight tensors."""
    check_images(x, channels)
    check_tensor(weight, "weight")
    check_floating(x, "input")
    check_floating(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D {weight_layout}, got shape {tuple(weight.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(f"input and weight must have the same dtype, got {x.dtype} and {weight.dtype}")
    if x.device != weight.device:
        raise ValueError(f"input and weight must be on the same device, got {x.device} and {weight.device}")
    if min(weight.shape) < 1:
        raise ValueError(f"weight must not have an empty dimension, got shape {tuple(weight.shape)}")


def check_bias(bias, out_channels: int, weight: torch.Tensor, what: str = "one per out-channel") -> None:
    """``bias`` is None or a 1-D tensor of ``out_channels`` entries with the weight's dtype and device."""
    if bias is None:
        return
    check_tensor(bias, "bias")
    if bias.dim() != 1 or bias.shape[0] != out_channels:
        raise ValueError(f"bias must be 1-D with {out_channels} entries ({what}), got shape {tuple(bias.shape)}")
    if bias.dtype != weight.dtype:
        raise TypeError(f"bias must have the weight's dtype {weight.dtype}, got {bias.dtype}")
    if bias.device != weight.device:
        raise ValueError(f"bias must be on the weight's device {weight.device}, got {bias.device}")


def suggests_channels_last(t: torch.Tensor) -> bool:
    """True for a 4-D tensor whose strides are those of channels-last (NHWC) storage, by PyTorch's own rule.

    This is ``torch.Tensor.suggest_memory_format``'s test, read from the strides alone (so it also works
    inside ``torch.func.vmap``): walking the axes C, W, H, N, each stride is at least the extent of the axes
    walked before it. Sliced channels-last views count; a tensor that is also contiguous in the standard
    order (C = 1 and a size-1 batch, say) does not, nor does one with an empty axis.
    """
    if t.dim() != 4:
        return False
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:  # a broadcast channel axis: PyTorch falls back to NCHW
        return False
    extent = 0  # how far in memory the axes walked so far reach
    for axis in (1, 3, 2, 0):
        if sizes[axis] == 0 or strides[axis] < extent:
            return False
        if axis == 0 and extent == strides[1]:  # ambiguous (N x 1 x 1 x 1 and the like): NCHW
            return False
        extent = strides[axis] * sizes[axis]
    return True


def channels_last_result(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether PyTorch's convolution (or transposed convolution) of ``x`` by ``weight`` is channels-last.

    It is when the 4-D input (an unbatched one with its batch axis added) or the weight suggests channels-last
    (:func:`suggests_channels_last`), except for an empty input, whose empty result PyTorch returns contiguous.
    """
    return x.numel() > 0 and (suggests_channels_last(x) or suggests_channels_last(weight))


def finish(y: torch.Tensor, bias, channels_last: bool, unbatched: bool) -> torch.Tensor:
    """A 4-D result as PyTorch returns it: bias added, stored contiguously (channels-last if so decided, else in
    the standard order, whatever view the method's last step left), batch axis dropped if unbatched."""
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    y = y.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return y[0] if unbatched else y


# ---------------------------------------------------------------- a convolution's arguments


class ConvArgs(NamedTuple):
    """Checked and normalised arguments of a 2-D convolution (see :func:`conv2d_args`)."""

    x: torch.Tensor  # always 4-D: N x C x H x W (already padded when the padding is asymmetric)
    weight: torch.Tensor  # O x C/g x kh x kw
    bias: torch.Tensor | None
    stride: Pair
    padding: Pair  # symmetric padding (per side) still to apply
    dilation: Pair
    groups: int
    unbatched: bool  # the caller passed C x H x W: drop the batch axis of the result
    channels_last: bool  # the caller's input or weight is channels-last: so is the result

    @property
    def kernel_size(self) -> Pair:
        return (self.weight.shape[2], self.weight.shape[3])

    @property
    def sides(self) -> Sides:
        (ph, pw) = self.padding
        return Sides(ph, ph, pw, pw)

    @property
    def output_hw(self) -> Pair:
        return tuple(
            output_length(self.x.shape[2 + a], self.kernel_size[a], self.stride[a], self.padding[a], self.dilation[a])
            for a in (0, 1)
        )

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """The result as PyTorch returns it: bias added, in its memory format, without a batch axis if unbatched."""
        return finish(y, self.bias, self.channels_last, self.unbatched)


def conv2d_args(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> ConvArgs:
    """Check the arguments of ``conv2d(x, weight, bias, stride, padding, dilation, groups)`` and normalise them.

    Follows ``torch.nn.functional.conv2d`` (see the module docstring). An asymmetric padding (``'same'`` with
    an even ``d(k-1)``) is applied here with ``F.pad``, as PyTorch does, leaving a symmetric one to the caller.
    One deliberate difference: PyTorch returns an empty result (with no out-channels) for a weight with no
    input channels; convlib raises, since such a weight cannot be what was meant.
    """
    check_input_and_weight(x, weight)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    channels_last = channels_last_result(x, weight)
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
    check_bias(bias, O, weight)
    stride = pair(stride, "stride", minimum=1)
    dilation = pair(dilation, "dilation", minimum=1)
    kernel = (weight.shape[2], weight.shape[3])
    sides = padding_sides(padding, kernel, dilation, stride)
    check_fits((H, W), kernel, sides, dilation)
    if not sides.symmetric:  # 'same' with an even d(k-1): pad explicitly, as PyTorch does
        x = torch.nn.functional.pad(x, sides.lrtb)
        sides = Sides(0, 0, 0, 0)
    return ConvArgs(x, weight, bias, stride, (sides.top, sides.left), dilation, groups, unbatched, channels_last)
