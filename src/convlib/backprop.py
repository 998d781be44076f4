"""Backpropagation through a convolution with convolutions: the fast backward of :class:`convlib.Conv2d`.

Chapter 4 writes the backward pass as three products (``Ybar = dL/dY``; ``K_row`` is the kernel ``K`` as an
O x C/g*kh*kw matrix): ``dL/dK_row = Ybar @ cols^T``, ``dL/dx = col2im(K_row^T @ Ybar)`` and ``dL/db = sum(Ybar)``.
Each of the first two is itself a convolution, so the fast convolution :func:`convlib.conv2d` can compute the
backward pass as well as the forward pass:

* ``dL/dx`` is the *transposed* convolution of ``Ybar`` (:func:`conv2d_input`). With stride 1 it is an ordinary
  convolution of ``Ybar``, padded by ``d(k-1) - p``, with the kernel rotated by 180 degrees and its in- and
  out-channels swapped. With stride ``s`` the output pixels fall into ``s_h * s_w`` *phases* (rows
  ``r = a (mod s_h)``, columns ``c = b (mod s_w)``); phase ``(a, b)`` receives only the taps ``(u, v)`` with
  ``d*u = a + p (mod s)`` (per axis), and from those it is again a stride-1 convolution of ``Ybar`` with a
  smaller kernel. The ``s_h * s_w`` results interleave into ``dL/dx`` (a pixel shuffle). This *polyphase*
  form multiplies by no inserted zeros: inserting ``s - 1`` zeros between the pixels of ``Ybar`` and then
  convolving costs ``s_h * s_w`` times the arithmetic.
* ``dL/dK`` is the correlation of the padded input with ``Ybar`` (:func:`conv2d_weight`):
  ``dL/dK[o, c, u, v] = sum_{n,i,j} Ybar[n, o, i, j] * xp[n, c, i*s + u*d, j*s + v*d]``: a convolution in which
  the batch plays the role of the channels and the forward stride becomes the dilation. Computed as one
  product per group with the patch matrix of the whole batch, ``Ybar (O/g x N*L) @ cols^T (N*L x C/g*kh*kw)``:
  for a kernel ``Ybar`` of Ho x Wo taps the convolution form would need Ho*Wo products.

:class:`FastConv2dFunction` is ``F.conv2d`` whose forward and input gradient run through :func:`convlib.conv2d`;
its backward calls the Function itself, so second derivatives (``create_graph=True``) come out of the same
formulas. :func:`vmap_rule` runs a convolution Function under ``torch.func.vmap`` by folding the vmapped axis
into the batch (or, for vmapped weights, into the groups).
"""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .args import ConvArgs, Pair, Sides, conv2d_args, padding_sides, pair
from .fast import conv2d
from .im2col import patch_view
from .transposed import flip_swap_kernel

__all__ = ["FastConv2dFunction", "KernelCache", "conv2d_input", "conv2d_weight", "vmap_rule", "GradConfig"]


class GradConfig(NamedTuple):
    """What a convolution's backward needs to know besides its tensors (normalised arguments)."""

    stride: Pair
    sides: Sides  # zero padding on each side (asymmetric for 'same' with an even d(k-1))
    dilation: Pair
    groups: int


def with_defaults(inputs: tuple, **extra) -> tuple:
    """The arguments of ``Function.apply(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, ...)``
    with the defaults of those the caller left out (``setup_context`` sees only the ones passed)."""
    defaults = (None, 1, 0, 1, 1, *extra.values())
    return tuple(inputs) + defaults[len(inputs) - 2 :]


def grad_config(weight, stride, padding, dilation, groups) -> GradConfig:
    """The normalised arguments of a convolution already checked by :func:`convlib.args.conv2d_args`."""
    stride, dilation = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    sides = padding_sides(padding, (weight.shape[2], weight.shape[3]), dilation, stride)
    return GradConfig(stride, sides, dilation, int(groups))


def save(ctx, x, weight, bias, stride, padding, dilation, groups) -> None:
    """What a convolution Function's ``setup_context`` keeps for the backward and forward-mode passes."""
    ctx.save_for_backward(x, weight)  # the caller's tensors themselves: the backward's graph starts at them
    ctx.save_for_forward(x, weight)
    ctx.conf = grad_config(weight, stride, padding, dilation, groups)
    ctx.args = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def tangent(function, ctx, dx, dw, db) -> torch.Tensor | None:
    """Forward mode: the convolution is linear in each argument, so ``dY = conv(dx, K) + conv(x, dK) + db``."""
    x, weight = ctx.saved_tensors
    terms = []
    if dx is not None:
        terms.append(function.apply(dx, weight, None, *ctx.args))
    if dw is not None:
        terms.append(function.apply(x, dw, None, *ctx.args))
    if db is not None:
        if not terms:  # only the bias moves: dY is db at every output position
            a = conv2d_args(x, weight, None, *ctx.args)
            shape = (weight.shape[0], *a.output_hw) if x.dim() == 3 else (x.shape[0], weight.shape[0], *a.output_hw)
            terms.append(db.new_zeros(shape))
        terms[0] = terms[0] + db.view(-1, 1, 1)
    return sum(terms[1:], terms[0]) if terms else None


# ---------------------------------------------------------------- the convolution itself


def _fast_conv(a: ConvArgs) -> torch.Tensor:
    """:func:`convlib.conv2d` on checked arguments (4-D, symmetric padding), also for an empty batch."""
    if a.x.shape[0] == 0:  # convlib.conv2d plans its blocks per image and has no plan for an empty batch
        return a.x.new_zeros(0, a.weight.shape[0], *a.output_hw)
    args = (a.x, a.weight, a.bias, a.stride, a.padding, a.dilation, a.groups)
    if torch.is_inference_mode_enabled():
        # convlib.conv2d keeps buffers between calls; made under inference_mode they would be inference
        # tensors, which a later call outside it (training) may not write: make them normal tensors.
        with torch.inference_mode(False):
            return conv2d(*args)
    return conv2d(*args)


class FastConv2dFunction(torch.autograd.Function):
    """``F.conv2d`` computed by :func:`convlib.conv2d`, forward and backward.

    ``FastConv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups, cache=None)`` takes the
    arguments of ``torch.nn.functional.conv2d`` in the same order (``x`` batched or unbatched, ``padding`` an
    int, a pair, 'same' or 'valid', ``bias`` may be None) and returns the same tensor, channels-last when the
    input or weight is. ``cache``: a :class:`KernelCache` that keeps the backward's transformed kernels
    between calls (a layer passes its own). The backward computes ``dL/dx`` with :func:`conv2d_input`,
    ``dL/dK`` with :func:`conv2d_weight` and ``dL/db`` as a sum; both convolutions call this Function, so
    the backward is differentiable and second derivatives are exact.
    """

    @staticmethod
    def forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, cache=None):
        a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)  # clear errors for bad input
        y = _fast_conv(a)
        return a._replace(bias=None).finish(y)  # channels-last and unbatched as the input; the bias is in y

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, stride, padding, dilation, groups, cache = with_defaults(inputs, cache=None)
        save(ctx, x, weight, bias, stride, padding, dilation, groups)
        ctx.cache = cache

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        c = ctx.conf
        unbatched = x.dim() == 3
        x4, g4 = (x.unsqueeze(0), grad_y.unsqueeze(0)) if unbatched else (x, grad_y)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(x4.shape, weight, g4, c.stride, c.sides, c.dilation, c.groups, cache=ctx.cache)
            grad_x = grad_x[0] if unbatched else grad_x
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x4, weight.shape, g4, c.stride, c.sides, c.dilation, c.groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g4.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None

    @staticmethod
    def jvp(ctx, dx, dw, db, *_):
        return tangent(FastConv2dFunction, ctx, dx, dw, db)

    @staticmethod
    def vmap(info, in_dims, *args):
        return vmap_rule(FastConv2dFunction, info, in_dims, *args[:7])


def _conv(x, weight, padding, dilation, groups):
    """A stride-1, bias-free convolution that autograd follows (through the fast path's own backward)."""
    return FastConv2dFunction.apply(x, weight, None, 1, padding, dilation, groups)


# ---------------------------------------------------------------- dL/dx: a transposed convolution


class _Phase(NamedTuple):
    """One phase along one axis: the taps it receives and where the gradient must be shifted to meet them."""

    first: int  # the phase's taps are first, first + step, ... of the *flipped* kernel
    count: int
    step: int
    dilation: int  # spacing of those taps in the stride-1 convolution of the phase
    before: int  # zeros added before Ybar (negative: pixels cut off)
    after: int


def phases(n: int, k: int, s: int, d: int, pad_before: int, out_len: int) -> tuple[_Phase | None, ...]:
    """Along one axis: for each phase ``a`` (input positions ``r = a (mod s)``) its taps, or None if none.

    Input position ``r`` (of the unpadded input, ``n`` long) receives ``Ybar[i] * K[u]`` exactly where
    ``i*s + u*d = r + pad_before``. For ``r = m*s + a`` the taps are the ``u`` with ``u*d = a + pad_before
    (mod s)``, spaced ``s / gcd(s, d)`` apart, and tap ``u`` pairs output ``m`` with ``Ybar[m - c_u]``,
    ``c_u = (u*d - a - pad_before) / s``: a stride-1 correlation of ``Ybar``, shifted by the largest ``c_u``,
    with the phase's taps in reverse order. Every phase computes ``ceil(n / s)`` positions.
    """
    M = -(-n // s)
    out = []
    for a in range(s):
        taps = [u for u in range(k) if (u * d - a - pad_before) % s == 0]
        shift = (taps[-1] * d - a - pad_before) // s if taps else 0
        if not taps or shift <= -out_len:  # no tap reaches this phase, or only beyond the end of Ybar
            out.append(None)
            continue
        step = s // math.gcd(s, d)
        dil = d * step // s if len(taps) > 1 else 1
        after = M + dil * (len(taps) - 1) - out_len - shift
        out.append(_Phase(k - 1 - taps[-1], len(taps), step, dil, shift, after))
    return tuple(out)


def _shifted(grad_y, ph: _Phase, pw: _Phase):
    """``grad_y`` padded (or cut) for one phase: the tensor, and the symmetric padding left to the convolution."""
    if ph.before == ph.after >= 0 and pw.before == pw.after >= 0:
        return grad_y, (ph.before, pw.before)  # the convolution pads it, with no copy here
    return F.pad(grad_y, (pw.before, pw.after, ph.before, ph.after)), (0, 0)  # negative amounts cut


def _phase_kernels(weight, groups, down, across):
    """For every phase pair, the flipped, channel-swapped kernel restricted to the taps that phase receives."""
    flipped = flip_swap_kernel(weight, groups)  # (C, O/g, kh, kw): the transposed convolution's kernel
    kernels = {}
    for a, ph in enumerate(down):
        for b, pw in enumerate(across):
            if ph is not None and pw is not None:
                sub = flipped[:, :, ph.first :: ph.step, pw.first :: pw.step][:, :, : ph.count, : pw.count]
                kernels[a, b] = sub.contiguous()
    return kernels


def _zeros_in_graph(grad_output, weight, size) -> torch.Tensor:
    """Zeros that autograd sees as a function of ``grad_output`` and ``weight`` (with derivative 0), as in
    ``F.conv2d``'s double backward: which gradients a second derivative has must not depend on whether a tap
    reaches these pixels. The empty sums add exactly 0, whatever NaN or inf the two tensors hold."""
    return grad_output.new_zeros(size) + (grad_output.flatten()[:0].sum() + weight.flatten()[:0].sum())


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *, cache=None):
    """``dL/dx`` of ``conv2d(x, weight, ...)`` given ``grad_output = dL/dY``: its transposed convolution.

    Same arguments as ``torch.nn.grad.conv2d_input`` (``input_size``: the shape of ``x``, N x C x H x W;
    ``padding`` may also be 'same', 'valid' or a :class:`convlib.args.Sides`). One stride-1 convolution per
    phase (one in all for stride 1), each computed by :func:`convlib.conv2d` and differentiable; ``cache``
    (a :class:`KernelCache`) keeps the phase kernels between calls while the weight is unchanged.
    """
    N, C, H, W = input_size
    _, _, kh, kw = weight.shape
    stride, dilation = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    sides = padding if isinstance(padding, Sides) else padding_sides(padding, (kh, kw), dilation, stride)
    Ho, Wo = grad_output.shape[2:]
    down = phases(H, kh, stride[0], dilation[0], sides.top, Ho)  # the phases along the height
    across = phases(W, kw, stride[1], dilation[1], sides.left, Wo)  # and along the width
    key = ("phases", groups, down, across)
    make = lambda w: _phase_kernels(w, groups, down, across)  # noqa: E731
    kernels = make(weight) if cache is None else cache.get(weight, key, make)
    Mh, Mw = -(-H // stride[0]), -(-W // stride[1])
    parts = []
    for a, ph in enumerate(down):
        for b, pw in enumerate(across):
            if (a, b) not in kernels:  # no tap lands on this phase: its pixels get no gradient
                parts.append(_zeros_in_graph(grad_output, weight, (N, C, Mh, Mw)))
                continue
            g, pad = _shifted(grad_output, ph, pw)
            parts.append(_conv(g, kernels[a, b], pad, (ph.dilation, pw.dilation), groups))
    if len(parts) == 1:
        return parts[0]
    sh, sw = stride  # interleave: phase (a, b) holds the pixels (m*sh + a, q*sw + b)
    grid = torch.stack(parts).view(sh, sw, N, C, Mh, Mw).permute(2, 3, 4, 0, 5, 1)
    return grid.reshape(N, C, Mh * sh, Mw * sw)[:, :, :H, :W]


# ---------------------------------------------------------------- dL/dK: a correlation of x with Ybar


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """``dL/dK`` of ``conv2d(input, K, ...)`` given ``grad_output = dL/dY``: ``Ybar @ cols^T``, one product per group.

    Same arguments as ``torch.nn.grad.conv2d_weight`` (``weight_size``: the shape of ``K``, O x C/g x kh x kw;
    ``padding`` may also be 'same', 'valid' or a :class:`convlib.args.Sides`). ``cols`` is the patch matrix of
    the whole batch, C*kh*kw x N*L (the batch beside the positions), ``Ybar`` is ``dL/dY`` as O x N*L: the inner
    dimension of the product runs over every image and output position. Differentiable.
    """
    O, Cg, kh, kw = weight_size
    N, C = input.shape[:2]
    g = groups
    stride, dilation = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    sides = padding if isinstance(padding, Sides) else padding_sides(padding, (kh, kw), dilation, stride)
    xp = (F.pad(input, sides.lrtb) if any(sides) else input).contiguous()
    view = patch_view(xp, (kh, kw), stride, dilation)  # N x C x kh x kw x Ho x Wo, no copy
    Ho, Wo = view.shape[4:]
    cols = view.permute(1, 2, 3, 0, 4, 5).reshape(g, Cg * kh * kw, N * Ho * Wo)  # the copy
    Ybar = grad_output.transpose(0, 1).reshape(g, O // g, N * Ho * Wo)
    return torch.matmul(Ybar, cols.transpose(1, 2)).reshape(O, Cg, kh, kw)


# ---------------------------------------------------------------- kept kernels and vmap


class KernelCache:
    """Kernels derived from one weight (the backward's phase kernels), kept until the weight changes.

    Valid while the weight is the same tensor with the same ``_version`` (every in-place change, an
    optimiser step or ``load_state_dict``, increments it) and the same storage, dtype and device. Not used
    while autograd records (``create_graph=True``): kernels kept from an earlier call are cut off from the
    weight's graph, so then they are derived afresh.
    """

    def __init__(self):
        self._weight, self._stamp, self._kernels = None, None, {}

    def __getstate__(self):  # pickled (torch.save of a whole layer) empty: the kernels are derived again
        return {}

    def __setstate__(self, state):
        self.__init__()

    def get(self, weight: torch.Tensor, key, make):
        if torch.is_grad_enabled() and weight.requires_grad:
            return make(weight)
        stamp = (weight._version, weight.data_ptr(), weight.dtype, weight.device, tuple(weight.shape))
        if self._weight is None or self._weight() is not weight or self._stamp != stamp:
            self._weight, self._stamp, self._kernels = weakref.ref(weight), stamp, {}
        if key not in self._kernels:
            self._kernels[key] = make(weight.detach())
        return self._kernels[key]


def vmap_rule(function, info, in_dims, x, weight, bias, stride, padding, dilation, groups):
    """Apply ``function`` (a convolution autograd.Function) to a vmapped batch in one call.

    Only ``x`` vmapped: the vmapped axis joins the batch (an unbatched sample becomes one image of it).
    ``weight`` or ``bias`` vmapped too: the vmapped axis joins the channels and the groups, so that every
    sample's input meets only its own weight.
    """
    B = info.batch_size
    x_d, w_d, b_d = in_dims[:3]

    def front(t, d):  # the vmapped axis first (expanded if the argument is not vmapped)
        return t.movedim(d, 0) if d is not None else t.expand(B, *t.shape)

    X, Wt = front(x, x_d), front(weight, w_d)
    bs = None if bias is None else front(bias, b_d)
    conv2d_args(X[0], Wt[0], None if bs is None else bs[0], stride, padding, dilation, groups)  # errors per sample
    unbatched = X.dim() == 4
    if w_d is None and b_d is None:  # one weight for all: one bigger batch
        y = function.apply(X if unbatched else X.flatten(0, 1), weight, bias, stride, padding, dilation, groups)
        return (y if unbatched else y.unflatten(0, (B, X.shape[1]))), 0
    O = Wt.shape[1]
    Xs = X if unbatched else X.movedim(0, 1)  # (N x) B x C x H x W
    bs = None if bs is None else bs.flatten()
    y = function.apply(Xs.flatten(-4, -3), Wt.flatten(0, 1), bs, stride, padding, dilation, groups * B)
    y = y.unflatten(-3, (B, O))  # (N x) B x O x Ho x Wo
    return (y if unbatched else y.movedim(1, 0)), 0
