"""Backpropagation through a convolution as three matrix products, and a drop-in ``nn.Conv2d``.

With ``cols = im2col(x)`` (N x C*kh*kw x L) and ``W_row = weight.reshape(O, C*kh*kw)``, the forward pass is one
product per image, ``Y = W_row @ cols``. Its backward pass is three more products, one per input of the layer:

* ``dL/dW = sum_n dL/dY @ cols^T``                 (the gradient of a product w.r.t. its left factor)
* ``dL/dx = col2im(W_row^T @ dL/dY)``               (w.r.t. the right factor, then each column back in place:
  this is a *transposed convolution* of ``dL/dY`` with the same weight)
* ``dL/db = sum of dL/dY`` over the batch and every output position.

``Conv2dFunction`` is a ``torch.autograd.Function`` that computes exactly these: its forward runs without
autograd (PyTorch records one node for the whole layer, not the im2col steps) and its backward is ours.
It is the book's version, written to be read.

``FastConv2dFunction`` (:mod:`convlib.backprop`) computes the same three gradients as convolutions with the
fast path :func:`convlib.conv2d`: ``dL/dx`` as a transposed convolution (one stride-1 convolution per phase of
the stride), ``dL/dW`` as one product with the patch matrix of the whole batch.

``Conv2d`` is a drop-in replacement for ``torch.nn.Conv2d``: same constructor, same parameters and
initialisation, so a state_dict moves between the two in either direction. ``Conv2d(..., method='fast')``
(the default) runs ``FastConv2dFunction``, ``method='im2col'`` runs ``Conv2dFunction``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .args import as_int, check_fits, check_groups, conv2d_args, padding_sides, pair
from .backprop import FastConv2dFunction, KernelCache, save, tangent, vmap_rule, with_defaults
from .im2col import col2im, patch_view

__all__ = ["Conv2dFunction", "Conv2d", "FastConv2dFunction", "PADDING_MODES", "METHODS"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # nn.Conv2d's, all supported
METHODS = ("fast", "im2col")  # Conv2d(method=...): FastConv2dFunction or Conv2dFunction


class Conv2dFunction(torch.autograd.Function):
    """``F.conv2d`` with a hand-written backward: forward by im2col + matmul, backward by three products.

    ``Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)`` takes the arguments of
    ``torch.nn.functional.conv2d`` in the same order (``bias`` may be None; ``padding`` may be 'same' or
    'valid'; ``x`` may be unbatched C x H x W or an empty batch) and returns the same tensor, channels-last
    when the input or the weight is.

    The backward saves ``x`` and ``weight`` (not the patch matrix, which is kh*kw times larger) and rebuilds
    ``cols`` when it needs it. Because the backward is itself made of differentiable tensor operations on
    the saved inputs (the caller's tensors, not copies made without autograd), second derivatives
    (``create_graph=True``) are correct too. It runs under ``torch.func.vmap`` and ``torch.func.grad``.
    """

    @staticmethod
    def forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)  # clear errors for bad input
        N, g = a.x.shape[0], a.groups
        O, Cg, kh, kw = weight.shape
        Ho, Wo = a.output_hw
        cols = _cols(F.pad(a.x, a.sides.lrtb), (kh, kw), a.stride, a.dilation).view(N, g, Cg * kh * kw, Ho * Wo)
        W_row = weight.reshape(g, O // g, Cg * kh * kw)
        y = torch.matmul(W_row, cols)  # one product per image and group
        return a.finish(y.reshape(N, O, Ho, Wo))  # + bias; channels-last or unbatched as the input

    @staticmethod
    def setup_context(ctx, inputs, output):
        save(ctx, *with_defaults(inputs))

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        c = ctx.conf
        unbatched = x.dim() == 3
        x4, grad_y = (x.unsqueeze(0), grad_y.unsqueeze(0)) if unbatched else (x, grad_y)
        N, O, Ho, Wo = grad_y.shape
        _, Cg, kh, kw = weight.shape
        g = c.groups
        Hp, Wp = x4.shape[2] + c.sides.total[0], x4.shape[3] + c.sides.total[1]
        dY = grad_y.reshape(N, g, O // g, Ho * Wo)  # dL/dY, one row per out-channel, one column per patch
        W_row = weight.reshape(g, O // g, Cg * kh * kw)
        grad_x = grad_w = grad_b = None

        if ctx.needs_input_grad[0]:  # dL/dx = col2im(W_row^T @ dL/dY): a transposed convolution
            grad_cols = torch.matmul(W_row.transpose(1, 2), dY)  # N x g x Cg*kh*kw x L
            grad_cols = grad_cols.reshape(N, g * Cg * kh * kw, Ho * Wo)
            grad_xp = col2im(grad_cols, (Hp, Wp), (kh, kw), c.stride, 0, c.dilation)
            grad_x = grad_xp[:, :, c.sides.top : Hp - c.sides.bottom, c.sides.left : Wp - c.sides.right]
            grad_x = grad_x[0] if unbatched else grad_x
        if ctx.needs_input_grad[1]:  # dL/dW = sum over images of dL/dY @ cols^T
            cols = _cols(F.pad(x4, c.sides.lrtb), (kh, kw), c.stride, c.dilation).view(N, g, Cg * kh * kw, Ho * Wo)
            grad_w = torch.matmul(dY, cols.transpose(2, 3)).sum(0).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:  # dL/db = sum of dL/dY over images and positions
            grad_b = grad_y.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None

    @staticmethod
    def jvp(ctx, dx, dw, db, *_):
        return tangent(Conv2dFunction, ctx, dx, dw, db)

    @staticmethod
    def vmap(info, in_dims, *args):
        return vmap_rule(Conv2dFunction, info, in_dims, *args)


def _cols(xp, kernel_size, stride, dilation):
    """im2col of an already padded input, N x C*kh*kw x L: the 6-D patch view, then one reshape (the copy).

    The two steps of :func:`convlib.im2col`, which also serve an empty batch (no images, no columns).
    """
    view = patch_view(xp.contiguous(), kernel_size, stride, dilation)  # N x C x kh x kw x Ho x Wo
    N, C, kh, kw, Ho, Wo = view.shape
    return view.reshape(N, C * kh * kw, Ho * Wo)


class Conv2d(nn.Module):
    """A drop-in replacement for ``torch.nn.Conv2d`` whose forward and backward are convlib's matrix products.

    Same constructor (``in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode='zeros', device=None, dtype=None``), same attributes, same parameters ``weight``
    (O x C/groups x kh x kw) and ``bias`` (O, or None), initialised exactly as ``nn.Conv2d`` initialises them
    (so with the same seed the two layers start equal), and an ``nn.Conv2d`` state_dict loads into it.
    Every ``padding_mode`` of ``nn.Conv2d`` is supported: 'zeros' pads inside the convolution; the others
    pad with ``F.pad`` first, as ``nn.Conv2d`` does.

    ``method`` (keyword only) says how it computes: ``'fast'`` (the default) runs the forward pass and both
    gradients through :func:`convlib.conv2d` (:class:`convlib.backprop.FastConv2dFunction`: the input gradient
    is a transposed convolution, the weight gradient one product with the patch matrix of the batch), keeping
    the backward's transformed kernels while the weight is unchanged; ``'im2col'`` uses
    :class:`Conv2dFunction`, im2col and the three products exactly as chapter 4 writes them.
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
        *,
        method="fast",
    ):
        super().__init__()
        in_channels = as_int(in_channels, "in_channels", minimum=1)
        out_channels = as_int(out_channels, "out_channels", minimum=1)
        groups = check_groups(groups)
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels)):
            if n % groups:
                raise ValueError(f"{name}={n} must be divisible by groups={groups}")
        kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        stride = pair(stride, "stride", minimum=1)
        dilation = pair(dilation, "dilation", minimum=1)
        self._sides = padding_sides(padding, kernel_size, dilation, stride)  # checks it; F.pad's amounts
        if not isinstance(padding, str):
            padding = pair(padding, "padding", minimum=0)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES} (as in nn.Conv2d), got {padding_mode!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.groups, self.padding_mode, self.method = groups, padding_mode, method
        self.transposed, self.output_padding = False, (0, 0)  # attributes nn.Conv2d also has
        self._kernels = KernelCache()  # the backward's transformed kernels (method='fast')

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
        padding = self.padding
        if self.padding_mode != "zeros":
            self._check_padding_mode(x)
            x, padding = F.pad(x, self._sides.lrtb, mode=self.padding_mode), 0
        args = (x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        if self.method == "fast":
            return FastConv2dFunction.apply(*args, self._kernels)
        return Conv2dFunction.apply(*args)

    def _check_padding_mode(self, x) -> None:
        """Before ``F.pad``: does the kernel fit the padded input, and does the padding fit the input?

        Errors name the caller's input size and padding (after ``F.pad`` the convolution would see neither);
        'reflect' needs padding < size, 'circular' padding <= size (``F.pad``'s own error names neither).
        """
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or min(x.shape[-2:]) < 1:
            return  # the convolution reports it
        check_fits(tuple(x.shape[-2:]), self.kernel_size, self._sides, self.dilation)
        s = self._sides
        limit_ok = (lambda p, n: p < n) if self.padding_mode == "reflect" else (lambda p, n: p <= n)
        rule = "smaller than" if self.padding_mode == "reflect" else "at most"
        for axis, n, ps in (("height", x.shape[-2], (s.top, s.bottom)), ("width", x.shape[-1], (s.left, s.right))):
            if self.padding_mode in ("reflect", "circular") and not all(limit_ok(p, n) for p in ps):
                raise ValueError(
                    f"padding_mode={self.padding_mode!r} needs the padding ({max(ps)}) to be {rule} the input "
                    f"{axis} ({n})"
                )

    def extra_repr(self) -> str:  # word for word nn.Conv2d's (and the method, if not the default)
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
        if self.method != "fast":
            s += f", method={self.method!r}"
        return s
