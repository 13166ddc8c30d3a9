"""Shared by the 3-D tiling op tests: the dtype tables, odd volume shapes, random volumes, a tile grid."""
import pytest
import torch

from n2n_fast import _backend, _ext
from n2n_fast.conventions import BLEND_MODES
from n2n_fast.inference.plan import axis_origins

IN_DTYPES = _backend.TILE_IMAGES
OUT_DTYPES = _backend.KERNEL_FLOATS  # the tile dtypes the models produce (csrc dispatch_tile_dtype)
# (N, C, D, H, W): one voxel, one plane, odd sizes, a volume smaller than a tile along some axes
SHAPES = ((1, 1, 1, 1, 1), (1, 2, 1, 5, 19), (2, 1, 7, 13, 37), (1, 3, 13, 37, 41))


def extension_ops():
    """n2n_fast.ops.tiling, failing the test when the loaded extension lacks the 3-D ops."""
    if _ext.ops() is None or not _ext.has_op("tile_gather_3d"):
        pytest.fail(f"the extension with the 3-D tiling ops must be built for this test suite: {_ext.reason()}")
    from n2n_fast.ops import tiling

    return tiling


def random_volume(gen, shape, dtype):  # also the 2-D images of tests/test_ops_tiling.py
    """A random volume of `dtype`: integers over their whole range, floats in [0, 1)."""
    values = torch.rand(shape, generator=gen)
    if dtype == torch.uint8:
        return (values * 255).round().to(dtype)
    if dtype == torch.uint16:
        return (values * 65535).round().to(torch.int32).to(dtype)
    return values.to(dtype)


class Grid:
    """A tile grid over a volume: per-axis origins (from inference.plan.axis_origins), tile sizes, overlaps."""

    def __init__(self, shape, tile, overlap, alignment=4, mode="cosine"):
        self.shape = shape
        origins, self.tile, self.overlap = [], [], []
        for length, t, o in zip(shape[2:], tile, overlap):
            axis, extent = axis_origins(length, t, t - o, alignment, o // 2 if mode == "stitch" else 0)
            origins.append(torch.tensor(axis))
            self.tile.append(extent)
            self.overlap.append(o)
        self.z, self.y, self.x = origins
        self.mode = BLEND_MODES[mode]
        self.index = torch.tensor([(n, a, b, c) for n in range(shape[0]) for a in range(len(self.z))
                                   for b in range(len(self.y)) for c in range(len(self.x))])

    def gather(self, impl, volume, dtype, plane0=0, index=None):
        index = self.index if index is None else index
        return impl.tile_gather_3d(volume, index, self.z, self.y, self.x, *self.tile, self.shape[2], plane0, dtype)

    def blend(self, impl, out, tiles, plane0=0, index=None):
        index = self.index if index is None else index
        impl.tile_blend_3d(out, tiles, index, self.z, self.y, self.x, *self.shape[2:], plane0, *self.overlap,
                           self.mode)
