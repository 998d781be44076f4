"""``python -m convlib.fast.ratios``: ``convlib.conv2d`` against ``F.conv2d``, timed interleaved, as ratios.

Each round times both on the same arguments one after the other (in alternating order), so a burst of load from
other processes hits both; the table shows the ratio's minimum, median and maximum over the rounds, the GFLOP/s
of each, and the GEMM ceiling: the best rate of each GEMM route on one large product.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F

from .conv import conv2d, describe, plan_for
from .routes import available_routes, gemm
from .tuning import clock

__all__ = ["compare", "format_ratios", "gemm_ceiling", "suite_cases"]


def _timed(f) -> float:
    """Seconds ``f()`` takes: CPU time of the process with one thread (so other processes' load does not
    count), wall time otherwise (see ``tuning.clock``)."""
    now = clock()
    start = now()
    f()
    return now() - start


def _compare_one(name, x, w, b, kw, repeat, warmup) -> dict:
    fns = (lambda: F.conv2d(x, w, b, **kw), lambda: conv2d(x, w, b, **kw))
    for _ in range(warmup):  # conv2d's first call measures its candidates
        for f in fns:
            f()
    ratios, t_ref, t_fast = [], [], []
    for r in range(repeat):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        t = {i: _timed(fns[i]) for i in order}
        t_ref.append(t[0])
        t_fast.append(t[1])
        ratios.append(t[1] / t[0])
    O, Cg, kh, kw_ = w.shape
    flops = 2 * fns[0]().numel() * Cg * kh * kw_
    return dict(
        name=name,
        plan=describe(plan_for(x, w, b, **kw)),
        F_gflops=flops / statistics.median(t_ref) / 1e9,
        gflops=flops / statistics.median(t_fast) / 1e9,
        ratio_min=min(ratios),
        ratio_median=statistics.median(ratios),
        ratio_max=max(ratios),
    )


def compare(cases, repeat: int = 9, warmup: int = 2) -> list[dict]:
    """Time ``convlib.conv2d`` and ``F.conv2d`` on each case, interleaved: ``cases`` maps a name to
    ``(x, weight, bias, kwargs)``. One row per case: the plan chosen, GFLOP/s (medians) and the ratio
    convlib / F (min, median, max over the rounds)."""
    return [_compare_one(name, x, w, b, kw, repeat, warmup) for name, (x, w, b, kw) in cases.items()]


def gemm_ceiling(n: int = 1024, rounds: int = 5) -> dict[str, float]:
    """GFLOP/s of each GEMM route on an n x n x n float32 product (best of ``rounds``, interleaved)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    routes = available_routes(torch.float32, "cpu")
    best = dict.fromkeys(routes, float("inf"))
    for r in range(rounds + 1):
        for route in routes:
            t = _timed(lambda route=route: gemm(route, a, b))
            if r:
                best[route] = min(best[route], t)
    return {route: 2 * n**3 / t / 1e9 for route, t in best.items()}


def format_ratios(rows, ceiling: dict[str, float] | None = None) -> str:
    """The table, the geometric mean of the median ratios, the worst, and each layer's share of the ceiling."""
    peak = max(ceiling.values()) if ceiling else None
    lines = [f"{'layer':34s} {'F GF/s':>7s} {'ours':>7s} {'ratio min/med/max':>19s}  plan"]
    for r in rows:
        share = f" {100 * r['gflops'] / peak:3.0f}%" if peak else ""
        lines.append(
            f"{r['name']:34s} {r['F_gflops']:7.1f} {r['gflops']:7.1f}{share} "
            f"{r['ratio_min']:5.2f} {r['ratio_median']:5.2f} {r['ratio_max']:5.2f}  {r['plan']}"
        )
    med = [r["ratio_median"] for r in rows]
    geomean = math.exp(statistics.fmean(map(math.log, med)))
    lines.append(f"geometric mean of the median ratios {geomean:.2f}, worst {max(med):.2f}")
    if ceiling:
        lines.append("GEMM ceiling (n=1024): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ceiling.items()))
    return "\n".join(lines)


def suite_cases(bias: bool = True) -> dict:
    """The benchmark suite's layers (float32), with a bias each unless ``bias=False``."""
    from convlib import bench

    cases = {}
    for layer in bench.SUITE.values():
        x, w, b, kw = layer.tensors(bias=bias)
        cases[layer.label] = (x, w, b, kw)
    return cases


def time_perf_counter():
    import time

    return time.perf_counter


def _cpu_model() -> str:
    from ..costs import cpu_model  # one reading of the CPU's name for every table (costs imports the fast path)

    return cpu_model()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock_name = "process CPU time" if clock() is not time_perf_counter() else "wall time"
    print(f"{_cpu_model()}, torch {torch.__version__}, {args.threads} thread(s), timed by {clock_name}")
    ceiling = gemm_ceiling()
    rows = compare(suite_cases(), repeat=args.repeat)
    print(format_ratios(rows, ceiling))


if __name__ == "__main__":
    main()
