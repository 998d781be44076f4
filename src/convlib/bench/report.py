"""Storing, loading and printing runs.

Every run is its own folder, named by the date and the CPU (``2026-11-22_intel-xeon``; ``_quick`` for a quick
run, the GPU's name for a CUDA run), created exclusively: a run never overwrites another, from this machine or
any other (a second run of the same day and CPU gets ``_2``, ``_3``, ...). The folder holds:

- ``run.json``: everything (the machine, the settings, every section's rows with their raw samples, the summary);
- ``suite.csv``, ``extra.csv``, ``sweeps.csv``, ``ablation.csv``, ``training.csv``, ``ceiling.csv``,
  ``conv_matrix.csv``, ``allocator.csv``: the rows as tables (without the raw samples);
- the figures (``*.png``, see :mod:`convlib.bench.figures`), unless told not to draw them.

:func:`load_runs` returns every stored run of a folder, oldest first.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .machine import cpu_slug
from .methods import METHODS, REFERENCE
from .run import FORMAT

__all__ = ["run_name", "write_run", "load_runs", "rows_by", "format_table", "RUN_FILE", "TABLES"]

RUN_FILE = "run.json"
TABLES = ("suite", "extra", "sweeps", "ablation", "training", "conv_matrix")


def run_name(results: dict) -> str:
    """``<date>_<cpu-slug>`` (``_quick``, ``_historical`` appended where they apply)."""
    name = f"{results['machine']['date_utc'][:10]}_{cpu_slug(results['machine'])}"
    return name + ("_quick" if results.get("quick") else "") + ("_historical" if results.get("historical") else "")


def _new_folder(out: Path, base: str) -> Path:
    """``out/base``, or ``out/base_2``, ``out/base_3``, ...: the first that does not exist, created."""
    out.mkdir(parents=True, exist_ok=True)
    i = 1
    while True:
        folder = out / (base if i == 1 else f"{base}_{i}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            i += 1


def _cell(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _write_csv(path: Path, rows: list[dict]) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("samples_s", "faults")} for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)


def _flat_tables(results: dict) -> dict[str, list[dict]]:
    tables = {name: results[name] for name in TABLES if results.get(name)}
    ceiling = results.get("ceiling")
    if ceiling:
        tables["ceiling"] = [
            {"when": when, "route": name, **route}
            for when in ("start", "end")
            for name, route in ceiling[when]["routes"].items()
        ]
    probe = results.get("allocator", {}).get("results")
    if probe:
        tables["allocator"] = [{"setting": s, "call": k, **row} for s, rows in probe.items() for k, row in rows.items()]
    return tables


def write_run(results: dict, out, figures: bool = True) -> Path:
    """Store a run as a new folder in ``out`` (see the module docstring); returns the folder."""
    folder = _new_folder(Path(out), run_name(results))
    results = {**results, "name": folder.name}
    (folder / RUN_FILE).write_text(json.dumps(results, indent=1) + "\n")
    for name, rows in _flat_tables(results).items():
        _write_csv(folder / f"{name}.csv", rows)
    if figures and results.get("suite"):
        from .figures import draw_figures

        draw_figures(results, folder)
    return folder


def load_runs(folder, include_historical: bool = False, include_quick: bool = False) -> list[dict]:
    """Every run stored in ``folder`` (each subfolder's ``run.json``), oldest first, each with its ``path``.

    Quick runs and historical runs (converted from an older benchmark: see their ``provenance``) only when asked.
    """
    runs = []
    for path in sorted(Path(folder).glob(f"*/{RUN_FILE}")):
        run = json.loads(path.read_text())
        if run.get("format", 1) > FORMAT:
            raise ValueError(f"{path}: run format {run['format']} is newer than this benchmark's ({FORMAT})")
        if (run.get("quick") and not include_quick) or (run.get("historical") and not include_historical):
            continue
        run["path"] = str(path.parent)
        runs.append(run)
    return sorted(runs, key=lambda r: (r["machine"]["date_utc"], r["name"]))


def rows_by(results: dict, section: str = "suite") -> dict[tuple[str, str], dict]:
    """A section's rows by (layer, method)."""
    return {(r["layer"], r["method"]): r for r in results.get(section, [])}


def _machine_line(results: dict) -> str:
    m = results["machine"]
    load = (m.get("loadavg_start") or [float("nan")])[0]
    c = results["ceiling"]
    return (
        f"{m['cpu']}, {m['torch_threads']} thread(s), torch {m['libraries']['torch']}, {m['date_utc']}, "
        f"load {load:.2f}; GEMM ceiling {c['gflops']:.0f} GFLOP/s ({c['library']}, {c['route']})"
    )


def _with_ci(value: float, ci) -> str:
    """'1.23 [1.10, 1.40]' (the value alone where there is no interval)."""
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _suite_table(results: dict, section: str) -> list[str]:
    by = rows_by(results, section)
    layers = list(dict.fromkeys(r["layer"] for r in results[section]))
    methods = [m for m in dict.fromkeys(r["method"] for r in results[section])]
    short = {m: METHODS[m].short if m in METHODS else m for m in methods}
    head = f"{'layer':14s}" + "".join(f"{short[m]:>10s}" for m in methods) + f"{'ratio [95% CI]':>20s}{'%ceil':>7s}"
    lines = [head, "-" * len(head)]
    ceiling = results["ceiling"]["gflops"]
    for name in layers:
        cells = "".join(
            f"{by[(name, m)]['median_s'] * 1e3:10.2f}" if "median_s" in by[(name, m)] else f"{'-':>10s}"
            for m in methods
        )
        fast = by.get((name, "convlib.conv2d"), {})
        if "ratio_to_F" in fast:
            ratio = _with_ci(fast["ratio_to_F"], fast.get("ratio_ci"))
            cells += f"{ratio:>20s}{100 * fast['gflops'] / ceiling:6.0f}%"
        lines.append(f"{name:14s}{cells}")
    return lines


def format_table(results: dict) -> str:
    """The run as text: the ceiling's routes, the suite (median ms per method; convlib.conv2d / F.conv2d with
    its interval and % of the ceiling), the training steps and the allocator probe."""
    lines = [_machine_line(results)]
    for name, r in results["ceiling"]["start"]["routes"].items():
        rate = f"{r['gflops']:7.1f} GFLOP/s" if r["available"] else f"unavailable ({r['reason']})"
        lines.append(f"  GEMM {results['ceiling']['start']['n']}^3 via {name:28s} {r['library']:7s} {rate}")
    for section in ("suite", "extra"):
        if results.get(section):
            lines += ["", f"{section} (median ms per call, {REFERENCE} the reference):"] + _suite_table(
                results, section
            )
    s = results["summary"]
    if "geomean_ratio" in s:
        lines.append(
            f"geometric mean of convlib.conv2d / F.conv2d: {_with_ci(s['geomean_ratio'], s['geomean_ci'])}; "
            f"worst {s['worst_ratio']:.2f} ({s['worst_layer']})"
        )
    for r in results.get("training", []):
        if r["conv"] == "convlib.Conv2d":
            ratio = _with_ci(r["ratio_to_nn"], r["ratio_ci"])
            lines.append(f"training step {r['what']:14s} convlib.Conv2d / nn.Conv2d {ratio}")
    for key, a in s.get("allocator", {}).items():
        lines.append(
            f"allocator {key:36s} raised/default time {a['time_ratio_raised_to_default']:.2f}, "
            f"page faults per call {a['faults_default']:.0f} -> {a['faults_raised']:.0f}"
        )
    if s.get("targets"):
        lines.append("targets: " + "; ".join(f"{k}: {'met' if v else 'missed'}" for k, v in s["targets"].items()))
    return "\n".join(lines)
