"""What glibc's mmap threshold does to large temporaries, measured both ways in fresh processes.

glibc's ``malloc`` serves a request above its mmap threshold (128 KiB at first, raised dynamically up to
32 MiB on 64-bit Linux) with fresh pages from the kernel, returned on ``free``: every call that allocates such a
temporary pays a page fault per 4 KiB page it touches. Below the threshold, freed memory stays in the process and
the next call reuses it. The benchmark itself runs as a user's process would (glibc's defaults); this probe times
a few methods with large temporaries in two child processes, one with the defaults and one with the threshold
raised (through glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` environment variables), and
counts the minor page faults of every call (a count, independent of the machine's load).

    python -m convlib.bench.allocator --layers resnet-s1 --repeat 5    # one child's measurement, as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["SETTINGS", "PROBE_METHODS", "TEMPORARY_BYTES", "probe", "allocator_probe"]

#: name -> environment of the child process
SETTINGS = {
    "glibc default": {},
    "mmap threshold raised": {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)},
}
PROBE_METHODS = ("im2col (NCHW)", "convlib.conv2d", "F.conv2d")
TEMPORARY_BYTES = 64 << 20
TEMPORARY = "64 MiB temporary (empty + fill)"


def _minflt() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _counting(fn, faults: list):
    def call():
        f0 = _minflt()
        fn()
        faults.append(_minflt() - f0)

    return call


def probe(layers, repeat: int = 5, warmup: int = 2) -> dict:
    """In this process: time ``PROBE_METHODS`` on the named suite layers and a fresh 64 MiB temporary,
    interleaved, with the minor page faults of every timed call. Returns {name: stats + faults}."""
    from .methods import METHODS
    from .suite import EXTRA, SUITE
    from .timing import stats, time_interleaved

    fns, faults = {}, {}
    for name in layers:
        layer = {**SUITE, **EXTRA}[name]
        x, w, b, kw = layer.tensors()
        for m in PROBE_METHODS:
            key = f"{name} / {m}"
            faults[key] = []
            fns[key] = _counting(METHODS[m].make(x, w, b, kw), faults[key])
    faults[TEMPORARY] = []
    fns[TEMPORARY] = _counting(lambda: torch.empty(TEMPORARY_BYTES // 4).fill_(1.0), faults[TEMPORARY])
    times = time_interleaved(fns, repeat, warmup=warmup)
    out = {}
    for key, t in times.items():
        timed = faults[key][-len(t["wall"]) :]  # the warm-up calls counted first
        out[key] = {**stats(t), "faults_median": statistics.median(timed), "faults": timed}
    return out


def _child(setting: str, layers, repeat: int, threads: int, timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(SETTINGS[setting])
    src = str(Path(__file__).resolve().parents[2])  # where this convlib is imported from
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "convlib.bench.allocator", "--layers", ",".join(layers)]
    cmd += ["--repeat", str(repeat), "--threads", str(threads)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout)


def allocator_probe(layers, repeat: int = 5, rounds: int = 2, threads: int = 1, timeout: float = 300) -> dict:
    """Run ``probe`` in child processes, alternating the settings (default, raised, raised, default, ...), and
    pool the samples of each setting. Returns {"settings": SETTINGS, "results": {setting: {name: ...}}}."""
    from .timing import stats

    order = list(SETTINGS)
    pooled = {s: {} for s in SETTINGS}
    for r in range(rounds):
        for setting in order if r % 2 == 0 else order[::-1]:
            for key, row in _child(setting, layers, repeat, threads, timeout).items():
                acc = pooled[setting].setdefault(key, {"wall": [], "cpu_median": [], "faults": []})
                acc["wall"] += row["samples_s"]
                acc["cpu_median"].append(row["cpu_median_s"])
                acc["faults"] += row["faults"]
    results = {}
    for setting, rows in pooled.items():
        results[setting] = {}
        for key, acc in rows.items():
            s = stats({"wall": acc["wall"], "cpu": acc["cpu_median"]})
            results[setting][key] = {**s, "faults_median": statistics.median(acc["faults"]), "faults": acc["faults"]}
    return {"settings": SETTINGS, "rounds": rounds, "results": results}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m convlib.bench.allocator", description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="resnet-s1", help="suite layer names, comma-separated")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(probe(args.layers.split(","), args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
