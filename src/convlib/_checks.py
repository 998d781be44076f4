"""Old home of the argument checks, kept while the support modules move to :mod:`convlib.args`."""

from __future__ import annotations

from . import args as _args
from .args import check_groups, check_tensor, conv2d_args, pair

__all__ = ["check_groups", "check_tensor", "conv2d_args", "pair", "out_size", "check_size"]

out_size = _args.output_length
_is_int = _args.is_int


def check_size(size, name: str) -> int:
    return _args.as_int(size, name, minimum=1)
