"""The machine a run is measured on: CPU, ISA, caches, libraries, load, and its GEMM ceiling.

The **ceiling** is the best float32 matrix-product rate measured over every route torch offers here:

- MKL (or whichever BLAS torch was built with) through ``torch.mm``;
- oneDNN through the public ``F.linear`` on ``to_mkldnn()`` tensors (converted before the timed calls);
- oneDNN through the private ``torch.ops.mkldnn._linear_pointwise`` on dense tensors, where this torch has it.

Each route is feature-checked (it must exist, run, and give ``torch.mm``'s product); a route that fails is
recorded as unavailable with the reason, and the others are used. MKL, for one, takes its AVX2 path on AMD
processors, so on those machines ``torch.mm`` is not the machine's best matrix product.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .timing import stats, time_interleaved

__all__ = [
    "ISA_FLAGS",
    "machine_info",
    "cpu_slug",
    "loadavg",
    "GemmRoute",
    "gemm_routes",
    "gemm_ceiling",
    "copy_bandwidth",
]

#: the instruction-set flags of /proc/cpuinfo that decide which kernels the libraries run
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _caches() -> dict[str, str]:
    """Data and unified cache sizes of cpu0 (L1, L2, L3), as the kernel reports them."""
    out = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((d / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        if kind != "Instruction":
            out[f"L{level}"] = size
    return out


def cache_bytes(size: str) -> int:
    """'32768K' or '2M' -> bytes."""
    m = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", size.strip())
    if not m:
        raise ValueError(f"not a cache size: {size!r}")
    return int(m[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[m[2]]


def _lib_versions() -> dict[str, str]:
    import numpy

    out = {"torch": torch.__version__, "numpy": numpy.__version__}
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if "Math Kernel Library Version" in line:
            out["MKL"] = line.split("Version", 1)[1].split("Product")[0].strip(" -")
        if "MKL-DNN" in line or line.startswith("oneDNN"):
            words = [w for w in line.split() if w.startswith("v") and w[1:2].isdigit()]
            out["oneDNN"] = words[0] if words else line
        if "BLAS_INFO=" in line:
            out["BLAS"] = line.split("BLAS_INFO=", 1)[1].split(",")[0]
    return out


def loadavg() -> list[float] | None:
    try:
        return [round(v, 3) for v in os.getloadavg()]
    except OSError:
        return None


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return None


def machine_info(device="cpu") -> dict:
    """What the numbers are measured on: CPU, ISA, caches, cores, libraries, threads, load now."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    info = {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "vendor": cpu.get("vendor_id", ""),
        "isa": {f: f in flags for f in ISA_FLAGS} | {"amx": any(f.startswith("amx") for f in flags)},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "caches": _caches(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _affinity(),
        "platform": platform.platform(),
        "libc": " ".join(platform.libc_ver()),
        "python": platform.python_version(),
        "libraries": _lib_versions(),
        "torch_threads": torch.get_num_threads(),
        "environment": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("MALLOC_", "MKL_", "DNNL_", "ONEDNN_", "OMP_", "GLIBC_TUNABLES"))
        },
        "device": str(device),
        "loadavg_start": loadavg(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_slug(info: dict) -> str:
    """A file-name form of the CPU model: 'Intel(R) Xeon(R) Platinum 8480+' -> 'intel-xeon-platinum-8480'."""
    name = re.sub(r"\((R|TM|tm|r)\)", "", info.get("cpu", "")).lower()
    name = re.sub(r"\b(cpu|processor|with .*|@.*)$", "", name.strip())
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    if info.get("gpu"):
        slug += "_" + re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    return slug or "unknown-cpu"


# ---------------------------------------------------------------------------------------------- the ceiling


class GemmRoute:
    """One way to run an n x n x n float32 matrix product: ``setup(a, b)`` returns the call that is timed."""

    def __init__(self, name: str, library: str, setup: Callable, note: str = ""):
        self.name, self.library, self.setup, self.note = name, library, setup, note


def _mm_setup(a, b):
    c = torch.empty_like(a)
    return lambda: torch.mm(a, b, out=c), lambda: c


def _onednn_public_setup(a, b):
    am, bt = a.to_mkldnn(), b.t().contiguous().to_mkldnn()  # F.linear computes a @ W^T
    out = {}

    def call():
        out["y"] = F.linear(am, bt)

    return call, lambda: out["y"].to_dense()


def _private_linear():
    """``torch.ops.mkldnn._linear_pointwise``: an AttributeError where this torch has no such operator."""
    return torch.ops.mkldnn._linear_pointwise


def _onednn_private_setup(a, b):
    op = _private_linear()
    bt = b.t().contiguous()
    out = {}

    def call():
        out["y"] = op(a, bt, None, "none", [], "")

    return call, lambda: out["y"]


def gemm_routes(device="cpu") -> list[GemmRoute]:
    """Every route to a float32 GEMM that torch offers on this device."""
    if str(device).startswith("cuda"):
        return [GemmRoute("torch.mm", "cuBLAS", _mm_setup)]
    blas = _lib_versions().get("BLAS", "BLAS")
    return [
        GemmRoute("torch.mm", "MKL" if blas == "mkl" else blas, _mm_setup),
        GemmRoute("F.linear on mkldnn tensors", "oneDNN", _onednn_public_setup, "public; operands converted first"),
        GemmRoute("mkldnn._linear_pointwise", "oneDNN", _onednn_private_setup, "private operator, dense operands"),
    ]


def _check_route(route: GemmRoute, a, b, expected):
    """The timed call of a route, or the reason it cannot be used here (a string)."""
    if route.library == "oneDNN" and not torch.backends.mkldnn.is_available():
        return "this torch has no oneDNN"
    try:
        call, result = route.setup(a, b)
        call()
        got = result()
    except (AttributeError, RuntimeError, NotImplementedError, TypeError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-2 * a.shape[1] ** 0.5):
        return "wrong product"
    return call


def gemm_ceiling(n: int = 1024, repeat: int = 7, device="cpu", routes=None) -> dict:
    """Time every available GEMM route on one n x n x n float32 product, interleaved; the best is the ceiling.

    Returns ``{"n", "routes": {name: {library, note, available, reason | gflops + dispersion}}, "best",
    "library", "gflops"}``; GFLOP/s are 2 n^3 / median time, with the rates at the slowest and fastest call, at
    the ends of the median's bootstrap interval, and per second of the thread's CPU time (``gflops_cpu``).
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    expected = torch.mm(a, b)
    out, calls = {}, {}
    for route in gemm_routes(device) if routes is None else routes:
        checked = _check_route(route, a, b, expected)
        entry = {"library": route.library, "note": route.note, "available": callable(checked)}
        if callable(checked):
            calls[route.name] = checked
        else:
            entry["reason"] = checked
        out[route.name] = entry
    flops = 2 * n**3
    for name, t in time_interleaved(calls, repeat, warmup=2, device=device).items():
        s = stats(t)
        out[name].update(
            gflops=flops / s["median_s"] / 1e9,
            gflops_range=[flops / s["max_s"] / 1e9, flops / s["min_s"] / 1e9],
            gflops_ci=[flops / s["ci_s"][1] / 1e9, flops / s["ci_s"][0] / 1e9],
            gflops_cpu=flops / s["cpu_median_s"] / 1e9,  # per second of this thread's CPU time: less load-bound
            **s,
        )
    best = max(calls, key=lambda k: out[k]["gflops"])
    return {"n": n, "routes": out, "best": best, "library": out[best]["library"], "gflops": out[best]["gflops"]}


def copy_bandwidth(mbytes: int | None = None, repeat: int = 7, device="cpu") -> dict:
    """GB/s of one thread copying a float32 buffer (bytes read + bytes written): the roofline's memory slope.

    By default the buffer is 4 times the last-level cache (at least 64 MiB, at most 512 MiB), so that the copy
    streams from and to memory rather than the cache; ``beyond_llc`` says whether it did.
    """
    caches = _caches()
    llc = max((cache_bytes(v) for v in caches.values()), default=0)
    nbytes = (mbytes << 20) if mbytes else min(max(4 * llc, 64 << 20), 512 << 20)
    n = nbytes // 4
    src, dst = torch.ones(n, device=device), torch.empty(n, device=device)
    t = time_interleaved({"copy": lambda: dst.copy_(src)}, repeat, warmup=2, device=device)["copy"]
    s = stats(t)
    rate = 2 * nbytes / statistics.median(t["wall"]) / 1e9
    return {
        "gbs": rate,
        "gbs_range": [2 * nbytes / s["max_s"] / 1e9, 2 * nbytes / s["min_s"] / 1e9],
        "buffer_bytes": nbytes,
        "llc_bytes": llc,
        "beyond_llc": nbytes > llc,
        **s,
    }
