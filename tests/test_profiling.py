"""convlib.profiling: the operators PyTorch runs, as its profiler records them, without its log lines."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import convlib
from convlib.profiling import operators


def test_float64_conv2d_on_the_cpu_is_im2col_and_a_product():
    x, k = torch.randn(3, 4, 9, 8, dtype=torch.float64), torch.randn(5, 4, 3, 2, dtype=torch.float64)
    ops = operators(lambda: F.conv2d(x, k, padding=1))
    names = [op.name for op in ops]
    assert names[0] == "aten::conv2d" and "aten::_slow_conv2d_forward" in names
    inside = [op for op in ops if op.parent == "aten::_slow_conv2d_forward"]
    buffers = [op.bytes for op in inside if op.name == "aten::empty" and op.bytes > 0]
    assert buffers == [convlib.im2col(x, (3, 2), padding=1).nbytes]
    assert any(op.name == "aten::view" and op.input_shapes[0] == [5, 4, 3, 2] for op in inside)


def test_a_matrix_product_is_recorded_with_its_shapes():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    ops = operators(lambda: a @ b)
    assert any(op.name in ("aten::mm", "aten::matmul") and [3, 4] in op.input_shapes for op in ops)
    assert all(op.name.startswith("aten::") for op in ops)


def test_the_profilers_log_lines_do_not_reach_stderr(capfd):
    x, k = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)
    operators(lambda: F.conv2d(x, k))
    out, err = capfd.readouterr()
    assert "profiler_start" not in err and "profiler_stop" not in err
