"""Tile gather and blend: the two ops tiled inference runs around the network (n2n_fast/inference/denoise.py).

`tile_gather` cuts overlapping, mirror-padded tiles out of a band of image rows; `tile_blend` weights the
network's outputs and sums them back seam-free, in a fixed order (docs/tiling.md). Served by the extension's C++
(CPU) and CUDA kernels, or by the pure-PyTorch twins in n2n_fast/reference/tiling.py (n2n_fast/_backend.py picks).
"""
from . import _backend


def tile_ops(device, backend=None):
    """(gather, blend): the implementations of tile_gather and tile_blend that serve `device` (backend= forces
    one: "extension" | "reference"; None takes the fastest that serves)."""
    return _backend.choose("tile_gather", device, backend)[1], _backend.choose("tile_blend", device, backend)[1]
