"""nbval over the chapters: when a cell fails because CIFAR-10 is missing, the chapter's later cells are skipped.

They would fail too (their variables were never made), and a screen of such failures would bury the one that
matters: convlib.data's ``DataNotFoundError``, whose message says how to get the data. The skip reason repeats it.
"""

from __future__ import annotations

import re

import pytest

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MISSING: dict[str, str] = {}  # notebook path -> why its later cells are skipped


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call" or call.excinfo is None or not outcome.get_result().failed:
        return
    traceback = _ANSI.sub("", getattr(call.excinfo.value, "inner_traceback", None) or "")
    found = re.search(r"^(?:\w+\.)*DataNotFoundError: (.*)$", traceback, re.M)
    if found:
        cell = getattr(call.excinfo.value, "cell_num", "?")
        _MISSING.setdefault(str(item.path), f"CIFAR-10 is missing (cell {cell} failed): {found.group(1)}")


def pytest_runtest_setup(item):
    reason = _MISSING.get(str(item.path))
    if reason is not None:
        pytest.skip(reason)
