"""What PyTorch runs for a call: the ATen operators its profiler records, with parents, shapes and allocations.

Chapter 2 uses it to show that on the CPU, in float64, ``F.conv2d`` is im2col and a matrix product: the operator
``aten::_slow_conv2d_forward`` allocates a buffer of exactly the size of the batch's patch matrix.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

from torch.profiler import ProfilerActivity, profile

__all__ = ["Op", "operators"]


@dataclass(frozen=True)
class Op:
    """One operator call: its name, the name of the operator that called it, its input shapes, and the CPU memory
    it allocated itself (bytes, net of what it freed, as the profiler reports it)."""

    name: str
    parent: str | None
    input_shapes: list
    bytes: int


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ libraries log their start and stop there, past Python)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def operators(fn) -> list[Op]:
    """Run ``fn()`` once under ``torch.profiler`` (CPU activity, memory and shapes recorded) and return the ATen
    operators it called, in the order they started."""
    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
            fn()
        events = list(prof.events())
    return [
        Op(e.name, e.cpu_parent.name if e.cpu_parent is not None else None, e.input_shapes, e.cpu_memory_usage)
        for e in events
        if e.name.startswith("aten::")
    ]
