"""What oneDNN runs for one ``F.conv2d`` call, read from its own log (``ONEDNN_VERBOSE=1``).

oneDNN prints one line per primitive it executes: its kind (``convolution``, ``reorder``), the implementation
(``jit:avx512_core``, ``brg_conv_fwd:avx512_core``, ...), the memory formats of its operands (``abcd`` is NCHW,
``acdb`` channels-last, ``aBcd16b`` the blocked layout with the channels in groups of 16) and its time in
milliseconds. The variable must be set before oneDNN starts, so the call runs in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ["onednn_primitives"]

_CHILD = """
import json, sys, torch, torch.nn.functional as F
N, C, H, O, k, padding, stride, groups, channels_last = json.loads(sys.argv[1])
torch.set_num_threads(1)
x = torch.randn(N, C, H, H)
if channels_last:
    x = x.to(memory_format=torch.channels_last)
w = torch.randn(O, C // groups, k, k)
F.conv2d(x, w, stride=stride, padding=padding, groups=groups)  # the first call: oneDNN builds its kernels
print("--- second call ---", flush=True)
F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
"""


def _formats(field: str) -> list[str]:
    """``src:f32::blocked:abcd::f0 dst:f32::blocked:aBcd16b::f0`` -> ``['src abcd', 'dst aBcd16b']``."""
    out = []
    for part in field.split():
        name, *rest = part.split(":")
        if "blocked" in rest:
            out.append(f"{name} {rest[rest.index('blocked') + 1]}")
    return out


def onednn_primitives(layer, channels_last: bool = False, timeout: float = 120) -> list[dict]:
    """The primitives oneDNN executes for the second ``F.conv2d`` call on ``layer``'s shape (one thread, float32,
    no bias), in order: ``{"kind", "implementation", "formats", "ms"}`` each; ``[]`` where PyTorch does not call
    oneDNN for this shape (e.g. a 1x1 convolution)."""
    args = [layer.N, layer.C, layer.H, layer.O, layer.k, layer.padding, layer.stride, layer.groups, channels_last]
    env = dict(os.environ, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"the oneDNN probe failed: {done.stderr.strip()[-500:]}")
    second = done.stdout.split("--- second call ---", 1)[-1]
    rows = []
    for line in second.splitlines():
        f = line.split(",")
        if len(f) > 10 and f[0] == "onednn_verbose" and f[2] == "primitive" and f[3] == "exec":
            rows.append({"kind": f[5], "implementation": f[6], "formats": _formats(f[8]), "ms": float(f[-1])})
    return rows
