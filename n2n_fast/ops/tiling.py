"""Python side of the extension's tiling ops: fake (meta) kernels and thin wrappers.

Same arguments as n2n_fast/reference/tiling.py; see csrc/n2n_fast.cpp for the schemas.
"""
import torch

from .. import _C  # noqa: F401  (registers the schemas these fakes attach to)


@torch.library.register_fake("n2n_fast::tile_gather")
def _tile_gather_fake(image, index, row_origins, col_origins, tile_h, tile_w, height, row0, dtype):
    return image.new_empty((index.shape[0], image.shape[1], tile_h, tile_w), dtype=dtype)


@torch.library.register_fake("n2n_fast::tile_blend")
def _tile_blend_fake(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, blend_mode):
    return None


def tile_gather(image, index, row_origins, col_origins, tile_h, tile_w, height, row0, dtype):
    """(K, C, tile_h, tile_w) tiles of `dtype`; integers scaled to [0, 1], mirror padding outside the image."""
    return torch.ops.n2n_fast.tile_gather(image, index, row_origins, col_origins, int(tile_h), int(tile_w),
                                          int(height), int(row0), dtype)


def tile_blend(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, blend_mode):
    """Adds the weighted tiles into the float32 band `out` in place, deterministically."""
    torch.ops.n2n_fast.tile_blend(out, tiles, index, row_origins, col_origins, int(height), int(width), int(row0),
                                  int(overlap), int(blend_mode))
