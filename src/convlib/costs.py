"""The price of the fast algorithms, measured: their float32 error and their time.

**Error.** For a float32 result ``y`` and the reference ``y64`` (``F.conv2d`` of the *same* float32 numbers,
computed in float64), the error of each output is ``|y - y64| / rms(y64)``: the error in units of the output's
typical size (its root mean square over the whole tensor). :func:`normalized_error` gives its maximum and
median; :func:`accuracy_table` measures every method on random and on CIFAR-10 inputs, :func:`error_by_tile`
Winograd's error as the tile grows (with :func:`convlib.winograd.transform_growth`, why libraries stop at
F(4x4, 3x3) or F(6x6, 3x3)).

**Time.** :func:`time_table` times ``conv2d_fft`` and ``conv2d_winograd`` (kernel transformed in every call,
and kept in a :class:`convlib.KernelCache`) against ``F.conv2d`` and ``convlib.conv2d`` on the layers where
they apply, float32, one thread, the methods called round by round in a new random order each round (so
that a slow spell of a shared machine hits all alike), and reports the median with the minimum and maximum
and the ratio of medians to ``F.conv2d``, with the CPU model (``lscpu``) and the load average.
"""

from __future__ import annotations

import functools
import math
import os
import random
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

from .bench.suite import Layer
from .fast import conv2d
from .fft import conv2d_fft
from .transformed import KernelCache
from .winograd import conv2d_winograd

__all__ = [
    "normalized_error",
    "conv_methods",
    "accuracy_cases",
    "accuracy_table",
    "error_by_tile",
    "TIME_LAYERS",
    "time_table",
    "block_sweep",
    "cpu_model",
    "format_table",
]


# ---------------------------------------------------------------- error


def normalized_error(y: torch.Tensor, reference: torch.Tensor) -> dict:
    """Max and median over the outputs of ``|y - reference| / rms(reference)`` (computed in float64)."""
    ref = reference.double()
    scale = float(ref.pow(2).mean().sqrt())
    if scale == 0:
        raise ValueError("the reference output is all zeros: its scale (RMS) is 0")
    e = (y.double() - ref).abs().flatten() / scale
    return {"max": float(e.max()), "median": float(e.median())}


def conv_methods(x: torch.Tensor, weight: torch.Tensor, **kw) -> dict:
    """The methods that apply to a layer, by name: ``name -> f(x, weight, **kw)``.

    Always ``F.conv2d``, ``convlib.conv2d`` and ``FFT``; ``Winograd F(mxm, 3x3)`` for m = 2, 4, 6 on 3x3
    kernels with stride 1 and dilation 1.
    """
    out = {"F.conv2d": F.conv2d, "convlib.conv2d": conv2d, "FFT": conv2d_fft}
    if (
        tuple(weight.shape[2:]) == (3, 3)
        and kw.get("stride", 1) in (1, (1, 1))
        and kw.get("dilation", 1) in (1, (1, 1))
    ):
        for m in (2, 4, 6):
            out[f"Winograd F({m}x{m}, 3x3)"] = functools.partial(conv2d_winograd, m=m)
    return out


def _init_weight(O, C, k, gen):
    """``nn.Conv2d``'s default initialisation (uniform, bound 1/sqrt(C k^2)), from a seeded generator."""
    bound = 1 / math.sqrt(C * k * k)
    return (torch.rand(O, C, k, k, generator=gen) * 2 - 1) * bound


def accuracy_cases(n_images: int = 64, seed: int = 0, images: torch.Tensor | None = None, real: bool = True) -> dict:
    """The inputs of :func:`accuracy_table`: name -> (x, weight, kwargs), float32, 3x3 'same' layers.

    ``random``: 8 x 64 x 32 x 32 standard normal input, 64 filters. ``CIFAR-10 layer 1``: the first
    ``n_images`` CIFAR-10 test images (normalised) through 32 filters; ``CIFAR-10 layer 2``: that layer's
    ReLU activations through 32 more filters (real activations: non-negative, correlated). Weights as
    ``nn.Conv2d`` initialises them. ``images``: N x 3 x 32 x 32 to use instead of loading CIFAR-10 (needs
    ``convlib.data``; set ``CONVLIB_DATA``). ``real=False``: the random case alone (no CIFAR-10 needed).
    """
    gen = torch.Generator().manual_seed(seed)
    cases = {"random": (torch.randn(8, 64, 32, 32, generator=gen), _init_weight(64, 64, 3, gen), dict(padding=1))}
    if not real:
        return cases
    if images is None:
        from .data import cifar10_tensors

        images = cifar10_tensors()[0][:n_images]
    w1, w2 = _init_weight(32, 3, 3, gen), _init_weight(32, 32, 3, gen)
    cases["CIFAR-10 layer 1"] = (images.float().contiguous(), w1, dict(padding=1))
    cases["CIFAR-10 layer 2"] = (F.conv2d(images.float(), w1, padding=1).relu_(), w2, dict(padding=1))
    return cases


def accuracy_table(cases: dict | None = None) -> list[dict]:
    """The float32 error of every method on every case (:func:`accuracy_cases` by default).

    Rows: ``input``, ``method``, ``max``, ``median`` (:func:`normalized_error` against ``F.conv2d`` in
    float64 on the same float32 numbers).
    """
    cases = accuracy_cases() if cases is None else cases
    rows = []
    for name, (x, weight, kw) in cases.items():
        reference = F.conv2d(x.double(), weight.double(), **kw)
        for method, f in conv_methods(x, weight, **kw).items():
            rows.append({"input": name, "method": method, **normalized_error(f(x, weight, **kw), reference)})
    return rows


def error_by_tile(ms=(2, 3, 4, 5, 6, 7, 8), seed: int = 0, case: tuple | None = None) -> list[dict]:
    """Winograd F(m x m, 3 x 3)'s float32 error for each tile size m (the random case by default).

    Rows: ``m``, ``max``, ``median`` (:func:`normalized_error`). Beside
    :func:`convlib.winograd.transform_growth`: the error follows the transforms' growth.
    """
    if case is None:
        gen = torch.Generator().manual_seed(seed)
        case = (torch.randn(8, 64, 32, 32, generator=gen), _init_weight(64, 64, 3, gen), dict(padding=1))
    x, weight, kw = case
    reference = F.conv2d(x.double(), weight.double(), **kw)
    return [{"m": m, **normalized_error(conv2d_winograd(x, weight, **kw, m=m), reference)} for m in ms]


# ---------------------------------------------------------------- time


#: Where the fast algorithms apply: three wide 3x3 layers (ResNet stages), a large-kernel layer, a small 5x5 one
TIME_LAYERS = (
    Layer(8, 128, 28, 128, 3, 1),
    Layer(8, 64, 56, 64, 3, 1),
    Layer(1, 256, 14, 256, 3, 1),
    Layer(16, 48, 20, 48, 7, 3),
    Layer(32, 3, 32, 32, 5, 0),
)


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it (``/proc/cpuinfo`` if ``lscpu`` is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _timed_methods(x, w, kw) -> dict:
    """``name -> zero-argument callable`` for one layer: each fast method transformed per call and cached."""
    fns = {}
    for name, f in conv_methods(x, w, **kw).items():
        fns[name] = functools.partial(f, x, w, **kw)
        if name.startswith(("FFT", "Winograd")):
            fns[name + ", cached"] = functools.partial(f, x, w, **kw, cache=KernelCache())
    return fns


def _interleaved(fns: dict, repeat: int, warmup: int, seed: int) -> dict:
    """Per function, the wall-clock and this thread's CPU seconds of each call: rounds of one call each, in a
    new random order every round. CPU time leaves out the time other processes hold the core (it still
    counts what they do to the caches): on a shared machine it is the steadier of the two."""
    order, names = random.Random(seed), list(fns)
    times = {name: {"wall": [], "cpu": []} for name in names}
    for _ in range(warmup):
        for f in fns.values():
            f()
    for _ in range(repeat):
        order.shuffle(names)
        for name in names:
            c0, t0 = time.thread_time(), time.perf_counter()
            fns[name]()
            t1, c1 = time.perf_counter(), time.thread_time()
            times[name]["wall"].append(t1 - t0)
            times[name]["cpu"].append(c1 - c0)
    return times


def _rows(layer: Layer, times: dict, errors: dict) -> list[dict]:
    """One row per method: wall-clock median, min, max (ms), CPU-time median, and their ratios to F.conv2d."""
    base = times["F.conv2d"]
    med = lambda t, k="wall": statistics.median(t[k])  # noqa: E731
    return [
        dict(
            layer=layer.label,
            method=name,
            median_ms=1e3 * med(t),
            min_ms=1e3 * min(t["wall"]),
            max_ms=1e3 * max(t["wall"]),
            cpu_ms=1e3 * med(t, "cpu"),
            ratio=med(t) / med(base),
            ratio_min=min(t["wall"]) / min(base["wall"]),
            cpu_ratio=med(t, "cpu") / med(base, "cpu"),
            max_error=errors[name],
        )
        for name, t in times.items()
    ]


def time_table(layers=TIME_LAYERS, repeat: int = 11, warmup: int = 2, threads: int = 1, seed: int = 0) -> dict:
    """Time every applicable method on every layer; returns ``{"machine": {...}, "rows": [...]}``.

    Each row: ``layer``, ``method``; wall-clock ``median_ms``, ``min_ms``, ``max_ms``; ``cpu_ms``, the median
    CPU time of the calling thread; ``ratio`` (median over ``F.conv2d``'s median in the same run; below 1 is
    faster), ``ratio_min`` (the same for the fastest calls), ``cpu_ratio`` (the same for CPU time: the most
    trustworthy on a busy machine); ``max_error`` (:func:`normalized_error`'s max against ``F.conv2d`` in
    float64: the timed call computes the layer). ``machine``: CPU model (``lscpu``), threads, torch version,
    load average before and after. On a busy machine compare ratios, and re-run on a quiet one before quoting
    absolute times.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    machine = {"cpu": cpu_model(), "threads": threads, "torch": torch.__version__, "load_before": os.getloadavg()}
    rows = []
    try:
        for layer in layers:
            x, w, _, kw = layer.tensors(seed, bias=False)
            reference = F.conv2d(x.double(), w.double(), **kw)
            fns = _timed_methods(x, w, kw)
            times = _interleaved(fns, repeat, warmup, seed)
            errors = {name: normalized_error(f(), reference)["max"] for name, f in fns.items()}
            rows += _rows(layer, times, errors)
    finally:
        torch.set_num_threads(previous)
    machine["load_after"] = os.getloadavg()
    return {"machine": machine, "rows": rows}


def block_sweep(layers=TIME_LAYERS[:2], sizes_mib=(1, 2, 4, 8, 16), m: int = 4, repeat: int = 11, seed: int = 0):
    """Winograd's block size, measured: ``conv2d_winograd`` (kernel cached) with blocks of each size in MiB,
    interleaved with ``F.conv2d`` on each layer, one thread. Rows: ``layer``, ``block_mib``, ``ratio`` and
    ``cpu_ratio`` (median wall-clock and CPU time over F.conv2d's), ``median_ms``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for layer in layers:
            x, w, _, kw = layer.tensors(seed, bias=False)
            cache = KernelCache()
            fns = {"F.conv2d": functools.partial(F.conv2d, x, w, **kw)}
            for s in sizes_mib:
                fns[s] = functools.partial(conv2d_winograd, x, w, **kw, m=m, cache=cache, block_bytes=int(s * 2**20))
            times = _interleaved(fns, repeat, 2, seed)
            base = times.pop("F.conv2d")
            for s, t in times.items():
                wall, cpu = (statistics.median(t[k]) / statistics.median(base[k]) for k in ("wall", "cpu"))
                rows.append(
                    dict(
                        layer=layer.label,
                        block_mib=s,
                        ratio=wall,
                        cpu_ratio=cpu,
                        median_ms=1e3 * statistics.median(t["wall"]),
                    )
                )
    finally:
        torch.set_num_threads(previous)
    return rows


def format_table(rows: list[dict], columns=None) -> str:
    """Rows of dicts as a Markdown table (floats in 3 significant digits)."""
    columns = columns or list(rows[0])
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
