"""The figures of a run: every method on the suite, the roofline, the sweeps, the memory, the convolution matrix.

Each draws one stored run (``draw_figures(run)``); error bars show the bootstrap interval of the median.
"""

from __future__ import annotations

from pathlib import Path

from .methods import METHODS
from .report import _machine_line, _with_ci, rows_by

__all__ = ["FIGURES", "draw_figures", "method_color"]

FALLBACK_COLOR = "#7F7F7F"
#: Text sizes (points): a figure 8 inches wide is shown at about 0.9 of its size in the book's text column.
SMALL, TITLE = 9, 10


def method_color(method: str) -> str:
    return METHODS[method].color if method in METHODS else FALLBACK_COLOR


def _err(values, spans) -> list[list[float]]:
    """Error-bar lengths below and above each value, from [low, high] spans (None: no bar)."""
    spans = [span or [v, v] for v, span in zip(values, spans)]
    return [[v - lo for v, (lo, _) in zip(values, spans)], [hi - v for v, (_, hi) in zip(values, spans)]]


def _two_lines(text: str) -> str:
    """A run's machine line broken before its ceiling, so that it fits the figure's width at a readable size."""
    return text.replace("; GEMM ceiling", ";\nGEMM ceiling", 1)


def _methods(rows) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def _layers(results) -> list[str]:
    return list(dict.fromkeys(r["layer"] for r in results["suite"]))


def _labels(results) -> list[str]:
    by = {r["layer"]: r["label"] for r in results["suite"]}
    return [f"{name}: {by[name]}" for name in _layers(results)]


def _rate_bars(ax, results):
    """Horizontal bars: GFLOP/s of every method on every suite layer, with the interval of the median."""
    by, layers, methods = rows_by(results), _layers(results), _methods(results["suite"])
    height = 0.8 / len(methods)
    for j, m in enumerate(methods):
        rows = [(i, by[(name, m)]) for i, name in enumerate(layers) if "gflops" in by[(name, m)]]
        if not rows:
            continue
        ys = [i + (j - len(methods) / 2 + 0.5) * height for i, _ in rows]
        rates = [r["gflops"] for _, r in rows]
        err = _err(rates, [r.get("gflops_ci") for _, r in rows])
        ax.barh(ys, rates, height, xerr=err, color=method_color(m), label=m, error_kw={"lw": 0.6})
    ceiling = results["ceiling"]
    ax.axvline(ceiling["gflops"], color="black", ls="--", lw=1, label=f"GEMM ceiling ({ceiling['library']})")
    ax.set_xscale("log")
    ax.set_yticks(range(len(layers)), _labels(results), fontsize=SMALL)
    ax.invert_yaxis()
    ax.set_xlabel("GFLOP/s (log scale; median, 95% interval)")


def _fig_suite(results, plt):
    layers = _layers(results)
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(8, 0.6 * len(layers) + 2.2), sharey=True, gridspec_kw={"width_ratios": [3, 1.2]}
    )
    _rate_bars(ax, results)
    ax.set_title("Every method on the suite,\none thread", fontsize=TITLE)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=SMALL, loc="lower center", ncol=4, bbox_to_anchor=(0.5, 0.05))
    s = results["summary"]
    vals = [s["ratios"].get(name, float("nan")) for name in layers]
    cis = [s["ratio_ci"].get(name) or [v, v] for name, v in zip(layers, vals)]
    err = _err(vals, cis)
    ax2.barh(range(len(layers)), vals, 0.6, xerr=err, color=method_color("convlib.conv2d"), error_kw={"lw": 0.6})
    ax2.axvline(1.0, color="black", lw=1)
    for i, v in enumerate(vals):
        ax2.text(v, i, f" {v:.2f}", va="bottom", fontsize=SMALL)
    title = f"convlib.conv2d / F.conv2d,\ngeomean {_with_ci(s['geomean_ratio'], s['geomean_ci'])}"
    ax2.set_title(title, fontsize=TITLE)
    ax2.set_xlabel("time ratio (1 = as fast)")
    ax2.set_xlim(0, max(1.5, max(c[1] for c in cis) * 1.2))
    fig.text(0.5, 0.005, _two_lines(_machine_line(results)), fontsize=SMALL, ha="center", va="bottom")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def _fig_roofline(results, plt):
    fig, ax = plt.subplots(figsize=(8, 4.2))
    peak, bw = results["ceiling"]["gflops"], results["copy"]["gbs"]
    rows = [r for r in results["suite"] if "gflops" in r]
    ai = [r["intensity"] for r in rows]
    lo, hi = min(ai) / 4, max(ai) * 4
    grid = [lo, peak / bw, hi]
    ax.plot(grid, [min(peak, a * bw) for a in grid], color="black", lw=1.5)
    label = f"GEMM ceiling {peak:.0f} GFLOP/s ({results['ceiling']['library']})"
    ax.text(peak / bw * 1.15, peak * 1.2, label, ha="left", va="bottom", fontsize=SMALL)
    ax.text(lo * 1.2, lo * 1.2 * bw * 1.3, f"copy {bw:.0f} GB/s", fontsize=SMALL)
    for m in _methods(rows):
        pts = [(r["intensity"], r["gflops"]) for r in rows if r["method"] == m]
        ax.scatter(*zip(*pts), color=method_color(m), label=m, s=22, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=peak * 3)
    ax.set_xlabel("arithmetic intensity: FLOPs per byte of input + weight + bias + output")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("Roofline: every layer of the suite, every method", fontsize=TITLE)
    ax.legend(fontsize=SMALL, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(_two_lines(_machine_line(results)), fontsize=SMALL, y=0.005, va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def _fig_sweeps(results, plt):
    rows = results["sweeps"]
    sweeps = list(dict.fromkeys(r["sweep"] for r in rows))
    fig, axes = plt.subplots(1, len(sweeps), figsize=(8, 4.6), squeeze=False)
    slopes = results["summary"]["slopes"]
    for ax, sweep in zip(axes[0], sweeps):
        for m in _methods(rows):
            pts = [r for r in rows if r["sweep"] == sweep and r["method"] == m and "median_s" in r]
            if pts:
                xs, ys = [r["x"] for r in pts], [r["median_s"] for r in pts]
                err = _err(ys, [[r["min_s"], r["max_s"]] if "max_s" in r else None for r in pts])
                ax.errorbar(xs, ys, yerr=err, fmt="o-", ms=3, lw=1.2, color=method_color(m), label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        xs = sorted({r["x"] for r in rows if r["sweep"] == sweep})
        ax.set_xticks(xs, [str(x) for x in xs], fontsize=SMALL)
        ax.minorticks_off()
        ax.set_xlabel(sweep)
        f = slopes[sweep]
        ax.set_title(f"FLOPs ~ x^{f['FLOPs']:.0f}; F.conv2d ~ x^{f.get('F.conv2d', float('nan')):.1f}", fontsize=SMALL)
    axes[0][0].set_ylabel("seconds per call (median, min to max)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=SMALL, loc="lower center", ncol=4)
    fig.suptitle("How the cost grows (log-log)\n" + _two_lines(_machine_line(results)), fontsize=SMALL)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def _fig_memory(results, plt):
    layers, by = _layers(results), rows_by(results)
    methods = [m for m in _methods(results["suite"]) if any(by[(n, m)].get("bytes") for n in layers)]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(layers) + 1.5))
    height = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        for i, name in enumerate(layers):
            r = by[(name, m)]
            if r.get("bytes"):
                hatch = "//" if r.get("skipped") else None
                y = i + (j - len(methods) / 2 + 0.5) * height
                ax.barh(
                    y,
                    r["bytes"] / 2**20,
                    height,
                    color=method_color(m),
                    hatch=hatch,
                    label=m if i == 0 else None,
                    alpha=0.5 if hatch else 1.0,
                )
    ax.set_xscale("log")
    ax.set_yticks(range(len(layers)), _labels(results), fontsize=SMALL)
    ax.invert_yaxis()
    ax.set_xlabel("MiB of intermediates (log scale; hatched: too large to run)")
    ax.set_title("Memory each method materialises", fontsize=TITLE)
    ax.legend(fontsize=SMALL, loc="lower right")
    fig.tight_layout()
    return fig


def _fig_conv_matrix(results, plt):
    rows = results["conv_matrix"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    H = [r["H"] for r in rows]
    dense, sparse = method_color("naive loops"), method_color("Toeplitz (sparse)")
    a1.plot(H, [r["loops"]["median_s"] for r in rows], "o-", color=dense, label="dense, Python loops")
    a1.plot(H, [r["sparse"]["median_s"] for r in rows], "o-", color=sparse, label="conv_matrix (sparse CSR)")
    a2.plot(H, [r["dense_bytes"] / 2**20 for r in rows], "o-", color=dense, label="dense")
    a2.plot(H, [r["sparse_bytes"] / 2**20 for r in rows], "o-", color=sparse, label="sparse CSR")
    for ax, what in ((a1, "build time (s, median)"), (a2, "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("image size H = W (3 -> 3 channels, 3x3, padding 1)")
        ax.set_ylabel(what)
        ax.legend(fontsize=SMALL)
    a1.set_title("Building M", fontsize=TITLE)
    a2.set_title("Storing M", fontsize=TITLE)
    fig.tight_layout()
    return fig


#: name -> (draw, the section it needs)
FIGURES = {
    "suite_gflops": (_fig_suite, "suite"),
    "roofline": (_fig_roofline, "suite"),
    "sweeps": (_fig_sweeps, "sweeps"),
    "memory": (_fig_memory, "suite"),
    "conv_matrix": (_fig_conv_matrix, "conv_matrix"),
}


def draw_figures(results: dict, out=None, show: bool = False, which=None) -> dict:
    """The run's figures (``which``: names in ``FIGURES``, default all whose section the run has), saved as PNG
    into ``out`` if given. Returns {name: matplotlib Figure}."""
    import matplotlib.pyplot as plt

    figs = {
        name: draw(results, plt)
        for name, (draw, section) in FIGURES.items()
        if (which is None or name in which) and results.get(section)
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name, fig in figs.items():
            fig.savefig(Path(out) / f"{name}.png", dpi=110, bbox_inches="tight")
    if not show:
        for fig in figs.values():
            plt.close(fig)
    return figs
