"""Work buffers kept between calls: one cache per thread, safe in and out of ``torch.inference_mode``."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

__all__ = ["buffer", "cached", "clear_workspaces", "WORKSPACES"]

_local = threading.local()
WORKSPACES = 8  # plans whose workspace each thread keeps


def buffer(*size, dtype, device, zero=True) -> torch.Tensor:
    """A work buffer that outlives the call: an ordinary tensor even when made under ``torch.inference_mode``.

    (A tensor made in inference mode cannot be updated in place outside it; an ordinary one can be updated
    inside it. So buffers are always made ordinary.)
    """
    with torch.inference_mode(False):
        make = torch.zeros if zero else torch.empty
        return make(*size, dtype=dtype, device=device)


def _cache() -> OrderedDict:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    return cache


def cached(key, build):
    """The workspace stored under ``key`` in this thread, made by ``build()`` the first time (least recently used
    ones dropped beyond :data:`WORKSPACES`)."""
    cache = _cache()
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = build()
        while len(cache) > WORKSPACES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return ws


def clear_workspaces() -> None:
    """Free the buffers ``conv2d`` keeps between calls (in this thread)."""
    _local.cache = OrderedDict()
