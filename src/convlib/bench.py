"""``python -m convlib.bench``: time every convolution method in convlib against ``F.conv2d``, and draw it.

What it measures, all in one run (so that every ratio compares numbers taken minutes apart on the same
machine, under the same load):

- the **sgemm ceiling**: the float32 rate of one large ``torch.mm`` (GFLOP/s), and a copy bandwidth (GB/s);
- the **suite** of layers from issue 8 (float32, no bias): every method on every layer, the methods
  interleaved round by round, a warm-up first, then the median of the repeats;
- an **ablation** of ``convlib.conv2d`` itself: each formulation, layout and block size on a few layers;
- three **sweeps** (image size, channels, kernel size) for the growth of the cost, with log-log slopes;
- the **convolution matrix**: build time and bytes of ``conv_matrix`` (sparse CSR) against the widely shared
  dense loop construction (``conv_matrix_loops``);
- the **memory** of each method: the bytes of the intermediates it materialises (im2col's patch matrix, the
  Toeplitz matrix, the shifted method's buffers, ``convlib.conv2d``'s canvas and block buffers).

The machine (CPU, caches, torch/MKL/oneDNN versions, thread count, load average before and after) is stored
with the numbers in ``results.json`` (plus ``suite.csv``, ``sweeps.csv``, ``conv_matrix.csv``) and the figures
(``*.png``) in the output folder, ``chapters/bench/`` by default: the last full run is what chapter 6 shows.

    python -m convlib.bench                   # the full run (a few minutes), into chapters/bench/
    python -m convlib.bench --quick --out /tmp/b   # a small version (seconds)
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ._checks import out_size

__all__ = [
    "Layer",
    "SUITE",
    "METHODS",
    "machine_info",
    "sgemm_rate",
    "copy_bandwidth",
    "time_interleaved",
    "method_bytes",
    "run",
    "write_results",
    "draw_figures",
    "loglog_slope",
    "geomean",
    "main",
]

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "chapters" / "bench"


@dataclass(frozen=True)
class Layer:
    """One convolution layer: input N x C x H x H, O filters k x k (float32, with bias)."""

    N: int
    C: int
    H: int
    O: int
    k: int
    padding: int = 0
    stride: int = 1
    groups: int = 1

    @property
    def name(self) -> str:
        extra = (f" s{self.stride}" if self.stride > 1 else "") + (f" g{self.groups}" if self.groups > 1 else "")
        return f"{self.N}x{self.C}x{self.H}² → {self.O}, {self.k}x{self.k} p{self.padding}{extra}"

    @property
    def out_hw(self) -> int:
        return out_size(self.H, self.k, self.stride, self.padding, 1)

    @property
    def macs(self) -> int:
        return self.N * self.O * self.out_hw**2 * (self.C // self.groups) * self.k**2

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def min_bytes(self, itemsize: int = 4) -> int:
        """Bytes a convolution must move at least: read input, weight, bias once, write the output once."""
        inp = self.N * self.C * self.H**2
        weight = self.O * (self.C // self.groups) * self.k**2 + self.O
        out = self.N * self.O * self.out_hw**2
        return itemsize * (inp + weight + out)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity (FLOPs per byte moved, at least): where the layer sits on the roofline."""
        return self.flops / self.min_bytes()

    def tensors(self, seed: int = 0, dtype=torch.float32, device="cpu"):
        """Random input and weight (and no bias: the suite times the convolution itself, F.conv2d's default)."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.N, self.C, self.H, self.H, generator=g, dtype=dtype)
        w = torch.randn(self.O, self.C // self.groups, self.k, self.k, generator=g, dtype=dtype)
        kw = dict(stride=self.stride, padding=self.padding, dilation=1, groups=self.groups)
        return x.to(device), w.to(device), None, kw


#: The layers of issue 8: (N, C, H=W, O, k, padding), stride 1 unless noted; float32, one thread.
SUITE = [
    Layer(32, 3, 32, 32, 5, 0),  # a first layer on CIFAR-10 batches
    Layer(8, 64, 56, 64, 3, 1),  # ResNet stage 1
    Layer(8, 128, 28, 128, 3, 1),  # ResNet stage 2
    Layer(1, 256, 14, 256, 3, 1),  # ResNet stage 3, one image
    Layer(64, 16, 16, 32, 3, 1),  # a small CIFAR network
    Layer(8, 64, 56, 128, 1, 0),  # 1x1 (pointwise)
    Layer(8, 64, 56, 64, 3, 1, stride=2),  # stride 2 (down-sampling)
    Layer(16, 32, 32, 32, 3, 1, groups=32),  # depthwise
]

#: The "big" layers of the target (>= 70% of the sgemm rate): the two with 925M multiply-adds, 4 to 200 times
#: more than any other layer of the suite.
BIG = [1, 2]

SWEEPS = {
    "image size H": [Layer(8, 32, h, 32, 3, 1) for h in (8, 16, 32, 64, 128)],
    "channels C = O": [Layer(8, c, 16, c, 3, 1) for c in (8, 16, 32, 64, 128, 256)],
    "kernel size k": [Layer(8, 32, 32, 32, k, k // 2) for k in (1, 3, 5, 7, 9)],
}
SWEEP_X = {"image size H": "H", "channels C = O": "C", "kernel size k": "k"}

#: convlib.conv2d's own choices, each timed against F.conv2d: (suite layer, label, keyword arguments)
ABLATION = [
    (1, {}),
    (1, {"mode": "tap", "layout": "exact", "block_bytes": 1 << 20}),
    (1, {"mode": "tap", "layout": "canvas"}),
    (1, {"mode": "full", "layout": "canvas"}),
    (0, {}),
    (0, {"mode": "full", "layout": "canvas", "block_bytes": 16 << 20}),
    (3, {}),
    (3, {"mode": "tap", "layout": "canvas"}),
    (4, {}),
    (4, {"mode": "tap", "layout": "canvas"}),
    (4, {"mode": "tap", "layout": "exact"}),
    (6, {}),
    (6, {"mode": "full"}),
    (7, {}),
    (7, {"block_bytes": 16 << 20}),
    (7, {"layout": "exact"}),
    (7, {"mode": "tap"}),
]


def describe_plan(layer: Layer, **options) -> str:
    """What ``convlib.conv2d`` does for a layer, in words: formulation, layout, blocks."""
    from . import fast

    plan = fast.conv2d_plan(
        layer.N,
        layer.C,
        layer.H,
        layer.H,
        layer.O,
        layer.k,
        layer.k,
        (layer.stride,) * 2,
        (layer.padding,) * 2,
        (1, 1),
        layer.groups,
        **options,
    )
    if plan.mode == "gemm1x1":
        return "gemm1x1: one product per image"
    n = len(plan.blocks)
    return f"{plan.mode}, {plan.layout}, {n} block{'s' if n > 1 else ''}"


# the quick version (chapter 6 runs it inline): small layers, few repeats
QUICK_SUITE = [0, 4, 7]
QUICK_SWEEPS = {
    "image size H": [Layer(4, 16, h, 16, 3, 1) for h in (8, 16, 32, 64)],
}

# methods too slow or too large for some shapes
NAIVE_MAX_STEPS = 20_000  # Python steps of conv2d_naive: g * Ho * Wo * kh * kw
TOEPLITZ_MAX_NNZ = 16_000_000  # non-zeros of the convolution matrix (16M: about 128 MB as CSR)


def _methods():
    import convlib

    return {
        "naive loops": convlib.conv2d_naive,
        "im2col (NCHW)": convlib.conv2d_im2col,
        "shifted": convlib.conv2d_shifted,
        "Toeplitz (sparse)": convlib.conv2d_toeplitz,
        "convlib.conv2d": convlib.conv2d,
        "F.conv2d": F.conv2d,
    }


#: the methods, slowest first
METHODS = ("naive loops", "im2col (NCHW)", "shifted", "Toeplitz (sparse)", "convlib.conv2d", "F.conv2d")

#: one colour per method (convlib.plot's palette for the roles; PyTorch itself in near-black)
METHOD_COLORS = {
    "naive loops": "#8D69B8",
    "im2col (NCHW)": "#3B75AF",
    "shifted": "#EF8636",
    "Toeplitz (sparse)": "#C53A32",
    "convlib.conv2d": "#519E3E",
    "F.conv2d": "#333333",
}


def toeplitz_nnz(layer: Layer) -> int:
    """Non-zeros of the convolution matrix M (taps on the zero padding have no entry)."""
    Ho, k, p, s = layer.out_hw, layer.k, layer.padding, layer.stride
    rows = [sum(1 for u in range(k) if 0 <= i * s + u - p < layer.H) for i in range(Ho)]
    per_channel_pair = sum(rows) ** 2  # (taps inside, summed over output rows) x (same for columns)
    return layer.O * (layer.C // layer.groups) * per_channel_pair


def naive_steps(layer: Layer) -> int:
    return layer.groups * layer.out_hw**2 * layer.k**2


def skip_reason(method: str, layer: Layer) -> str | None:
    """Why a method is not timed on a layer (None: it is)."""
    if method == "naive loops" and naive_steps(layer) > NAIVE_MAX_STEPS:
        return f"{naive_steps(layer):,} Python steps"
    if method == "Toeplitz (sparse)" and toeplitz_nnz(layer) > TOEPLITZ_MAX_NNZ:
        return f"M would have {toeplitz_nnz(layer) / 1e6:.0f}M non-zeros"
    return None


def method_bytes(method: str, layer: Layer, itemsize: int = 4) -> int | None:
    """Bytes of the intermediates a method materialises for a layer (the output itself not counted).

    naive: the padded input. im2col: the padded input and the patch matrix (N x C*kh*kw x Ho*Wo).
    shifted: its channels-last padded input, its accumulator and one shifted copy. Toeplitz: the sparse CSR
    matrix M (values + int32 column indices + row pointers). convlib.conv2d: its canvas, block buffers,
    patch block and re-ordered weights, read off the workspace it keeps. F.conv2d: not visible from
    Python (oneDNN's reorders and scratchpad), so None.
    """
    N, C, H, O, k, p, g = layer.N, layer.C, layer.H, layer.O, layer.k, layer.padding, layer.groups
    Hp, L = H + 2 * p, layer.out_hw**2
    padded = N * C * Hp * Hp
    if method == "naive loops":
        return itemsize * padded
    if method == "im2col (NCHW)":
        return itemsize * (padded + N * C * k * k * L)
    if method == "shifted":
        return itemsize * (padded + N * L * O + N * L * (C // g))
    if method == "Toeplitz (sparse)":
        nnz = toeplitz_nnz(layer)
        return nnz * (itemsize + 4) + 4 * (O * L + 1)
    if method == "convlib.conv2d":
        return fast_workspace_bytes(layer, itemsize)
    return None


def fast_workspace_bytes(layer: Layer, itemsize: int = 4) -> int:
    """The bytes ``convlib.conv2d`` keeps for this layer: canvas, block buffers, patch block, weights."""
    from . import fast

    plan = fast.conv2d_plan(
        layer.N,
        layer.C,
        layer.H,
        layer.H,
        layer.O,
        layer.k,
        layer.k,
        (layer.stride,) * 2,
        (layer.padding,) * 2,
        (1, 1),
        layer.groups,
        itemsize=itemsize,
    )
    if plan.mode == "gemm1x1":
        return 0
    dtype = {4: torch.float32, 8: torch.float64}[itemsize]
    ws = fast._Workspace(plan, dtype, torch.device("cpu"))
    return ws.nbytes


# ---------------------------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> dict:
    out = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in sorted(base.glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            out[f"L{level}"] = size
    return out


def _lib_versions() -> dict:
    cfg = torch.__config__.show()
    out = {}
    for line in cfg.splitlines():
        line = line.strip(" -")
        if "Math Kernel Library Version" in line:
            out["MKL"] = line.split("Version", 1)[1].split("Product")[0].strip(" -")
        if "MKL-DNN" in line or line.startswith("oneDNN"):
            words = [w for w in line.split() if w.startswith("v") and w[1:2].isdigit()]
            out["oneDNN"] = words[0] if words else line
    return out


def machine_info(device="cpu") -> dict:
    """What the numbers were measured on: CPU, caches, cores, libraries, threads, load."""
    info = {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "caches": _caches(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **_lib_versions(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


# ---------------------------------------------------------------------------------------------- timing


def steady_allocator() -> str:
    """Keep freed memory in the process (glibc ``mallopt``), so that no method pays page faults for the
    fresh output tensor of every call while another reuses its memory: how large tensors are allocated must
    not decide a comparison. Returns what was done (stored with the results)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
        return "glibc mallopt: mmap threshold 256 MiB, trim threshold 1 GiB" if ok else "mallopt refused"
    except (OSError, AttributeError):
        return "default allocator (no glibc)"


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict, repeat: int, warmup: int = 2, device="cpu", seed: int = 0) -> dict:
    """Seconds per call of each function: ``warmup`` untimed rounds, then ``repeat`` timed rounds.

    The functions are called round by round, in a new random order each round, so that a slow spell of the
    machine, or what the previous call left in the caches, hits all of them alike. Returns, per name, the
    list of wall-clock times and of this thread's CPU times.
    """
    import random

    order = random.Random(seed)
    names = list(fns)
    out = {name: {"wall": [], "cpu": []} for name in fns}
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync(device)
    for _ in range(repeat):
        order.shuffle(names)
        for name in names:
            f = fns[name]
            c0, t0 = time.thread_time(), time.perf_counter()
            f()
            _sync(device)
            t1, c1 = time.perf_counter(), time.thread_time()
            out[name]["wall"].append(t1 - t0)
            out[name]["cpu"].append(c1 - c0)
    return out


def sgemm_rate(n: int = 2048, repeat: int = 7, device="cpu", dtype=torch.float32) -> float:
    """GFLOP/s of one n x n x n matrix product (``torch.mm``, preallocated output): the ceiling."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    c = torch.empty(n, n, dtype=dtype, device=device)
    t = time_interleaved({"mm": lambda: torch.mm(a, b, out=c)}, repeat, warmup=2, device=device)["mm"]["wall"]
    return 2 * n**3 / statistics.median(t) / 1e9


def copy_bandwidth(mbytes: int = 64, repeat: int = 7, device="cpu") -> float:
    """GB/s of copying a large float32 tensor (bytes read + bytes written): the memory slope of the roofline."""
    n = mbytes * 2**20 // 4
    a = torch.ones(n, device=device)
    b = torch.empty(n, device=device)
    t = time_interleaved({"copy": lambda: b.copy_(a)}, repeat, warmup=2, device=device)["copy"]["wall"]
    return 2 * 4 * n / statistics.median(t) / 1e9


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): the exponent b in y ~ x^b."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


# ---------------------------------------------------------------------------------------------- the run


def _time_layer(layer: Layer, repeat: int, naive_repeat: int, device, methods=None) -> list[dict]:
    fns_all = _methods()
    x, w, b, kw = layer.tensors(device=device)
    rows = []
    fns = {}
    for name in methods or METHODS:
        reason = skip_reason(name, layer)
        if str(device).startswith("cuda") and name == "naive loops":
            reason = reason or "not on the GPU"
        if reason is None and name != "naive loops":
            fns[name] = (lambda f: lambda: f(x, w, b, **kw))(fns_all[name])
        rows.append({"method": name, "skipped": reason})
    times = time_interleaved(fns, repeat, warmup=2, device=device)
    if (
        "naive loops" in (methods or METHODS)
        and skip_reason("naive loops", layer) is None
        and "cuda" not in str(device)
    ):
        times.update(
            time_interleaved(
                {"naive loops": lambda: fns_all["naive loops"](x, w, b, **kw)}, naive_repeat, warmup=0, device=device
            )
        )
    for row in rows:
        t = times.get(row["method"])
        row.update(
            layer=layer.name,
            N=layer.N,
            C=layer.C,
            H=layer.H,
            O=layer.O,
            k=layer.k,
            padding=layer.padding,
            stride=layer.stride,
            groups=layer.groups,
            flops=layer.flops,
            intensity=layer.intensity,
            bytes=method_bytes(row["method"], layer),
        )
        if t:
            row["median_s"] = statistics.median(t["wall"])
            row["cpu_median_s"] = statistics.median(t["cpu"])
            row["min_s"] = min(t["wall"])
            row["repeats"] = len(t["wall"])
            row["gflops"] = layer.flops / row["median_s"] / 1e9
    ref = {r["method"]: r for r in rows}.get("F.conv2d", {}).get("median_s")
    for row in rows:
        if ref and "median_s" in row:
            row["ratio_to_F"] = row["median_s"] / ref
    return rows


def _ablation(repeat) -> list[dict]:
    """convlib.conv2d with each of its formulations, layouts and block sizes forced, against F.conv2d."""
    from . import fast

    rows = []
    for index in dict.fromkeys(i for i, _ in ABLATION):
        layer = SUITE[index]
        x, w, b, kw = layer.tensors()
        variants = [
            (("default: " if not opts else "") + describe_plan(layer, **opts), opts)
            for i, opts in ABLATION
            if i == index
        ]
        fns = {"F.conv2d": lambda x=x, w=w, b=b, kw=kw: F.conv2d(x, w, b, **kw)}
        for label, opts in variants:
            fns[label] = lambda x=x, w=w, b=b, kw=kw, o=opts: fast.conv2d(x, w, b, **kw, **o)
        times = time_interleaved(fns, repeat, warmup=2)
        ref = statistics.median(times["F.conv2d"]["wall"])
        for label, opts in variants:
            med = statistics.median(times[label]["wall"])
            rows.append(
                {
                    "layer": layer.name,
                    "index": index,
                    "variant": label,
                    "options": json.dumps(opts),
                    "median_s": med,
                    "ratio_to_F": med / ref,
                    "gflops": layer.flops / med / 1e9,
                }
            )
    return rows


def _conv_matrix_rows(sizes, repeat, progress):
    import convlib

    rows = []
    for H in sizes:
        w = torch.randn(3, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        t = time_interleaved(
            {"sparse": lambda w=w, H=H: convlib.conv_matrix(w, (3, H, H), padding=1)}, repeat, warmup=1
        )
        M = convlib.conv_matrix(w, (3, H, H), padding=1)
        sparse_bytes = (
            M.values().numel() * M.values().element_size()
            + M.col_indices().numel() * M.col_indices().element_size()
            + M.crow_indices().numel() * M.crow_indices().element_size()
        )
        tl = time_interleaved(
            {"loops": lambda w=w, H=H: convlib.conv_matrix_loops(w, (3, H, H), padding=1)},
            max(1, repeat // 3),
            warmup=0,
        )
        D = convlib.conv_matrix_loops(w, (3, H, H), padding=1)
        assert torch.equal(M.to_dense(), D)  # the same matrix
        rows.append(
            {
                "H": H,
                "shape": list(D.shape),
                "nnz": M.values().numel(),
                "sparse_build_s": statistics.median(t["sparse"]["wall"]),
                "sparse_bytes": sparse_bytes,
                "loops_build_s": statistics.median(tl["loops"]["wall"]),
                "dense_bytes": D.numel() * D.element_size(),
            }
        )
        progress(1)
    return rows


def run(
    quick: bool = False, repeat: int | None = None, threads: int = 1, device="cpu", progress: bool = True, methods=None
) -> dict:
    """Run the benchmark and return everything as a dict (see the module docstring)."""
    torch.set_num_threads(threads)
    repeat = repeat or (5 if quick else 41)
    naive_repeat = 1 if quick else 3
    suite = [SUITE[i] for i in QUICK_SUITE] if quick else SUITE
    sweeps = QUICK_SWEEPS if quick else SWEEPS
    cm_sizes = [] if quick else [8, 12, 16, 24, 32]
    total = 3 + len(suite) + sum(len(v) for v in sweeps.values()) + len(cm_sizes) + (0 if quick else 1)
    bar = _bar(total, progress)
    t_start = time.perf_counter()
    info = machine_info(device)
    info["allocator"] = steady_allocator()
    bar.set_description("sgemm ceiling")
    gemm_start = sgemm_rate(1024 if quick else 2048, repeat=3 if quick else 15, device=device)
    bar.update(1)
    bw = copy_bandwidth(16 if quick else 64, repeat=3 if quick else 7, device=device)
    bar.update(1)
    suite_rows = []
    for layer in suite:
        bar.set_description(f"suite {layer.name}")
        suite_rows += [
            dict(r, index=SUITE.index(layer)) for r in _time_layer(layer, repeat, naive_repeat, device, methods)
        ]
        bar.update(1)
    sweep_rows = []
    for sweep, layers in sweeps.items():
        for layer in layers:
            bar.set_description(f"sweep {sweep} {layer.name}")
            sweep_rows += [
                dict(r, sweep=sweep, x=getattr(layer, SWEEP_X[sweep].split()[0]))
                for r in _time_layer(layer, max(3, repeat // 2), naive_repeat, device, methods)
            ]
            bar.update(1)
    abl_rows = []
    if not quick:
        bar.set_description("ablation")
        abl_rows = _ablation(repeat)
        bar.update(1)
    bar.set_description("conv_matrix")
    cm_rows = _conv_matrix_rows(cm_sizes, 5, bar.update) if cm_sizes else []
    # a second ceiling at the end: how much did the machine drift during the run?
    gemm_end = sgemm_rate(1024 if quick else 2048, repeat=3 if quick else 15, device=device)
    gemm = max(gemm_start, gemm_end)  # the ceiling: the better of the two (a busy spell only lowers a rate)
    bar.update(1)
    bar.close()
    try:
        info["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    info["duration_s"] = time.perf_counter() - t_start
    results = {
        "machine": info,
        "quick": quick,
        "repeat": repeat,
        "sgemm_gflops": gemm,
        "sgemm_gflops_start": gemm_start,
        "sgemm_gflops_end": gemm_end,
        "copy_gbs": bw,
        "suite": suite_rows,
        "sweeps": sweep_rows,
        "ablation": abl_rows,
        "conv_matrix": cm_rows,
    }
    results["summary"] = summarize(results)
    return results


def summarize(results: dict) -> dict:
    """The numbers the target is about: ratio convlib.conv2d / F.conv2d per layer, their geometric mean,
    the rate of each method as a fraction of the sgemm ceiling, and the fitted log-log slopes."""
    rows = results["suite"]
    ratios = {r["layer"]: r["ratio_to_F"] for r in rows if r["method"] == "convlib.conv2d" and "ratio_to_F" in r}
    out = {"ratios": ratios}
    if ratios:
        out["geomean_ratio"] = geomean(ratios.values())
        out["worst_ratio"] = max(ratios.values())
    ceiling = results["sgemm_gflops"]
    out["fraction_of_sgemm"] = {
        m: {r["layer"]: r["gflops"] / ceiling for r in rows if r["method"] == m and "gflops" in r} for m in METHODS
    }
    slopes = {}
    for sweep in dict.fromkeys(r["sweep"] for r in results["sweeps"]):
        slopes[sweep] = {}
        for m in METHODS:
            pts = [
                (r["x"], r["median_s"])
                for r in results["sweeps"]
                if r["sweep"] == sweep and r["method"] == m and "median_s" in r
            ]
            if len(pts) >= 3:
                slopes[sweep][m] = loglog_slope(*zip(*pts))
        pts = [(r["x"], r["flops"]) for r in results["sweeps"] if r["sweep"] == sweep and r["method"] == "F.conv2d"]
        slopes[sweep]["FLOPs"] = loglog_slope(*zip(*pts))
    out["slopes"] = slopes
    return out


class _NoBar:
    def update(self, n=1):
        pass

    def set_description(self, s):
        pass

    def close(self):
        pass


def _bar(total, progress):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------- output


def write_results(results: dict, out: Path) -> list[Path]:
    """``results.json`` (everything) and ``suite.csv``, ``sweeps.csv``, ``ablation.csv``, ``conv_matrix.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json"]
    paths[0].write_text(json.dumps(results, indent=1, default=float) + "\n")
    for name in ("suite", "sweeps", "ablation", "conv_matrix"):
        rows = results[name]
        if not rows:
            continue
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(out / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
        paths.append(out / f"{name}.csv")
    return paths


def _machine_line(results: dict) -> str:
    m = results["machine"]
    load = m.get("loadavg_start", [float("nan")])[0]
    return f"{m['cpu']}, {m['torch_threads']} thread(s), torch {m['torch']}, {m['date_utc']}, load {load:.2f}"


def draw_figures(results: dict, out: Path | None = None, show: bool = False, which=None) -> dict:
    """The benchmark's figures (``which``: names to draw, default all); saved as PNG into ``out`` if given.

    Returns {name: matplotlib Figure}: 'suite_gflops', 'roofline', 'sweeps', 'memory', 'conv_matrix'.
    """
    import matplotlib.pyplot as plt

    makers = {
        "suite_gflops": _fig_suite,
        "roofline": _fig_roofline,
        "sweeps": _fig_sweeps,
        "memory": _fig_memory,
        "conv_matrix": _fig_conv_matrix,
    }
    has = {"sweeps": bool(results["sweeps"]), "conv_matrix": bool(results["conv_matrix"])}
    figs = {
        name: make(results, plt)
        for name, make in makers.items()
        if (which is None or name in which) and has.get(name, True)
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name, fig in figs.items():
            fig.savefig(Path(out) / f"{name}.png", dpi=110, bbox_inches="tight")
    if not show:
        for fig in figs.values():
            plt.close(fig)
    return figs


def _layers(results):
    return list(dict.fromkeys(r["layer"] for r in results["suite"]))


def _fig_suite(results, plt):
    layers = _layers(results)
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(8, 0.6 * len(layers) + 2.2), sharey=True, gridspec_kw={"width_ratios": [3, 1.2]}
    )
    rows = results["suite"]
    n = len(METHODS)
    height = 0.8 / n
    for j, m in enumerate(METHODS):
        first = True
        for i, layer in enumerate(layers):
            r = next((r for r in rows if r["layer"] == layer and r["method"] == m), None)
            if r and "gflops" in r:
                ax.barh(
                    i + (j - n / 2 + 0.5) * height,
                    r["gflops"],
                    height,
                    color=METHOD_COLORS[m],
                    label=m if first else None,
                )
                first = False
    ax.axvline(results["sgemm_gflops"], color="black", ls="--", lw=1)
    ax.text(results["sgemm_gflops"], -0.6, "sgemm", va="bottom", ha="right", fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GFLOP/s (log scale; median of repeats)")
    ax.set_title("Every method on the suite, one thread", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.03))
    ratios = results["summary"]["ratios"]
    vals = [ratios.get(layer, float("nan")) for layer in layers]
    ax2.barh(range(len(layers)), vals, 0.6, color=METHOD_COLORS["convlib.conv2d"])
    ax2.axvline(1.0, color="black", lw=1)
    ax2.axvline(1.3, color="black", ls=":", lw=1)
    for i, v in enumerate(vals):
        ax2.text(v, i, f" {v:.2f}", va="center", fontsize=7)
    gm = results["summary"].get("geomean_ratio")
    ax2.set_title(f"time of convlib.conv2d / F.conv2d\n(geometric mean {gm:.2f})", fontsize=9)
    ax2.set_xlabel("time ratio (1 = as fast)")
    ax2.set_xlim(0, max(1.5, max(vals) * 1.3))
    fig.text(0.5, 0.005, _machine_line(results), fontsize=7, ha="center", va="bottom")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def _fig_roofline(results, plt):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    peak, bw = results["sgemm_gflops"], results["copy_gbs"]
    rows = [r for r in results["suite"] if "gflops" in r]
    ai = [r["intensity"] for r in rows]
    xs = [min(ai) / 4, max(ai) * 4]
    ridge = peak / bw
    grid = [xs[0], ridge, xs[1]]
    ax.plot(grid, [min(peak, a * bw) for a in grid], color="black", lw=1.5)
    ax.text(xs[1], peak * 1.08, f"sgemm {peak:.0f} GFLOP/s", ha="right", fontsize=8)
    ax.text(xs[0] * 1.2, xs[0] * 1.2 * bw * 1.3, f"copy {bw:.0f} GB/s", rotation=0, fontsize=8)
    for m in METHODS:
        pts = [(r["intensity"], r["gflops"]) for r in rows if r["method"] == m]
        if pts:
            ax.scatter(*zip(*pts), color=METHOD_COLORS[m], label=m, s=22, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity: FLOPs per byte of input + weight + output")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("Roofline: every layer of the suite, every method", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(_machine_line(results), fontsize=7, y=0.005, va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _fig_sweeps(results, plt):
    sweeps = list(dict.fromkeys(r["sweep"] for r in results["sweeps"]))
    fig, axes = plt.subplots(1, len(sweeps), figsize=(8, 3.6), squeeze=False)
    slopes = results["summary"]["slopes"]
    for ax, sweep in zip(axes[0], sweeps):
        for m in METHODS:
            pts = [
                (r["x"], r["median_s"])
                for r in results["sweeps"]
                if r["sweep"] == sweep and r["method"] == m and "median_s" in r
            ]
            if pts:
                ax.plot(*zip(*pts), "o-", ms=3, lw=1.2, color=METHOD_COLORS[m], label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(sweep)
        f = slopes[sweep]
        ax.set_title(f"FLOPs ~ x^{f['FLOPs']:.0f}; F.conv2d ~ x^{f.get('F.conv2d', float('nan')):.1f}", fontsize=8)
    axes[0][0].set_ylabel("seconds per call (median)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=6)
    fig.suptitle("How the cost grows (log-log)   " + _machine_line(results), fontsize=7)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _fig_memory(results, plt):
    layers = _layers(results)
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(layers) + 1.5))
    n = len(METHODS) - 1
    height = 0.8 / n
    for j, m in enumerate([m for m in METHODS if m != "F.conv2d"]):
        for i, layer in enumerate(layers):
            r = next((r for r in results["suite"] if r["layer"] == layer and r["method"] == m), None)
            if r and r.get("bytes"):
                hatch = "//" if r.get("skipped") else None
                ax.barh(
                    i + (j - n / 2 + 0.5) * height,
                    r["bytes"] / 2**20,
                    height,
                    color=METHOD_COLORS[m],
                    hatch=hatch,
                    label=m if i == 0 else None,
                    alpha=0.5 if hatch else 1.0,
                )
    ax.set_xscale("log")
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MiB of intermediates (log scale; hatched: too large to run)")
    ax.set_title("Memory each method materialises", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _fig_conv_matrix(results, plt):
    rows = results["conv_matrix"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    H = [r["H"] for r in rows]
    a1.plot(
        H,
        [r["loops_build_s"] for r in rows],
        "o-",
        color=METHOD_COLORS["naive loops"],
        label="dense, Python loops (widely shared)",
    )
    a1.plot(
        H,
        [r["sparse_build_s"] for r in rows],
        "o-",
        color=METHOD_COLORS["Toeplitz (sparse)"],
        label="conv_matrix (sparse CSR)",
    )
    a2.plot(H, [r["dense_bytes"] / 2**20 for r in rows], "o-", color=METHOD_COLORS["naive loops"], label="dense")
    a2.plot(
        H, [r["sparse_bytes"] / 2**20 for r in rows], "o-", color=METHOD_COLORS["Toeplitz (sparse)"], label="sparse CSR"
    )
    for ax, lab in ((a1, "build time (s)"), (a2, "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("image size H = W (3 -> 3 channels, 3x3, padding 1)")
        ax.set_ylabel(lab)
        ax.legend(fontsize=7)
    a1.set_title("Building M", fontsize=9)
    a2.set_title("Storing M", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- command line


def format_table(results: dict) -> str:
    """The suite as a text table: median ms per method, and convlib.conv2d / F.conv2d."""
    layers = _layers(results)
    short = {
        "naive loops": "naive",
        "im2col (NCHW)": "im2col",
        "shifted": "shifted",
        "Toeplitz (sparse)": "Toeplitz",
        "convlib.conv2d": "conv2d",
        "F.conv2d": "F.conv2d",
    }
    head = f"{'layer':34s}" + "".join(f"{short[m]:>10s}" for m in METHODS) + f"{'ratio':>8s}{'%sgemm':>8s}"
    lines = [head, "-" * len(head)]
    for layer in layers:
        rows = {r["method"]: r for r in results["suite"] if r["layer"] == layer}
        cells = "".join(
            f"{rows[m]['median_s'] * 1e3:10.2f}" if "median_s" in rows[m] else f"{'-':>10s}" for m in METHODS
        )
        fast_row = rows["convlib.conv2d"]
        frac = fast_row["gflops"] / results["sgemm_gflops"]
        lines.append(f"{layer:34s}{cells}{fast_row['ratio_to_F']:8.2f}{100 * frac:7.0f}%")
    s = results["summary"]
    lines.append(
        f"geometric mean of convlib.conv2d / F.conv2d: {s['geomean_ratio']:.3f}; "
        f"worst {s['worst_ratio']:.2f}; sgemm {results['sgemm_gflops']:.0f} GFLOP/s "
        f"(start {results['sgemm_gflops_start']:.0f}, end {results['sgemm_gflops_end']:.0f})"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m convlib.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small version: 3 layers, one sweep, few repeats")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for results and figures")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeat", type=int, default=None, help="timed rounds per layer (default 21, quick 5)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the code is device-agnostic torch)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    results = run(args.quick, args.repeat, args.threads, args.device, progress=not args.no_progress)
    paths = write_results(results, args.out)
    draw_figures(results, args.out)
    print(format_table(results))
    print(f"machine: {_machine_line(results)}; took {results['machine']['duration_s']:.0f} s")
    print("wrote", ", ".join(str(p) for p in paths), "and figures *.png in", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
