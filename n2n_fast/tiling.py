"""Tile gather and blend: the two ops tiled inference runs around the network (n2n_fast/inference/denoise.py).

`tile_gather` cuts overlapping, mirror-padded tiles out of a band of image rows; `tile_blend` weights the
network's outputs and sums them back seam-free, in a fixed order (docs/tiling.md). `tile_gather_3d` and
`tile_blend_3d` do the same for a slab of volume planes. Served by the extension's C++
(CPU) and CUDA kernels, or by the pure-PyTorch twins in n2n_fast/reference/tiling.py (n2n_fast/_backend.py picks).
"""
from . import _backend


def tile_ops(device, backend=None, dims=2):
    """(gather, blend): the implementations serving `device` of tile_gather and tile_blend (dims=2: images
    (N, C, H, W)) or of tile_gather_3d and tile_blend_3d (dims=3: volumes (N, C, D, H, W)). backend= forces one:
    "extension" | "reference"; None takes the fastest that serves."""
    if dims not in (2, 3):
        raise ValueError(f"dims: expected 2 (images) or 3 (volumes), got {dims!r}")
    suffix = "" if dims == 2 else "_3d"
    return (_backend.choose("tile_gather" + suffix, device, backend)[1],
            _backend.choose("tile_blend" + suffix, device, backend)[1])
