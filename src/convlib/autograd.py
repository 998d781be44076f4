"""Backpropagation through a convolution as three matrix products, and a drop-in ``nn.Conv2d``.

With ``cols = im2col(x)`` (N x C*kh*kw x L) and ``W_row = weight.reshape(O, C*kh*kw)``, the forward pass is one
product per image, ``Y = W_row @ cols``. Its backward pass is three more products, one per input of the layer:

* ``dL/dW = sum_n dL/dY @ cols^T``                 (the gradient of a product w.r.t. its left factor)
* ``dL/dx = col2im(W_row^T @ dL/dY)``               (w.r.t. the right factor, then each column back in place:
  this is a *transposed convolution* of ``dL/dY`` with the same weight)
* ``dL/db = sum of dL/dY`` over the batch and every output position.

``Conv2dFunction`` is a ``torch.autograd.Function`` that computes exactly these: its forward runs without
autograd (PyTorch records one node for the whole layer, not the im2col steps) and its backward is ours.
``Conv2d`` is a drop-in replacement for ``torch.nn.Conv2d``: same constructor, same parameters and
initialisation, so a state_dict moves between the two in either direction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .args import as_int, check_groups, conv2d_args, padding_sides, pair
from .im2col import col2im, im2col

__all__ = ["Conv2dFunction", "Conv2d", "PADDING_MODES"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # nn.Conv2d's, all supported


class Conv2dFunction(torch.autograd.Function):
    """``F.conv2d`` with a hand-written backward: forward by im2col + matmul, backward by three products.

    ``Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)`` takes the arguments of
    ``torch.nn.functional.conv2d`` in the same order (``bias`` may be None; ``padding`` may be 'same' or
    'valid'; ``x`` may be unbatched C x H x W) and returns the same tensor.

    The backward saves ``x`` and ``weight`` (not the patch matrix, which is kh*kw times larger) and rebuilds
    ``cols`` when it needs it. Because the backward is itself made of differentiable tensor operations on
    the saved inputs, second derivatives (``create_graph=True``) are correct too.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)  # clear errors for bad input
        x4 = x.unsqueeze(0) if a.unbatched else x
        kh, kw = a.kernel_size
        pad = padding_sides(padding, (kh, kw), a.dilation, a.stride).lrtb
        xp = F.pad(x4, pad)  # left, right, top, bottom (asymmetric only for an even kernel with 'same')
        N, g = x4.shape[0], a.groups
        O, Cg = weight.shape[:2]
        Ho = (xp.shape[2] - a.dilation[0] * (kh - 1) - 1) // a.stride[0] + 1
        Wo = (xp.shape[3] - a.dilation[1] * (kw - 1) - 1) // a.stride[1] + 1

        cols = im2col(xp, (kh, kw), a.stride, 0, a.dilation).view(N, g, Cg * kh * kw, Ho * Wo)
        W_row = weight.reshape(g, O // g, Cg * kh * kw)
        y = torch.matmul(W_row, cols).reshape(N, O, Ho, Wo)  # one product per image and group
        if bias is not None:
            y = y + bias.view(1, O, 1, 1)

        ctx.save_for_backward(x4, weight)
        ctx.conf = dict(
            pad=pad, stride=a.stride, dilation=a.dilation, groups=g, unbatched=a.unbatched, has_bias=bias is not None
        )
        return y[0] if a.unbatched else y

    @staticmethod
    def backward(ctx, grad_y):
        x4, weight = ctx.saved_tensors
        c = ctx.conf
        if c["unbatched"]:
            grad_y = grad_y.unsqueeze(0)
        N, O, Ho, Wo = grad_y.shape
        _, Cg, kh, kw = weight.shape
        g = c["groups"]
        left, right, top, bottom = c["pad"]
        Hp, Wp = x4.shape[2] + top + bottom, x4.shape[3] + left + right
        dY = grad_y.reshape(N, g, O // g, Ho * Wo)  # dL/dY, one row per out-channel, one column per patch
        W_row = weight.reshape(g, O // g, Cg * kh * kw)
        grad_x = grad_w = grad_b = None

        if ctx.needs_input_grad[0]:  # dL/dx = col2im(W_row^T @ dL/dY): a transposed convolution
            grad_cols = torch.matmul(W_row.transpose(1, 2), dY)  # N x g x Cg*kh*kw x L
            grad_xp = col2im(
                grad_cols.reshape(N, g * Cg * kh * kw, Ho * Wo), (Hp, Wp), (kh, kw), c["stride"], 0, c["dilation"]
            )
            grad_x = grad_xp[:, :, top : Hp - bottom, left : Wp - right]
            if c["unbatched"]:
                grad_x = grad_x[0]
        if ctx.needs_input_grad[1]:  # dL/dW = sum over images of dL/dY @ cols^T
            xp = F.pad(x4, c["pad"])
            cols = im2col(xp, (kh, kw), c["stride"], 0, c["dilation"]).view(N, g, Cg * kh * kw, Ho * Wo)
            grad_w = torch.matmul(dY, cols.transpose(2, 3)).sum(0).reshape(weight.shape)
        if c["has_bias"] and ctx.needs_input_grad[2]:  # dL/db = sum of dL/dY over images and positions
            grad_b = grad_y.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


class Conv2d(nn.Module):
    """A drop-in replacement for ``torch.nn.Conv2d`` whose forward and backward are convlib's matrix products.

    Same constructor (``in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode='zeros', device=None, dtype=None``), same attributes, same parameters ``weight``
    (O x C/groups x kh x kw) and ``bias`` (O, or None), initialised exactly as ``nn.Conv2d`` initialises them
    (so with the same seed the two layers start equal), and an ``nn.Conv2d`` state_dict loads into it.
    Every ``padding_mode`` of ``nn.Conv2d`` is supported: 'zeros' pads inside ``Conv2dFunction``; the others
    pad with ``F.pad`` first, as ``nn.Conv2d`` does.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        in_channels = as_int(in_channels, "in_channels", minimum=1)
        out_channels = as_int(out_channels, "out_channels", minimum=1)
        groups = check_groups(groups)
        if in_channels % groups:
            raise ValueError(f"in_channels={in_channels} must be divisible by groups={groups}")
        if out_channels % groups:
            raise ValueError(f"out_channels={out_channels} must be divisible by groups={groups}")
        kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        stride = pair(stride, "stride", minimum=1)
        dilation = pair(dilation, "dilation", minimum=1)
        sides = padding_sides(padding, kernel_size, dilation, stride)  # checks it
        if not isinstance(padding, str):
            padding = pair(padding, "padding", minimum=0)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES} (as in nn.Conv2d), got {padding_mode!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.groups, self.padding_mode = groups, padding_mode
        self.transposed, self.output_padding = False, (0, 0)  # attributes nn.Conv2d also has
        # What F.pad needs for a padding_mode other than 'zeros' (nn.Conv2d's _reversed_padding_repeated_twice).
        self._pad_lrtb = sides.lrtb

        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *kernel_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's initialisation, call for call (so the same seed gives the same numbers).

        Weights: Kaiming-uniform with ``a = sqrt(5)``, i.e. uniform in +-1/sqrt(fan_in) where
        ``fan_in = C/groups * kh * kw``; bias: uniform in +-1/sqrt(fan_in).
        """
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if self.padding_mode != "zeros":
            self._check_pad_fits(x)
            x = F.pad(x, self._pad_lrtb, mode=self.padding_mode)
            return Conv2dFunction.apply(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return Conv2dFunction.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _check_pad_fits(self, x) -> None:
        """'reflect' needs padding < size, 'circular' padding <= size (F.pad's own error names neither)."""
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
            return  # Conv2dFunction reports it
        left, right, top, bottom = self._pad_lrtb
        limit_ok = (lambda p, n: p < n) if self.padding_mode == "reflect" else (lambda p, n: p <= n)
        rule = "smaller than" if self.padding_mode == "reflect" else "at most"
        for axis, n, ps in (("height", x.shape[-2], (top, bottom)), ("width", x.shape[-1], (left, right))):
            if self.padding_mode in ("reflect", "circular") and not all(limit_ok(p, n) for p in ps):
                raise ValueError(
                    f"padding_mode={self.padding_mode!r} needs the padding ({max(ps)}) to be {rule} the input "
                    f"{axis} ({n})"
                )

    def extra_repr(self) -> str:  # word for word nn.Conv2d's
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
