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


# ---- volumes. A binary built before the 3-D ops has no schema for these fakes to attach to; it must still load
# (its 2-D ops serve, and _backend refuses the 3-D extension path with "has no op ... (rebuild it)").
if hasattr(torch.ops.n2n_fast, "tile_gather_3d"):

    @torch.library.register_fake("n2n_fast::tile_gather_3d")
    def _tile_gather_3d_fake(volume, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth, plane0,
                             dtype):
        return volume.new_empty((index.shape[0], volume.shape[1], tile_d, tile_h, tile_w), dtype=dtype)

    @torch.library.register_fake("n2n_fast::tile_blend_3d")
    def _tile_blend_3d_fake(out, tiles, index, z_origins, y_origins, x_origins, depth, height, width, plane0,
                            overlap_z, overlap_y, overlap_x, blend_mode):
        return None


def tile_gather_3d(volume, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth, plane0, dtype):
    """(K, C, tile_d, tile_h, tile_w) tiles of `dtype` from a slab of volume planes; integers scaled to [0, 1],
    mirror padding outside the volume."""
    return torch.ops.n2n_fast.tile_gather_3d(volume, index, z_origins, y_origins, x_origins, int(tile_d),
                                             int(tile_h), int(tile_w), int(depth), int(plane0), dtype)


def tile_blend_3d(out, tiles, index, z_origins, y_origins, x_origins, depth, height, width, plane0, overlap_z,
                  overlap_y, overlap_x, blend_mode):
    """Adds the weighted tiles into the float32 slab `out` in place, deterministically."""
    torch.ops.n2n_fast.tile_blend_3d(out, tiles, index, z_origins, y_origins, x_origins, int(depth), int(height),
                                     int(width), int(plane0), int(overlap_z), int(overlap_y), int(overlap_x),
                                     int(blend_mode))
