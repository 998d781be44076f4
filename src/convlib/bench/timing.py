"""Timing: interleaved rounds with a warm-up for every method, and the dispersion of every figure.

Every number the benchmark stores comes with its spread: the median of the timed calls, their minimum and
maximum, and a bootstrap interval of the median (resampling the calls). Ratios of two methods and the geometric
mean of ratios get bootstrap intervals the same way. The raw samples are stored too.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "time_interleaved",
    "stats",
    "bootstrap_medians",
    "interval",
    "ratio_stats",
    "geomean",
    "geomean_interval",
    "loglog_slope",
    "BOOTSTRAP",
    "LEVEL",
]

BOOTSTRAP = 2000  # resamples per interval
LEVEL = 0.95  # two-sided


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    repeat: int,
    warmup: int = 2,
    device="cpu",
    seed: int = 0,
    repeats: dict[str, int] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each function: ``warmup`` untimed calls of every function, then timed rounds.

    Each round calls every function that still needs samples, in a new random order, so that a slow spell of
    the machine, or what the previous call left in the caches, hits all of them alike. ``repeats`` gives some
    functions fewer (or more) timed calls than ``repeat`` (the naive loops: a few). Returns, per name, the
    wall-clock times and this thread's CPU times of the timed calls.
    """
    want = {name: (repeats or {}).get(name, repeat) for name in fns}
    order = random.Random(seed)
    out = {name: {"wall": [], "cpu": []} for name in fns}
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync(device)
    for r in range(max(want.values(), default=0)):
        names = [name for name in fns if want[name] > r]
        order.shuffle(names)
        for name in names:
            c0, t0 = time.thread_time(), time.perf_counter()
            fns[name]()
            _sync(device)
            t1, c1 = time.perf_counter(), time.thread_time()
            out[name]["wall"].append(t1 - t0)
            out[name]["cpu"].append(c1 - c0)
    return out


def bootstrap_medians(samples: Sequence[float], n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """Medians of ``n`` resamples (with replacement) of the samples."""
    xs = np.asarray(samples, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(xs), size=(n, len(xs)))
    return np.median(xs[idx], axis=1)


def interval(replicates: np.ndarray, level: float = LEVEL) -> list[float]:
    """The central ``level`` percentile interval of bootstrap replicates."""
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(replicates, tail)), float(np.percentile(replicates, 100 - tail))]


def _sig(t: float) -> float:
    return float(f"{t:.6g}")


def stats(times: dict[str, list[float]], seed: int = 0) -> dict:
    """Median, minimum, maximum and bootstrap interval of the median of timed calls (seconds), the median CPU
    time of the measured thread, and the samples themselves (6 significant digits)."""
    wall = times["wall"]
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "ci_s": interval(bootstrap_medians(wall, seed=seed)),
        "cpu_median_s": statistics.median(times["cpu"]),
        "repeats": len(wall),
        "samples_s": [_sig(t) for t in wall],
    }


def _ratio_replicates(a: Sequence[float], b: Sequence[float], seed: int = 0) -> np.ndarray:
    return bootstrap_medians(a, seed=seed) / bootstrap_medians(b, seed=seed + 1)


def ratio_stats(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, list[float]]:
    """median(a) / median(b) and its bootstrap interval (both samples resampled independently)."""
    return statistics.median(a) / statistics.median(b), interval(_ratio_replicates(a, b, seed))


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def geomean_interval(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], seed: int = 0) -> list[float]:
    """Bootstrap interval of the geometric mean of median(a) / median(b) over several (a, b) sample pairs."""
    logs = [np.log(_ratio_replicates(a, b, seed + 2 * i)) for i, (a, b) in enumerate(pairs)]
    return interval(np.exp(np.mean(logs, axis=0)))


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): the exponent b in y ~ x^b."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
