"""Transposed convolution: the convolution matrix's transpose, computed three equal ways.

A convolution with weight ``K`` maps an image of size H x W to one of size Ho x Wo by a matrix ``M``
(chapter 3). The *transposed* convolution with the same ``K`` multiplies by ``M^T``: it maps Ho x Wo back to
H x W. Shapes go back; values do not (``M^T`` is not ``M``'s inverse), which is why "deconvolution" is a
misnomer. PyTorch's ``F.conv_transpose2d(y, K)`` is exactly this map, with the same ``K``: its layout
C_in x C_out/groups x kh x kw is the layout of the convolution it transposes, read backwards.

``conv_transpose2d(..., method=...)`` computes it three ways, all equal to ``F.conv_transpose2d``:

* ``'matrix'``: build ``M`` with :func:`convlib.conv_matrix` and multiply by its transpose;
* ``'scatter'``: every input pixel stamps a scaled copy of the kernel into the output: ``col2im(K_row^T @ Y)``;
* ``'zero_insertion'``: insert s-1 zeros between input pixels, pad by d(k-1)-p on every side and by
  ``output_padding`` more at the bottom and right, and run an ordinary stride-1 convolution with the same
  dilation d and the kernel rotated 180 degrees, its in/out channels swapped.

(A fourth way, the polyphase view, is how :func:`convlib.backprop.conv2d_input` computes it: s_h*s_w small
convolutions, one per output phase, interleaved.) The output size along each axis (the height, say) is
``H_out = (H_in - 1)*s - 2p + d(k - 1) + output_padding + 1``. Where ``output_padding <= p`` its extra rows and
columns are canvas values that the padding would have cut; beyond that they lie outside the canvas and are
zeros (plus the bias).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .args import (
    as_length,
    channels_last_result,
    check_bias,
    check_groups,
    check_input_and_weight,
    check_tensor,
    finish,
    output_length,
    pair,
    transposed_length,
)
from .im2col import col2im, conv2d_im2col

__all__ = ["conv_transpose2d", "transposed_output_size", "insert_zeros", "flip_swap_kernel", "TRANSPOSED_METHODS"]

TRANSPOSED_METHODS = ("scatter", "zero_insertion", "matrix")


def transposed_output_size(size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1) -> int:
    """The output length of a transposed convolution along one axis, as ``nn.ConvTranspose2d`` computes it.

    ``(size - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1``

    It undoes the *shape* arithmetic of a convolution: a convolution with the same arguments maps an input
    of this length back to ``size``. Because the convolution's formula has a floor, ``stride`` input lengths
    map to the same ``size``; ``output_padding`` (0 .. stride-1, or less than ``dilation``) picks which one.

    >>> transposed_output_size(4, 3, stride=2, padding=1)                    # 4 -> 7
    7
    >>> transposed_output_size(4, 3, stride=2, padding=1, output_padding=1)  # 4 -> 8: exact 2x upsampling
    8
    """
    size = as_length(size, "size", minimum=1)
    kernel_size = as_length(kernel_size, "kernel_size", minimum=1)
    stride = as_length(stride, "stride", minimum=1)
    padding = as_length(padding, "padding", minimum=0)
    output_padding = as_length(output_padding, "output_padding", minimum=0)
    dilation = as_length(dilation, "dilation", minimum=1)
    _check_output_padding((output_padding,), (stride,), (dilation,), ("",))
    n = transposed_length(size, kernel_size, stride, padding, output_padding, dilation)
    if n < 1:
        raise ValueError(_too_small(size, kernel_size, stride, padding, output_padding, dilation, n))
    return n


def _too_small(i, k, s, p, op, d, n, axis=""):
    where = f" along the {axis}" if axis else ""
    return (
        f"the output of the transposed convolution would be empty{where}: (H_in-1)*s - 2p + d(k-1) + output_padding + 1"
        f" = ({i}-1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {n}; use a smaller padding (at most {(n - 1 + 2 * p) // 2}"
        f" here) or a larger input"
    )


def _check_output_padding(output_padding, stride, dilation, axes) -> None:
    for op, s, d, axis in zip(output_padding, stride, dilation, axes):
        if not (op < s or op < d):
            where = f" along the {axis}" if axis else ""
            raise ValueError(
                f"output_padding must be smaller than the stride or the dilation{where}: got output_padding={op} "
                f"with stride {s} and dilation {d}. It only chooses among the {max(s, d)} output sizes that a "
                f"convolution maps to the same input size; it is not extra zero padding"
            )


@dataclass
class TransposedArgs:
    """Checked and normalised arguments of a 2-D transposed convolution."""

    x: torch.Tensor  # N x C_in x H x W
    weight: torch.Tensor  # C_in x C_out/g x kh x kw
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    unbatched: bool
    channels_last: bool  # the caller's input or weight is channels-last: so is the result

    @property
    def kernel_size(self):
        return (self.weight.shape[2], self.weight.shape[3])

    @property
    def out_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def output_hw(self):
        return tuple(
            transposed_length(
                self.x.shape[2 + a],
                self.kernel_size[a],
                self.stride[a],
                self.padding[a],
                self.output_padding[a],
                self.dilation[a],
            )
            for a in (0, 1)
        )

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """The result as PyTorch returns it: bias added, in its memory format, without a batch axis if unbatched."""
        return finish(y, self.bias, self.channels_last, self.unbatched)


def transposed_args(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Check the arguments of ``conv_transpose2d`` (PyTorch's order and layouts) and normalise them."""
    check_input_and_weight(x, weight, "C_in", "(C_in, C_out/groups, kh, kw) as in nn.ConvTranspose2d")
    unbatched = x.dim() == 3
    x4 = x.unsqueeze(0) if unbatched else x
    groups = check_groups(groups)
    C = x4.shape[1]
    if weight.shape[0] != C:
        raise ValueError(
            f"input has {C} channels but the weight has weight.shape[0] = {weight.shape[0]}: a transposed "
            f"convolution's weight is C_in x C_out/groups x kh x kw (in-channels first, the reverse of conv2d's)"
        )
    if C % groups:
        raise ValueError(f"groups={groups} does not divide the input's {C} channels")
    out_channels = weight.shape[1] * groups
    check_bias(bias, out_channels, weight, "one per out-channel: weight.shape[1] * groups")
    if isinstance(padding, str):
        raise TypeError(
            f"padding must be an int or a pair of ints (h, w), got {padding!r}: a transposed convolution has no "
            f"'same' or 'valid' (as in PyTorch)"
        )
    stride = pair(stride, "stride", minimum=1)
    padding = pair(padding, "padding", minimum=0)
    output_padding = pair(output_padding, "output_padding", minimum=0)
    dilation = pair(dilation, "dilation", minimum=1)
    _check_output_padding(output_padding, stride, dilation, ("height", "width"))
    channels_last = channels_last_result(x4, weight)
    a = TransposedArgs(x4, weight, bias, stride, padding, output_padding, dilation, groups, unbatched, channels_last)
    for axis, n, i, k, s, p, op, d in zip(
        ("height", "width"), a.output_hw, x4.shape[2:], a.kernel_size, stride, padding, output_padding, dilation
    ):
        if n < 1:
            raise ValueError(_too_small(i, k, s, p, op, d, n, axis))
    return a


def insert_zeros(x: torch.Tensor, stride) -> torch.Tensor:
    """Put ``stride - 1`` zeros between neighbouring pixels of the last two axes (none around the border).

    An H x W image becomes ((H-1)*sh + 1) x ((W-1)*sw + 1): the input of the zero-insertion view of a
    transposed convolution (what conv_arithmetic calls a "fractionally strided" convolution).
    """
    check_tensor(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    sh, sw = pair(stride, "stride", minimum=1)
    H, W = x.shape[-2:]
    up = x.new_zeros(*x.shape[:-2], (H - 1) * sh + 1, (W - 1) * sw + 1)
    up[..., ::sh, ::sw] = x
    return up


def flip_swap_kernel(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The ordinary-convolution weight equivalent to a transposed convolution's weight.

    ``weight`` is C_in x C_out/g x kh x kw (``nn.ConvTranspose2d``'s layout). Within each group the in- and
    out-channel axes are swapped, giving C_out x C_in/g x kh x kw (``nn.Conv2d``'s layout), and every kernel is
    rotated by 180 degrees (flipped along both spatial axes).
    """
    check_tensor(weight, "weight")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (C_in, C_out/groups, kh, kw), got shape {tuple(weight.shape)}")
    g = check_groups(groups)
    C_in, C_out_g, kh, kw = weight.shape
    if C_in % g:
        raise ValueError(f"groups={g} does not divide the weight's {C_in} in-channels")
    swapped = weight.reshape(g, C_in // g, C_out_g, kh, kw).transpose(1, 2).reshape(g * C_out_g, C_in // g, kh, kw)
    return swapped.flip(2, 3)


def _scatter(a: TransposedArgs) -> torch.Tensor:
    """col2im(W^T @ Y): every input pixel's column of W^T @ Y is a copy of the kernel scaled by that pixel."""
    N, C_in, H, W = a.x.shape
    g = a.groups
    _, C_out_g, kh, kw = a.weight.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = a.stride, a.padding, a.output_padding, a.dilation
    Y = a.x.reshape(N, g, C_in // g, H * W)  # one column per input pixel
    W_T = a.weight.reshape(g, C_in // g, C_out_g * kh * kw).transpose(1, 2)  # C_out/g*kh*kw x C_in/g per group
    stamps = torch.matmul(W_T, Y).reshape(N, g * C_out_g * kh * kw, H * W)  # column l: the stamp of pixel l
    # Add every stamp onto the full canvas, pixel (i, j) at (i*s, j*s) ...
    Hf, Wf = (H - 1) * sh + dh * (kh - 1) + 1, (W - 1) * sw + dw * (kw - 1) + 1
    full = col2im(stamps, (Hf, Wf), (kh, kw), a.stride, 0, a.dilation)
    # ... then cut `padding` off each side; output_padding adds rows/columns at the bottom/right (zero only
    # where the canvas ends: where padding >= output_padding they are canvas rows that would have been cut).
    full = F.pad(full, (0, opw, 0, oph))
    Ho, Wo = a.output_hw
    return full[:, :, ph : ph + Ho, pw : pw + Wo]


def _zero_insertion(a: TransposedArgs) -> torch.Tensor:
    """Insert zeros, pad by d(k-1)-p (+ output_padding at the bottom/right), convolve with the flipped kernel."""
    (kh, kw), (ph, pw), (oph, opw), (dh, dw) = a.kernel_size, a.padding, a.output_padding, a.dilation
    up = insert_zeros(a.x, a.stride)
    qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw  # negative: crop instead of pad
    up = F.pad(up, (qw, qw + opw, qh, qh + oph))
    return conv2d_im2col(up, flip_swap_kernel(a.weight, a.groups), None, 1, 0, a.dilation, a.groups)


def _matrix(a: TransposedArgs) -> torch.Tensor:
    """M^T @ Y: M is the matrix of the convolution (same weight) that maps C_out x Ho x Wo to C_in x H x W."""
    from ._sparse import sparse_product
    from .toeplitz import matrix_parts

    N, C_in, H, W = a.x.shape
    Ho, Wo = a.output_hw
    values, pattern = matrix_parts(a.weight, (a.out_channels, Ho, Wo), a.stride, a.padding, a.dilation, a.groups)
    # The convolution returns floor(output_padding / s) more rows (columns) than H (W) when output_padding >= s
    # (allowed if it is below the dilation); no pixel of x sits there, so those entries of Y are zero.
    Hc, Wc = _conv_hw(a, Ho, Wo)
    Y = F.pad(a.x, (0, Wc - W, 0, Hc - H)).reshape(N, C_in * Hc * Wc).T  # one flattened image per column
    transposed, order = pattern.transposed  # M^T: the same values, read column by column
    out = sparse_product(values[order], Y, transposed)  # (C_out*Ho*Wo) x N
    return out.T.reshape(N, a.out_channels, Ho, Wo)


def _conv_hw(a: TransposedArgs, Ho: int, Wo: int):
    """The output size of the convolution that the transposed convolution transposes (>= the input size)."""
    return tuple(
        output_length(n, k, s, p, d) for n, k, s, p, d in zip((Ho, Wo), a.kernel_size, a.stride, a.padding, a.dilation)
    )


_METHODS = {"scatter": _scatter, "zero_insertion": _zero_insertion, "matrix": _matrix}


def conv_transpose2d(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, method="scatter"
):
    """2-D transposed convolution, equal to ``torch.nn.functional.conv_transpose2d`` (same arguments, same order).

    ``x`` is N x C_in x H x W (or unbatched C_in x H x W); ``weight`` is C_in x C_out/groups x kh x kw (the
    layout of ``nn.ConvTranspose2d``, which is that of the convolution it transposes); ``bias`` has C_out
    entries. The output is N x C_out x Ho x Wo with ``Ho = (H-1)*s - 2p + d(kh-1) + output_padding + 1``.
    ``output_padding`` must be smaller than the stride or the dilation (per axis).

    ``method``: ``'scatter'`` (col2im of W^T @ Y), ``'zero_insertion'`` (zeros between pixels, then an
    ordinary convolution with the 180-degree-rotated, channel-swapped kernel) or ``'matrix'`` (M^T @ y with
    the sparse convolution matrix M of :func:`convlib.conv_matrix`; differentiable to any order, in half
    precision too). An output with no rows or columns raises ``ValueError`` (PyTorch returns an empty tensor
    for an empty batch). A NaN or inf in the weight meets zeros that ``'zero_insertion'`` inserts (and that
    ``'matrix'`` pads when ``output_padding >= stride``): 0 * inf is NaN there, where ``'scatter'`` has +-inf.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be one of the strings {TRANSPOSED_METHODS}, got {method!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {TRANSPOSED_METHODS}, got {method!r}")
    a = transposed_args(x, weight, bias, stride, padding, output_padding, groups, dilation)
    return a.finish(_METHODS[method](a))
