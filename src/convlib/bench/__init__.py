"""``python -m convlib.bench``: time every convolution method in convlib against ``F.conv2d`` and store the run.

One run measures, in one plain process (one thread, float32, with bias, glibc's allocator defaults):

- the machine (:mod:`~convlib.bench.machine`): CPU, ISA, caches, libraries, load before and after, and its
  **GEMM ceiling**, the best rate over every matrix-product route torch offers (MKL, oneDNN public and private);
- the **suite** (:mod:`~convlib.bench.suite`): every method (:mod:`~convlib.bench.methods`) on every layer,
  interleaved with a warm-up for each (:mod:`~convlib.bench.timing`), median with its bootstrap interval;
- three extra layers, three **sweeps**, an **ablation** of ``convlib.conv2d``'s choices, the convolution matrix's
  build, a **training step** (:mod:`~convlib.bench.train_step`) and what glibc's mmap threshold does to large
  temporaries (:mod:`~convlib.bench.allocator`, in child processes).

Each run is stored as its own folder named by date and CPU (:mod:`~convlib.bench.report`); ``load_runs`` returns
every stored run.

    python -m convlib.bench --out chapters/bench/runs          # the full run (a few minutes)
    python -m convlib.bench --quick --out /tmp/b               # a small version (seconds)
"""

from .figures import draw_figures
from .machine import copy_bandwidth, gemm_ceiling, machine_info
from .methods import METHODS, REFERENCE, Method, cached, method_bytes, per_call, skip_reason
from .onednn import onednn_primitives
from .report import format_table, load_runs, rows_by, write_run
from .run import SECTIONS, TARGETS, run, summarize
from .suite import BIG, EXTRA, QUICK, SUITE, SWEEPS, Layer, naive_steps, toeplitz_nnz
from .timing import geomean, loglog_slope, time_interleaved

__all__ = [
    "Layer",
    "SUITE",
    "EXTRA",
    "BIG",
    "QUICK",
    "SWEEPS",
    "Method",
    "METHODS",
    "REFERENCE",
    "per_call",
    "cached",
    "skip_reason",
    "method_bytes",
    "toeplitz_nnz",
    "naive_steps",
    "machine_info",
    "gemm_ceiling",
    "copy_bandwidth",
    "time_interleaved",
    "geomean",
    "loglog_slope",
    "SECTIONS",
    "TARGETS",
    "run",
    "summarize",
    "write_run",
    "load_runs",
    "rows_by",
    "format_table",
    "draw_figures",
    "onednn_primitives",
]
