"""Numbers in a chapter's prose that nothing in the chapter computes.

A number typed into markdown drifts from the output it describes. A number in a chapter's prose is *backed* when
it appears

- in the chapter's stored outputs (what its cells print, display or glue with myst-nb's ``glue``),
- in an ``assert`` of one of its code cells (the adjacent check the chapter contract asks for), or
- in the allow-list below: small constants, years, and a few numbers that are definitions rather than results.

Everything else is *unbacked*. ``python tests/prose_numbers.py [chapters/NN_x.ipynb ...]`` lists them.

What counts as a number: a run of digits, with an optional decimal part and exponent (``1.85``, ``1e-5``,
``4,849``), compared as written after dropping thousands separators (so "1.8" in the prose is not backed by a
printed "1.85": round in the code, and print or glue the rounded value). Markdown that is not prose is skipped:
code spans and blocks, link targets, citation and cross-reference roles, HTML tags and directive options.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Integers up to this are small constants (kernel sizes, strides, counts of things a reader can see).
SMALL = 12
# Years of the sources the book cites.
YEARS = range(1950, 2031)
# Numbers that are definitions or conventions rather than results, with why each is allowed.
ALLOWED = {
    "16": "float16 / 16-bit: a dtype's name",
    "32": "float32 / 32 x 32 CIFAR-10 images / 32-bit: names and the data set's fixed size",
    "64": "float64 / 64-bit: a dtype's name",
    "224": "the ImageNet input size the cited networks define",
    "227": "the AlexNet input size the CS231n notes discuss",
    "1.0": "version 1.x of a tool",
    "1.x": "version 1.x of a tool",
    "10": "CIFAR-10: the data set's name",
    "100": "per cent",
}

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
_SKIP = [
    re.compile(r"```.*?```", re.S),  # code blocks and directives' bodies are checked as code, not prose
    re.compile(r"`[^`]*`"),  # code spans, and the targets of {cite}`...`, {doc}`...`, {glue:text}`...`
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"<[^>]+>"),  # HTML tags
    re.compile(r"^:[\w-]+:.*$", re.M),  # directive options (:class: dropdown, :label: ...)
    re.compile(r"\{[\w:-]+\}"),  # role names
    re.compile(r"\\(?:left|right|[a-zA-Z]+)\b"),  # LaTeX commands
]


def _norm(token: str) -> str:
    return token.replace(",", "").lstrip("-")


def prose_numbers(markdown: str) -> list[str]:
    """The numbers written in a markdown cell's prose (code, links, roles and tags removed)."""
    markdown = markdown.replace("{,}", ",").replace("\\,", ",")  # LaTeX thousands separators: 12{,}544
    for pattern in _SKIP:
        markdown = pattern.sub(" ", markdown)
    return [_norm(m.group()) for m in _NUMBER.finditer(markdown)]


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    parts = [data.get("text/plain", ""), data.get("text/markdown", ""), data.get("text/latex", "")]
    return "\n".join("".join(p) if isinstance(p, list) else p for p in parts)


def backed_numbers(cells: list[dict]) -> set[str]:
    """Every number in the chapter's outputs and in the asserts of its code cells."""
    texts = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        texts += [_output_text(o) for o in cell.get("outputs", [])]
        source = "".join(cell["source"])
        asserts = [line for line in source.splitlines() if line.lstrip().startswith("assert")]
        texts += [re.sub(r"(?<=\d)_(?=\d)", "", line) for line in asserts]  # 7_375_872 is 7375872
    return {_norm(m.group()) for text in texts for m in _NUMBER.finditer(text)}


def allowed(number: str) -> bool:
    if number in ALLOWED:
        return True
    if re.fullmatch(r"\d+", number):
        value = int(number)
        return value <= SMALL or value in YEARS
    return False


def unbacked(path: Path) -> list[tuple[int, str]]:
    """``(cell index, number)`` for every number in the prose that nothing in the chapter backs."""
    cells = json.loads(Path(path).read_text())["cells"]
    backed = backed_numbers(cells)
    found = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for number in prose_numbers("".join(cell["source"])):
            if number not in backed and not allowed(number):
                found.append((index, number))
    return found


def main(paths) -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(p) for p in paths] or sorted((root / "chapters").glob("*.ipynb"))
    total = 0
    for path in paths:
        rows = unbacked(path)
        total += len(rows)
        print(f"{path.name}: {len(rows)} unbacked")
        for index, number in rows:
            print(f"  cell {index}: {number}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
