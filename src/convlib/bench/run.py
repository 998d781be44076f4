"""One benchmark run: every section measured in one process, one after the other, returned as one dict.

Sections: the GEMM ceiling and the copy bandwidth (at the start; the ceiling again at the end, to see the drift),
the suite (every method on every layer), three extra layers, the sweeps, the ablation of ``convlib.conv2d``'s
choices, the convolution matrix's build, the training step, and the allocator probe (in child processes).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

from . import _fastpath, allocator, machine
from .methods import METHODS, REFERENCE
from .suite import ABLATION, BIG, EXTRA, QUICK, QUICK_ABLATION, QUICK_SWEEPS, SUITE, SWEEP_X, SWEEPS, Layer
from .timing import geomean, geomean_interval, loglog_slope, ratio_stats, stats, time_interleaved
from .train_step import time_training

__all__ = ["SECTIONS", "FORMAT", "RunConfig", "config", "time_layer", "run", "summarize"]

SECTIONS = ("suite", "extra", "sweeps", "ablation", "conv_matrix", "training", "allocator")
FORMAT = 2  # of the stored run (1: the single results.json of the older benchmark)


@dataclass(frozen=True)
class RunConfig:
    """What a run measures and how often (see ``config``)."""

    suite: tuple[str, ...]  # names in SUITE
    extra: tuple[str, ...]  # names in EXTRA
    sweeps: Mapping[str, tuple[Layer, ...]]
    ablation: Mapping[str, tuple[dict, ...]]
    conv_matrix: tuple[int, ...]  # image sizes H
    repeat: int  # timed calls per method and layer
    warmup: int  # untimed calls of every method before them
    naive_repeat: int  # ... of the naive loops
    gemm_n: int  # the ceiling's n x n x n product
    gemm_repeat: int
    copy_mbytes: int | None  # None: sized from the last-level cache
    training: tuple[str, ...]  # suite layers whose training step is timed
    cnn_batch: int
    training_repeat: int
    allocator_layers: tuple[str, ...]
    allocator_repeat: int
    allocator_rounds: int


def config(quick: bool = False, repeat: int | None = None) -> RunConfig:
    """The sizes and repeat counts of a full run (a few minutes) or a quick one (seconds, for tests)."""
    if quick:
        return RunConfig(
            suite=QUICK,
            extra=(),
            sweeps=QUICK_SWEEPS,
            ablation=QUICK_ABLATION,
            conv_matrix=(8, 12),
            repeat=repeat or 5,
            warmup=1,
            naive_repeat=1,
            gemm_n=512,
            gemm_repeat=3,
            copy_mbytes=16,
            training=("small-cifar",),
            cnn_batch=8,
            training_repeat=2,
            allocator_layers=("small-cifar",),
            allocator_repeat=2,
            allocator_rounds=1,
        )
    return RunConfig(
        suite=tuple(SUITE),
        extra=tuple(EXTRA),
        sweeps=SWEEPS,
        ablation=ABLATION,
        conv_matrix=(8, 12, 16, 24, 32),
        repeat=repeat or 21,
        warmup=2,
        naive_repeat=3,
        gemm_n=2048,
        gemm_repeat=11,
        copy_mbytes=None,
        training=tuple(SUITE),
        cnn_batch=64,
        training_repeat=7,
        allocator_layers=BIG,
        allocator_repeat=5,
        allocator_rounds=2,
    )


def _config_record(cfg: RunConfig) -> dict:
    """The configuration as JSON-ready data (the sweeps' layers by their labels)."""
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    out["sweeps"] = {sweep: [layer.label for layer in layers] for sweep, layers in cfg.sweeps.items()}
    out["ablation"] = {name: list(variants) for name, variants in cfg.ablation.items()}
    return out


def _layer_fields(layer: Layer) -> dict:
    fields = ("N", "C", "H", "O", "k", "padding", "stride", "groups", "flops", "intensity")
    return {"label": layer.label, **{f: getattr(layer, f) for f in fields}}


def time_layer(
    name: str, layer: Layer, methods, repeat: int, naive_repeat: int, device="cpu", warmup: int = 2
) -> list[dict]:
    """Every method on one layer, interleaved, each after ``warmup`` untimed calls (the naive loops with
    ``naive_repeat`` timed calls): one row per method."""
    x, w, b, kw = layer.tensors(device=device)
    rows, fns = [], {}
    for m in methods:
        reason = METHODS[m].skip(layer)
        if reason is None and str(device).startswith("cuda") and m == "naive loops":
            reason = "not on the GPU"
        if reason is None:
            fns[m] = METHODS[m].make(x, w, b, kw)
        rows.append({"layer": name, "method": m, "skipped": reason, **_layer_fields(layer)})
        rows[-1]["bytes"] = METHODS[m].nbytes(layer, x.element_size())
    times = time_interleaved(fns, repeat, warmup=warmup, device=device, repeats={"naive loops": naive_repeat})
    ref = times.get(REFERENCE)
    for row in rows:
        t = times.get(row["method"])
        if t is None:
            continue
        row.update(stats(t))
        s = row
        row["gflops"] = layer.flops / s["median_s"] / 1e9
        row["gflops_ci"] = [layer.flops / s["ci_s"][1] / 1e9, layer.flops / s["ci_s"][0] / 1e9]
        if ref is not None:
            row["ratio_to_F"], row["ratio_ci"] = ratio_stats(t["wall"], ref["wall"])
    return rows


def _ablation(ablation: dict, repeat: int, warmup: int = 2) -> list[dict]:
    """``convlib.conv2d`` with each of its formulations, layouts and block sizes forced, against ``F.conv2d``."""
    from .. import fast

    rows = []
    for name, variants in ablation.items():
        layer = SUITE[name]
        x, w, b, kw = layer.tensors()
        fns, labels = {REFERENCE: METHODS[REFERENCE].make(x, w, b, kw)}, {}
        for opts in variants:
            try:
                label = ("default: " if not opts else "") + _fastpath.describe(_fastpath.plan_for(layer, **opts))
                fast.conv2d(x, w, b, **kw, **opts)
            except (TypeError, ValueError) as e:  # options this fast path does not take
                rows.append({"layer": name, "label": layer.label, "options": opts, "skipped": str(e)})
                continue
            labels[label] = opts
            fns[label] = functools.partial(fast.conv2d, x, w, b, **kw, **opts)
        times = time_interleaved(fns, repeat, warmup=warmup)
        for label, opts in labels.items():
            ratio, ci = ratio_stats(times[label]["wall"], times[REFERENCE]["wall"])
            s = stats(times[label])
            rows.append({"layer": name, "label": layer.label, "variant": label, "options": opts, "skipped": None})
            rows[-1].update(**s, ratio_to_F=ratio, ratio_ci=ci, gflops=layer.flops / s["median_s"] / 1e9)
    return rows


def _conv_matrix_rows(sizes, repeat: int) -> list[dict]:
    """Build time and bytes of ``conv_matrix`` (sparse CSR) against the dense loop construction, 3 -> 3 channels,
    3x3, padding 1, on H x H images."""
    import convlib

    rows = []
    for H in sizes:
        w = torch.randn(3, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        fns = {
            "sparse": lambda w=w, H=H: convlib.conv_matrix(w, (3, H, H), padding=1),
            "loops": lambda w=w, H=H: convlib.conv_matrix_loops(w, (3, H, H), padding=1),
        }
        t = time_interleaved(fns, repeat, warmup=1, repeats={"loops": max(1, repeat // 3)})
        M, D = fns["sparse"](), fns["loops"]()
        if not torch.equal(M.to_dense(), D):
            raise AssertionError(f"conv_matrix and conv_matrix_loops differ at H={H}")
        parts = (M.values(), M.col_indices(), M.crow_indices())
        rows.append(
            {
                "H": H,
                "shape": list(D.shape),
                "nnz": M.values().numel(),
                "sparse_bytes": sum(p.numel() * p.element_size() for p in parts),
                "dense_bytes": D.numel() * D.element_size(),
                "sparse": stats(t["sparse"]),
                "loops": stats(t["loops"]),
            }
        )
    return rows


def _git() -> dict:
    """The commit of the checkout the run is started in (None outside a git checkout), and whether it has
    uncommitted changes to tracked files."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return {"commit": head.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def _sweep_rows(sweeps: Mapping, methods, cfg: RunConfig, device, say) -> list[dict]:
    rows = []
    for sweep, layers in sweeps.items():
        for layer in layers:
            x = getattr(layer, SWEEP_X[sweep])
            say(f"sweep {sweep} = {x}")
            repeat = max(3, cfg.repeat // 2)
            timed = time_layer(layer.label, layer, methods, repeat, cfg.naive_repeat, device, cfg.warmup)
            rows += [dict(r, sweep=sweep, x=x) for r in timed]
    return rows


def _layers_rows(names, table: Mapping, methods, cfg: RunConfig, device, say) -> list[dict]:
    rows = []
    for name in names:
        say(f"layer {name}")
        rows += time_layer(name, table[name], methods, cfg.repeat, cfg.naive_repeat, device, cfg.warmup)
    return rows


def _allocator(cfg: RunConfig, threads: int, device) -> dict:
    import platform

    if str(device) != "cpu" or platform.libc_ver()[0] != "glibc":
        return {"skipped": "the probe is about glibc's malloc on the CPU"}
    return allocator.allocator_probe(cfg.allocator_layers, cfg.allocator_repeat, cfg.allocator_rounds, threads)


def _section_fns(cfg: RunConfig, methods, threads: int, device, say) -> dict:
    """section name -> the call that measures it."""
    cpu = str(device) == "cpu"
    train = {name: SUITE[name] for name in cfg.training}
    return {
        "suite": lambda: _layers_rows(cfg.suite, SUITE, methods, cfg, device, say),
        "extra": lambda: _layers_rows(cfg.extra, EXTRA, methods, cfg, device, say),
        "sweeps": lambda: _sweep_rows(cfg.sweeps, methods, cfg, device, say),
        "ablation": lambda: _ablation(cfg.ablation, cfg.repeat, cfg.warmup) if cpu else [],
        "conv_matrix": lambda: _conv_matrix_rows(cfg.conv_matrix, 5) if cpu else [],
        "training": lambda: time_training(train, cfg.training_repeat, cfg.cnn_batch, device, say),
        "allocator": lambda: _allocator(cfg, threads, device),
    }


def run(
    quick: bool = False,
    repeat: int | None = None,
    threads: int = 1,
    device="cpu",
    progress: bool = True,
    methods=None,
    sections=SECTIONS,
) -> dict:
    """Run the benchmark in this process, as a user's process runs (glibc's allocator defaults), and return
    everything as one dict (the stored run: see :mod:`convlib.bench.report`).

    ``methods``: names in ``METHODS`` (default all); ``sections``: which of ``SECTIONS`` to measure (the GEMM
    ceiling and the copy bandwidth always are).
    """
    from .. import __version__

    cfg = config(quick, repeat)
    torch.set_num_threads(threads)
    methods = tuple(methods or METHODS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    t_start = time.perf_counter()
    say = _printer(progress)
    info = machine.machine_info(device)
    results = {"format": FORMAT, "historical": False, "quick": quick, "machine": info}
    results["code"] = {"convlib": __version__, **_git()}
    results["settings"] = {
        "device": str(device),
        "dtype": "float32",
        "bias": True,
        "threads": threads,
        "allocator": "glibc defaults (a plain process)",
        "methods": list(methods),
        "config": _config_record(cfg),
    }
    say("GEMM ceiling")
    start = machine.gemm_ceiling(cfg.gemm_n, cfg.gemm_repeat, device)
    results["copy"] = machine.copy_bandwidth(cfg.copy_mbytes, cfg.gemm_repeat, device)
    for section, measure in _section_fns(cfg, methods, threads, device, say).items():
        if section in sections:
            say(section)
            results[section] = measure()
    say("GEMM ceiling again")
    end = machine.gemm_ceiling(cfg.gemm_n, cfg.gemm_repeat, device)
    results["ceiling"] = _ceiling(start, end)
    info["loadavg_end"] = machine.loadavg()
    info["duration_s"] = time.perf_counter() - t_start
    results["summary"] = summarize(results)
    say(f"done in {info['duration_s']:.0f} s")
    return results


def _ceiling(start: dict, end: dict) -> dict:
    """The machine's GEMM ceiling: the best route's rate, the better of the run's start and end (a busy spell
    only lowers a rate)."""
    best = max((start, end), key=lambda c: c["gflops"])
    return {"gflops": best["gflops"], "route": best["best"], "library": best["library"], "start": start, "end": end}


def _printer(progress: bool):
    """``say(text)``: one line of progress on stderr with the seconds since the start (or nothing)."""
    t0 = time.perf_counter()

    def say(text: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - t0:6.1f} s] {text}", file=sys.stderr, flush=True)

    return say


#: The speed targets, checked in every run's summary: (name, summary key, comparison, limit)
TARGETS = (
    ("geomean convlib.conv2d / F.conv2d <= 1.25", "geomean_ratio", "<=", 1.25),
    ("every layer <= 1.6", "worst_ratio", "<=", 1.6),
    ("big layers >= 80% of the GEMM ceiling", "big_min_fraction", ">=", 0.8),
    ("CNN training step <= 1.5 x nn.Conv2d", "cnn_training_ratio", "<=", 1.5),
)


def _fast_ratios(rows: list[dict]) -> dict:
    """convlib.conv2d / F.conv2d per layer, their interval, geometric mean (with interval) and worst."""
    by = {(r["layer"], r["method"]): r for r in rows}
    fast = {r["layer"]: r for r in rows if r["method"] == "convlib.conv2d" and "ratio_to_F" in r}
    if not fast:
        return {}
    worst = max(fast, key=lambda name: fast[name]["ratio_to_F"])
    out = {
        "ratios": {name: r["ratio_to_F"] for name, r in fast.items()},
        "ratio_ci": {name: r.get("ratio_ci") for name, r in fast.items()},
        "geomean_ratio": geomean(r["ratio_to_F"] for r in fast.values()),
        "geomean_ci": None,  # without samples (a historical run): no interval
        "worst_ratio": fast[worst]["ratio_to_F"],
        "worst_layer": worst,
    }
    if all("samples_s" in r for r in fast.values()):
        pairs = [(r["samples_s"], by[(name, REFERENCE)]["samples_s"]) for name, r in fast.items()]
        out["geomean_ci"] = geomean_interval(pairs)
    return out


def _slopes(rows: list[dict]) -> dict:
    """The log-log slope of time against the swept size, per sweep and method (and of the FLOPs)."""
    slopes = {}
    for sweep in dict.fromkeys(r["sweep"] for r in rows):
        mine = [r for r in rows if r["sweep"] == sweep]
        slopes[sweep] = {}
        for m in dict.fromkeys(r["method"] for r in mine):
            pts = [(r["x"], r["median_s"]) for r in mine if r["method"] == m and "median_s" in r]
            if len(pts) >= 3:
                slopes[sweep][m] = loglog_slope(*zip(*pts))
        pts = {r["x"]: r["flops"] for r in mine}
        slopes[sweep]["FLOPs"] = loglog_slope(list(pts), list(pts.values()))
    return slopes


def _allocator_summary(probe: dict) -> dict:
    """Per probed call: median time with the threshold raised / with glibc's defaults, and the page faults."""
    if "results" not in probe:
        return {}
    default, raised = (probe["results"][s] for s in allocator.SETTINGS)
    return {
        key: {
            "time_ratio_raised_to_default": ratio_stats(raised[key]["samples_s"], default[key]["samples_s"])[0],
            "faults_default": default[key]["faults_median"],
            "faults_raised": raised[key]["faults_median"],
        }
        for key in default
    }


def summarize(results: dict) -> dict:
    """The numbers the targets are about, each from the stored rows: ratios of ``convlib.conv2d`` to ``F.conv2d``
    (per layer, geometric mean, worst, with bootstrap intervals), every method's rate as a fraction of the GEMM
    ceiling, the sweeps' slopes, the training-step ratios, the allocator probe, and the targets met."""
    rows = results.get("suite", [])
    ceiling = results["ceiling"]["gflops"]
    out = _fast_ratios(rows)
    out["fraction_of_ceiling"] = {
        m: {r["layer"]: r["gflops"] / ceiling for r in rows if r["method"] == m and "gflops" in r}
        for m in dict.fromkeys(r["method"] for r in rows)
    }
    big = [r["gflops"] / ceiling for r in rows if r["method"] == "convlib.conv2d" and r["layer"] in BIG]
    if big:
        out["big_min_fraction"] = min(big)
    out["slopes"] = _slopes(results.get("sweeps", []))
    train = [r for r in results.get("training", []) if r["conv"] == "convlib.Conv2d"]
    out["training_ratios"] = {r["what"]: r["ratio_to_nn"] for r in train}
    if "small_cnn" in out["training_ratios"]:
        out["cnn_training_ratio"] = out["training_ratios"]["small_cnn"]
    out["allocator"] = _allocator_summary(results.get("allocator", {}))
    timed = [r for r in rows if "median_s" in r]
    if timed:  # 1.0 on a quiet machine; lower when other processes took the CPU during timed calls
        out["cpu_share"] = sorted(r["cpu_median_s"] / r["median_s"] for r in timed)[len(timed) // 2]
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
    out["targets"] = {name: ops[op](out[key], limit) for name, key, op, limit in TARGETS if key in out}
    return out
