"""The fast path's plan for a benchmark layer, in one place (the plan itself is :mod:`convlib.fast`'s)."""

from __future__ import annotations

from .. import fast
from .suite import Layer

__all__ = ["plan_for", "workspace_nbytes", "describe"]

describe = fast.describe
workspace_nbytes = fast.workspace_nbytes


def plan_for(layer: Layer, itemsize: int = 4, **options):
    """``convlib.fast.conv2d_plan`` for a layer (``options``: ``mode``, ``layout``, ``route``, ``block_bytes``)."""
    s, p = (layer.stride,) * 2, (layer.padding,) * 2
    args = (layer.N, layer.C, layer.H, layer.H, layer.O, layer.k, layer.k, s, p, (1, 1), layer.groups)
    return fast.conv2d_plan(*args, itemsize=itemsize, **options)
