"""convlib: the shared code of *Convolution as Matrix Multiplication*.

Every convolution here takes PyTorch's layouts and arguments (input N x C x H x W, weight O x C/groups x kh x kw,
``stride``/``padding``/``dilation`` as an int or a pair, ``groups``) and returns what
``torch.nn.functional.conv2d`` returns, to floating-point round-off. Bad arguments raise a ``TypeError`` or
``ValueError`` that names the problem.
"""

from . import animate, data, fast, kernels, nhwc, plot, training, widgets
from .autograd import Conv2d, Conv2dFunction
from .entry import EntryProducts, entry_products
from .fast import conv2d
from .im2col import col2im, conv2d_im2col, im2col, patch_view
from .naive import conv2d_loops, conv2d_naive, corr2d
from .shapes import conv2d_macs, conv2d_output_shape, conv_output_size
from .shifted import conv2d_shifted
from .toeplitz import conv2d_toeplitz, conv_matrix, conv_matrix_loops, doubly_blocked_toeplitz
from .transposed import conv_transpose2d, flip_swap_kernel, insert_zeros, transposed_output_size

__version__ = "0.1.0"

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
    "plot",
    "conv2d_shifted",
    "nhwc",
    "animate",
    "widgets",
    "kernels",
    "training",
    "conv2d",
    "fast",
]
