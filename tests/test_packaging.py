"""pyproject.toml declares what the code imports, in ranges that requirements.txt's exact pins satisfy.

Read with ``ast`` (every import, also those inside functions that load on first use), mapped to the distributions
that provide them by ``importlib.metadata``: convlib's imports must be declared (core or an optional group), the
chapters' in the core or the ``book`` group, the tests' in the core or the ``test`` group. And the core really
needs nothing else: ``import convlib`` and its algorithms run with every optional package made unimportable.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])


def _imports(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party(names: set[str], local: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in local and n != "convlib"}


def _code_of_notebook(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = ("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return "\n".join(re.sub(r"^\s*[%!].*$", "", cell, flags=re.M) for cell in lines)  # no magics or shell lines


def _requirements(group: str | None) -> list[Requirement]:
    """The requirements of the core (``None``) or of one optional group, with the groups it names expanded."""
    raw = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
    out = []
    for req in map(Requirement, raw):
        if canonicalize_name(req.name) == NAME:
            for extra in sorted(req.extras):
                out += _requirements(extra)
        else:
            out.append(req)
    return out


def _declared(*groups: str | None) -> set[str]:
    return {canonicalize_name(r.name) for g in groups for r in _requirements(g)}


def _missing(modules: set[str], declared: set[str]) -> dict[str, list[str]]:
    """Each module that no declared distribution provides, with the distributions that do provide it here."""
    providers = packages_distributions()
    return {
        m: providers.get(m, ["(not installed)"])
        for m in sorted(modules)
        if not declared & {canonicalize_name(d) for d in providers.get(m, [])}
    }


def _convlib_imports() -> set[str]:
    modules = set()
    for path in (ROOT / "src" / "convlib").rglob("*.py"):
        modules |= _imports(path.read_text())
    return _third_party(modules, local=set())


def test_every_package_convlib_imports_is_declared():
    modules = _convlib_imports()
    assert {"torch", "numpy"} <= modules  # the scan sees the imports
    groups = [None, *PROJECT["optional-dependencies"]]
    assert not _missing(modules, _declared(*groups)), "declare these in pyproject.toml (core or an optional group)"


def test_every_package_the_chapters_import_is_in_the_book_group():
    modules = set()
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        modules |= _imports(_code_of_notebook(path))
    modules = _third_party(modules, local=set())
    assert "matplotlib" in modules
    assert not _missing(modules, _declared(None, "book")), "declare these in pyproject.toml's book group"


def test_every_package_the_tests_import_is_in_the_test_group():
    local = {p.stem for folder in ("tests", "_ext") for p in (ROOT / folder).glob("*.py")}  # tests and _ext/
    modules = set()
    for path in (ROOT / "tests").glob("*.py"):
        modules |= _imports(path.read_text())
    modules = _third_party(modules, local=local)
    assert {"pytest", "hypothesis"} <= modules
    assert not _missing(modules, _declared(None, "test")), "declare these in pyproject.toml's test group"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt pins exact versions: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


@pytest.mark.parametrize("group", [None, *PROJECT["optional-dependencies"]])
def test_requirements_txt_pins_satisfy_pyprojects_ranges(group):
    pins = _pins()
    for req in _requirements(group):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} (pyproject.toml) is not pinned in requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.txt pins {name}=={pins[name]}, outside pyproject.toml's {req}"
        )


# The core with nothing optional: a finder that refuses the optional packages' modules.
_CORE_ONLY = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (optional: not installed)")

sys.meta_path.insert(0, Refuse())
import torch, convlib
x, w = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
ref = torch.nn.functional.conv2d(x, w, padding=1)
for f in (convlib.conv2d, convlib.conv2d_im2col, convlib.conv2d_shifted, convlib.conv2d_toeplitz):
    torch.testing.assert_close(f(x, w, padding=1), ref)
torch.testing.assert_close(convlib.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)(x).shape, ref.shape)
M = convlib.doubly_blocked_toeplitz(w, (3, 8, 8))  # scipy: a core dependency
import convlib.data  # loads without torchvision; needs it only to read images
print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


def test_the_core_runs_with_the_core_dependencies_alone():
    """Every package convlib imports that the core does not declare is made unimportable."""
    core, providers = _declared(None), packages_distributions()
    optional = {m for m in _convlib_imports() if not core & {canonicalize_name(d) for d in providers.get(m, [])}}
    assert {"matplotlib", "torchvision", "PIL", "ipywidgets"} <= optional
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", _CORE_ONLY, ",".join(sorted(optional))],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
