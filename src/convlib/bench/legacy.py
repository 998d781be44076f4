"""A run of the older benchmark (one ``results.json``), converted into the stored-run format as a historical run.

The older benchmark measured differently, so a converted run says so (``historical``: true, and a
``provenance`` that lists every difference) and keeps only what was measured: its machine record as it was,
medians and minima (no maxima, samples or intervals), the ceiling of ``torch.mm`` alone. ``load_runs`` leaves
historical runs out unless asked.
"""

from __future__ import annotations

import json
import sys

from .machine import cache_bytes
from .run import FORMAT, summarize
from .suite import SUITE

__all__ = ["DIFFERENCES", "from_legacy"]

#: how the older benchmark differs from this one
DIFFERENCES = (
    "no bias (F.conv2d's default); this benchmark times every method with bias",
    "glibc's allocator tuned with mallopt (mmap threshold 256 MiB, trim threshold 1 GiB); this benchmark runs as a "
    "plain process and measures the allocator's effect separately",
    "the ceiling is torch.mm (MKL) alone, on 2048^3; oneDNN's matrix products were not measured",
    "the naive loops were timed without a warm-up call",
    "only the median and the minimum of each timing were stored: no maximum, no samples, no intervals",
    "the copy bandwidth used a 64 MiB buffer, whatever the size of the last-level cache (260 MiB on the Xeon)",
    "convlib.conv2d as it was then",
)

_FIELDS = ("N", "C", "H", "O", "k", "padding", "stride", "groups")
_TIMES = ("median_s", "min_s", "cpu_median_s", "repeats", "gflops", "ratio_to_F")


def _suite_name(row: dict) -> str:
    key = tuple(row[f] for f in _FIELDS)
    return next(name for name, layer in SUITE.items() if tuple(getattr(layer, f) for f in _FIELDS) == key)


def _layer_row(row: dict, name: str) -> dict:
    out = {"layer": name, "method": row["method"], "skipped": row["skipped"], "label": row["layer"]}
    out.update({f: row[f] for f in (*_FIELDS, "flops", "intensity", "bytes")})
    out.update({f: row[f] for f in _TIMES if f in row})
    return out


def _machine(old: dict) -> dict:
    m = old["machine"]
    keep = ("date_utc", "cpu", "caches", "cpu_capability", "logical_cpus", "platform", "python", "torch_threads")
    out = {k: m[k] for k in keep}
    out |= {"device": m["device"], "loadavg_start": m["loadavg_start"], "loadavg_end": m["loadavg_end"]}
    out["libraries"] = {k: m[k] for k in ("torch", "MKL", "oneDNN")}
    out["duration_s"] = m["duration_s"]
    out["not_recorded"] = ["vendor", "isa", "usable_cpus", "libc", "numpy", "environment"]
    return out


def _ceiling(old: dict) -> dict:
    absent = {"available": False, "reason": "not measured by the older benchmark", "library": "oneDNN", "note": ""}

    def at(rate):
        mm = {"library": "MKL", "note": "", "available": True, "gflops": rate}
        routes = {"torch.mm": mm, "F.linear on mkldnn tensors": absent, "mkldnn._linear_pointwise": absent}
        return {"n": 2048, "routes": routes, "best": "torch.mm", "library": "MKL", "gflops": rate}

    start, end = at(old["sgemm_gflops_start"]), at(old["sgemm_gflops_end"])
    return {"gflops": old["sgemm_gflops"], "route": "torch.mm", "library": "MKL", "start": start, "end": end}


def _copy(old: dict) -> dict:
    llc = max(cache_bytes(v) for v in old["machine"]["caches"].values())
    return {"gbs": old["copy_gbs"], "buffer_bytes": 64 << 20, "llc_bytes": llc, "beyond_llc": 64 << 20 > llc}


def _ablation(old: dict, names: dict) -> list[dict]:
    rows = []
    for r in old["ablation"]:
        row = {"layer": names[r["layer"]], "label": r["layer"], "variant": r["variant"]}
        row |= {"options": json.loads(r["options"]), "skipped": None}
        rows.append(row | {k: r[k] for k in ("median_s", "ratio_to_F", "gflops")})
    return rows


def _conv_matrix(old: dict) -> list[dict]:
    keep = ("H", "shape", "nnz", "sparse_bytes", "dense_bytes")
    return [
        {
            **{k: r[k] for k in keep},
            "sparse": {"median_s": r["sparse_build_s"]},
            "loops": {"median_s": r["loops_build_s"]},
        }
        for r in old["conv_matrix"]
    ]


def from_legacy(old: dict, source: str) -> dict:
    """The run of an older ``results.json`` (``old``) in this benchmark's format; ``source`` names where it came
    from (file and commit), for the record."""
    suite = [_layer_row(r, _suite_name(r)) for r in old["suite"]]
    names = {r["label"]: r["layer"] for r in suite}
    results = {
        "format": FORMAT,
        "historical": True,
        "quick": old["quick"],
        "machine": _machine(old),
        "code": {"convlib": None, "commit": None, "dirty": None},
        "provenance": {"source": source, "differences": list(DIFFERENCES)},
        "settings": {"device": "cpu", "dtype": "float32", "bias": False, "threads": 1},
        "ceiling": _ceiling(old),
        "copy": _copy(old),
        "suite": suite,
        "sweeps": [_layer_row(r, r["layer"]) | {"sweep": r["sweep"], "x": r["x"]} for r in old["sweeps"]],
        "ablation": _ablation(old, names),
        "conv_matrix": _conv_matrix(old),
        "training": [],
        "allocator": {"skipped": "not measured by the older benchmark"},
    }
    results["settings"]["allocator"] = old["machine"]["allocator"]
    results["settings"]["config"] = {"repeat": old["repeat"], "naive_repeat": 3, "naive_warmup": 0}
    results["summary"] = summarize(results)
    return results


def main(argv=None) -> int:
    """``python -m convlib.bench.legacy results.json --source TEXT --out FOLDER``: store the converted run."""
    import argparse
    from pathlib import Path

    from .report import write_run

    p = argparse.ArgumentParser(prog="python -m convlib.bench.legacy", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="the older benchmark's results.json")
    p.add_argument("--source", required=True, help="where it came from (file and commit), for the record")
    p.add_argument("--out", type=Path, required=True, help="folder of stored runs")
    args = p.parse_args(argv)
    run = from_legacy(json.loads(args.results.read_text()), args.source)
    print("stored in", write_run(run, args.out, figures=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
