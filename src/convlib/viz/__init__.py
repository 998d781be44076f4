"""convlib.viz: every picture of the book, in one visual language.

What is where (each name loads its module, and matplotlib, on first use; ``convlib.viz.frames`` needs torch
alone, so what an animation depicts can be computed and tested without a plotting library):

- ``style``: the palette (:data:`PALETTE`), font sizes, the widest figure, and :func:`draw_cells`, the one grid
  primitive every grid and matrix figure draws with (tick labels count the input's rows and columns, the
  zero padding at -1);
- ``grids``: one channel as a grid of numbers (:func:`show_grid`), the window positions of one axis;
- ``matrices``: heatmaps (:func:`show_matrix`), the convolution matrix and its Toeplitz blocks, sparsity;
- ``panels``: one computation laid out panel by panel (a layer, one entry by hand, a patch column, stamps);
- ``images``: sets of images and filters, curves;
- ``frames``: the numbers every animation shows (pure torch);
- ``player``: :class:`Animation` and its offline HTML player;
- ``conv_animations``, ``stamp_animation``, ``settings_animation``, ``tap_animation``, ``winograd_animation``: the
  animations;
- ``explorers``: the live ipywidgets explorer.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "style": ["PALETTE", "WINDOW_COLORS", "FONT", "MAX_FIG_WIDTH", "ELL", "role_cmap", "role_colors", "outline"]
    + ["draw_cells", "text_color", "number_format"],
    "grids": ["show_grid", "show_window_positions"],
    "matrices": ["show_matrix", "show_conv_matrix", "show_toeplitz_blocks", "spy", "kernel_row_colors"],
    "panels": ["show_conv_layer", "show_entry_products", "show_patch_column", "show_stamps", "show_zero_insertion"],
    "images": ["show_images", "show_filters", "plot_curves"],
    "frames": ["DEFAULT_SETTINGS", "window_sum_frames", "patch_matrix_frames", "toeplitz_row_frames"]
    + ["transposed_stamp_frames", "settings_frames", "feature_map_frames"],
    "player": ["Animation", "to_html", "MAX_KB", "DPI"],
    "conv_animations": ["animate_window_sum", "animate_patch_matrix", "animate_toeplitz_row", "animate_feature_map"],
    "stamp_animation": ["animate_transposed_stamp"],
    "settings_animation": ["animate_settings"],
    "tap_animation": ["animate_tap_slices"],
    "winograd_animation": ["animate_winograd_tiles", "winograd_tile_frames"],
    "explorers": ["ExplorerView", "explorer_view", "explorer"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [*_HOMES, *_MODULE_OF]


def __getattr__(name):
    if name in _HOMES:
        return importlib.import_module(f".{name}", __name__)
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convlib.viz' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
