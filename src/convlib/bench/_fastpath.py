"""What the benchmark needs to know about ``convlib.conv2d``'s plan for a layer, in one place.

Only public names of :mod:`convlib.fast` are used: ``conv2d_plan`` and the plan's attributes. The fast path
should provide ``workspace_nbytes(plan)`` and ``describe(plan)`` itself; until it does, the two functions below
compute them from the plan's public attributes (the test suite checks ``workspace_nbytes`` against the
workspace the fast path really allocates).
"""

from __future__ import annotations

from .. import fast
from .suite import Layer

__all__ = ["plan_for", "workspace_nbytes", "describe"]


def plan_for(layer: Layer, itemsize: int = 4, **options):
    """``convlib.fast.conv2d_plan`` for a layer (``options``: ``mode``, ``layout``, ``block_bytes``)."""
    s, p = (layer.stride,) * 2, (layer.padding,) * 2
    args = (layer.N, layer.C, layer.H, layer.H, layer.O, layer.k, layer.k, s, p, (1, 1), layer.groups)
    return fast.conv2d_plan(*args, itemsize=itemsize, **options)


def workspace_nbytes(plan, itemsize: int = 4) -> int:
    """Bytes ``convlib.conv2d`` keeps between calls for a plan: canvas, block buffer, patch block, weights.

    The fast path should provide this (as ``convlib.fast.workspace_nbytes``); computed here from the plan's
    public attributes, following the buffers its workspace allocates.
    """
    if plan.mode == "gemm1x1":
        return 0
    exact = plan.layout == "exact"
    patches = plan.mode == "full" and not exact  # the patch block has exactly Ho x Wo columns
    taps = plan.kh * plan.kw
    biggest = max((b[1] - b[0]) * ((b[3] - b[2]) * plan.Wo if patches else plan.block_cols(b)) for b in plan.blocks)
    n = 0
    if not exact and not plan.zero_copy:
        n += plan.N * plan.phases * plan.C * plan.canvas_len  # the canvas
    if not (exact or patches):
        n += biggest * plan.O  # the block buffer the products write before the copy-out
    if plan.mode == "tap":
        n += taps * plan.O * (plan.C // plan.groups)  # the weights, re-ordered per tap
    elif plan.mode == "depthwise":
        n += taps * plan.O
    elif plan.mode == "full":
        n += biggest * plan.C * taps  # the patch block
    return itemsize * n


def describe(plan) -> str:
    """What ``convlib.conv2d`` does for a plan, in words: formulation, layout, blocks.

    The fast path should provide this (as ``convlib.fast.describe``).
    """
    if plan.mode == "gemm1x1":
        return "gemm1x1: one product per image"
    n = len(plan.blocks)
    return f"{plan.mode}, {plan.layout}, {n} block{'s' if n > 1 else ''}"
