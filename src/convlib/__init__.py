"""convlib: the shared code of *Convolution as Matrix Multiplication*.

Every convolution here takes PyTorch's layouts and arguments (input N x C x H x W, weight O x C/groups x kh x kw,
``stride``/``padding``/``dilation`` as an int or a pair, ``groups``) and returns what
``torch.nn.functional.conv2d`` returns, to floating-point round-off. Bad arguments raise a ``TypeError`` or
``ValueError`` that names the problem (:mod:`convlib.args` holds these conventions, written once).

``import convlib`` loads the algorithms, which need nothing beyond torch and numpy. The support modules load when
first used (``convlib.viz``, ``convlib.data``, ...): a reader who wants ``conv2d_im2col`` does not pay for the
plotting stack.
"""

import importlib

from . import args, fast, fft, winograd
from .autograd import Conv2d, Conv2dFunction
from .entry import EntryProducts, entry_products
from .fast import conv2d
from .fft import (
    circulant_eigenvalues,
    circulant_factors,
    circular_conv_matrix,
    conv2d_fft,
    dft2_matrix,
    dft_matrix,
    fft_canvas,
    fft_length,
    fft_plan,
    frequency_matrices,
    kernel_canvas,
)
from .im2col import col2im, conv2d_im2col, im2col, patch_view
from .naive import conv2d_loops, conv2d_naive, corr2d
from .shapes import conv2d_macs, conv2d_output_shape, conv_output_size
from .shifted import conv2d_shifted
from .toeplitz import conv2d_toeplitz, conv_matrix, conv_matrix_loops, doubly_blocked_toeplitz
from .transformed import KernelCache
from .transposed import conv_transpose2d, flip_swap_kernel, insert_zeros, transposed_output_size
from .winograd import (
    amplification,
    conv2d_winograd,
    multiplications,
    polynomial_product,
    toom_cook,
    transform_growth,
    winograd_1d,
    winograd_2d,
    winograd_kernel,
    winograd_plan,
)

__version__ = "0.1.0"

# Submodules loaded on first use (PEP 562): pictures and explorers, data sets, training, costs and the benchmark.
_LAZY = ("bench", "costs", "data", "kernels", "nhwc", "profiling", "training", "viz")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'convlib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "conv_output_size",
    "conv2d_output_shape",
    "conv2d_macs",
    "conv2d_naive",
    "corr2d",
    "conv2d_loops",
    "im2col",
    "col2im",
    "conv2d_im2col",
    "patch_view",
    "Conv2dFunction",
    "Conv2d",
    "conv_matrix",
    "conv2d_toeplitz",
    "conv_matrix_loops",
    "doubly_blocked_toeplitz",
    "conv_transpose2d",
    "transposed_output_size",
    "insert_zeros",
    "flip_swap_kernel",
    "entry_products",
    "EntryProducts",
    "data",
    "viz",
    "conv2d_shifted",
    "nhwc",
    "kernels",
    "training",
    "conv2d",
    "fast",
    "args",
    "bench",
    "fft",
    "winograd",
    "costs",
    "conv2d_fft",
    "fft_plan",
    "fft_canvas",
    "fft_length",
    "dft_matrix",
    "dft2_matrix",
    "circular_conv_matrix",
    "kernel_canvas",
    "circulant_eigenvalues",
    "circulant_factors",
    "frequency_matrices",
    "KernelCache",
    "conv2d_winograd",
    "winograd_plan",
    "winograd_kernel",
    "toom_cook",
    "polynomial_product",
    "winograd_1d",
    "winograd_2d",
    "multiplications",
    "amplification",
    "transform_growth",
]
