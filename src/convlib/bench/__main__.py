"""The command line: ``python -m convlib.bench --out FOLDER [--quick] ...`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __doc__ as _doc
from .report import format_table, write_run
from .run import SECTIONS, run


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m convlib.bench", description=_doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder of stored runs (this run goes in a new subfolder)")
    p.add_argument("--quick", action="store_true", help="a small version for tests (seconds)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeat", type=int, default=None, help="timed calls per method and layer (default 21, quick 5)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the methods are device-agnostic torch)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--no-figures", action="store_true", help="store the numbers only")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    sections = tuple(s for s in args.sections.split(",") if s)
    results = run(args.quick, args.repeat, args.threads, args.device, progress=not args.no_progress, sections=sections)
    folder = write_run(results, args.out, figures=not args.no_figures)
    print(format_table(results))
    print(f"took {results['machine']['duration_s']:.0f} s; stored in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
