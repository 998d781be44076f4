"""``conv2d``: the fast path's entry point, and what the benchmark may ask of a plan."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..args import conv2d_args, padding_sides
from . import choose
from .functional import differentiable, is_transformed
from .plan import Plan, Shape, build_plan, default_block_bytes
from .registry import FORMULATIONS
from .tuning import runner, tuned_plan
from .workspace import buffer

__all__ = ["conv2d", "plan_for", "describe", "workspace_nbytes"]


def _needs_functional(*tensors) -> bool:
    """Autograd records (an input requires grad), or a ``torch.func`` transform wraps an input."""
    if any(is_transformed(t) for t in tensors):
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _args(x, weight, bias, stride, padding, dilation, groups):
    """``args.conv2d_args``; inside ``torch.func`` transforms, which cannot tell a tensor's memory format, the
    checks run on stand-ins of the same shapes and dtypes (on the 'meta' device) and the padding on the input."""
    if not any(is_transformed(t) for t in (x, weight, bias)):
        return conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    stand_in = [
        t if not isinstance(t, torch.Tensor) else torch.empty(t.shape, dtype=t.dtype, device="meta")
        for t in (x, weight, bias)
    ]
    a = conv2d_args(*stand_in, stride, padding, dilation, groups)
    xb = x.unsqueeze(0) if a.unbatched else x
    if a.x.shape != xb.shape:  # an asymmetric 'same' padding, applied to the stand-in
        xb = F.pad(xb, padding_sides(padding, a.kernel_size, a.dilation, a.stride).lrtb)
    return a._replace(x=xb, weight=weight, bias=bias)


def _plan_for(shape: Shape, a, plan, options) -> Plan:
    """The plan given, or the one the forced options and the rules give, or the measured one."""
    x = a.x
    if plan is not None:
        if not isinstance(plan, Plan):
            raise TypeError(
                f"plan must be a convlib.fast.Plan (from conv2d_plan or candidates), got {type(plan).__name__}"
            )
        if plan.shape != shape:
            raise ValueError(f"plan is for shape {tuple(plan.shape)}, but the arguments have shape {tuple(shape)}")
        return plan
    measurable = x.device.type in ("cpu", "cuda")  # not 'meta' and the like: nothing to time there
    if any(v is not None for v in options.values()) or not choose.settings.tune or not measurable:
        return choose.conv2d_plan(
            *shape, itemsize=x.element_size(), dtype=x.dtype, device=x.device, channels_last=a.channels_last, **options
        )
    return tuned_plan(shape, x, a.weight.contiguous(), a.bias, a.channels_last)


def conv2d(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    *,
    plan=None,
    mode=None,
    layout=None,
    route=None,
    block_bytes=None,
):
    """2-D convolution from matrix products and data movement only, with the fastest plan measured here.

    Same arguments and result as ``torch.nn.functional.conv2d``: ``x`` is N x C x H x W (or unbatched
    C x H x W), ``weight`` O x C/groups x kh x kw, ``bias`` O entries or None; ``stride``, ``padding``,
    ``dilation`` an int or an (h, w) pair, ``padding`` also ``'valid'`` or ``'same'``. Returns a new tensor, N x O x
    Ho x Wo, channels-last if the input or the weight is (as PyTorch's).

    How: see the package docstring. The first call of a shape times every candidate plan (``fast.candidates``)
    and keeps the fastest (switch off with ``fast.settings.tune = False`` or ``CONVLIB_TUNE=0``: then the rules
    of ``fast.conv2d_plan`` decide). Keyword-only: ``plan`` (a :class:`Plan` of this shape) or any of ``mode``
    (a formulation: ``fast.modes()``), ``layout``, ``route`` (a GEMM route: ``fast.ROUTES``) and ``block_bytes``
    force the choice. With autograd recording, or inside ``torch.func`` transforms (``vmap``), it runs the tap
    formulation with out-of-place operations, which they can follow.
    """
    a = _args(x, weight, bias, stride, padding, dilation, groups)
    xb, w = a.x, a.weight
    N, C, H, W = xb.shape
    O, _, kh, kw = w.shape
    shape = Shape(N, C, H, W, O, kh, kw, a.stride, a.padding, a.dilation, a.groups)
    options = dict(mode=mode, layout=layout, route=route, block_bytes=block_bytes)
    finish = a._replace(bias=None).finish  # channels-last and unbatched as PyTorch returns them; bias added here
    if _needs_functional(xb, w, a.bias):
        layout = "phases" if a.stride != (1, 1) else "canvas"
        p = build_plan(shape, "tap", layout, "mm", default_block_bytes("tap", layout), xb.element_size())
        return finish(differentiable(xb, w, a.bias, p))
    if N == 0:
        choose._check_names(mode, layout, route, block_bytes)
        return finish(xb.new_zeros(0, O, shape.Ho, shape.Wo))
    p = _plan_for(shape, a, plan, options)
    return finish(runner(p, xb.dtype, xb.device)(xb, w.contiguous(), a.bias, a.channels_last))


def describe(plan: Plan) -> str:
    """What a plan does, in one line: formulation, layout, GEMM route, blocks."""
    if plan.mode == "gemm1x1":
        return f"gemm1x1 via {plan.route}: one product per image"
    n = len(plan.blocks)
    blocks = f"{n} block{'s' if n != 1 else ''}"
    if plan.mode == "im2col_nhwc":
        rows = max(((b.n1 - b.n0) * (b.i1 - b.i0) * plan.Wo for b in plan.blocks), default=0)
        size = rows * plan.kh * plan.kw * plan.C * plan.itemsize / 2**20
        return f"im2col_nhwc via {plan.route}, {blocks} of up to {size:.1f} MiB of patches"
    if plan.mode not in ("tap", "full", "depthwise"):
        return f"{plan.mode}, {plan.layout}, via {plan.route}"
    via = "elementwise" if plan.route == "elementwise" else f"via {plan.route}"
    return f"{plan.mode}, {plan.layout}, {via}, {blocks}"


def workspace_nbytes(plan: Plan) -> int:
    """Bytes of the buffers ``conv2d`` keeps between calls for ``plan`` (canvas, blocks, patches, weights).

    Counted on PyTorch's 'meta' device (no memory is used), for an NCHW input.
    """
    dtype = choose._DTYPES.get(plan.itemsize, torch.float32)
    ws = FORMULATIONS[plan.mode].runner(plan, dtype, torch.device("meta"))
    kept = list(getattr(ws, "kept", ()))
    if plan.mode == "im2col_nhwc" and ws.canvas is None:
        kept.append(buffer(plan.N, ws.Hp, ws.Wp, plan.C, dtype=dtype, device="meta"))
    return sum(t.numel() * t.element_size() for t in kept)


def plan_for(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Plan:
    """The plan ``conv2d`` follows for these arguments (measuring the candidates first if it has not yet)."""
    a = conv2d_args(x, weight, bias, stride, padding, dilation, groups)
    N, C, H, W = a.x.shape
    O, _, kh, kw = a.weight.shape
    shape = Shape(N, C, H, W, O, kh, kw, a.stride, a.padding, a.dilation, a.groups)
    return _plan_for(shape, a, None, dict(mode=None, layout=None, route=None, block_bytes=None))
