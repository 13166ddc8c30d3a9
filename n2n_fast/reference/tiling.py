"""Pure-PyTorch twin of the tiling kernels (csrc/tiling.h): the test oracle and the CPU fallback.

Written plainly, tile by tile, with slices and adds. Same arguments as the extension ops
(n2n_fast/ops/tiling.py); the geometry comes from n2n_fast/inference/plan.py.
"""
import math

import torch

from ..padding import mirror_index
from ..conventions import BLEND_MODES as MODES
from ..conventions import INPUT_SCALE

WINDOW_FLOOR = 1e-3  # csrc/tiling.h kWindowFloor
GAUSSIAN_SIGMA_FRACTION = 0.125  # csrc/tiling.h kGaussianSigmaFraction
_SCALE = INPUT_SCALE  # 1/peak of each integer dtype, as every implementation rounds it


def blend_window(length, ramp, mode):
    """Un-normalised window (float64, `length`) at pixel centres, floored at WINDOW_FLOOR."""
    centre = torch.arange(length, dtype=torch.float64) + 0.5
    if mode == MODES["gaussian"]:
        sigma = GAUSSIAN_SIGMA_FRACTION * length
        window = torch.exp(-(centre - 0.5 * length) ** 2 / (2.0 * sigma * sigma))
    else:
        window = torch.ones(length, dtype=torch.float64)
        if ramp > 0:
            edge = torch.minimum(centre, length - centre)
            window = torch.where(edge < ramp, 0.5 - 0.5 * torch.cos(math.pi * edge / ramp), window)
    return window.clamp(min=WINDOW_FLOOR)


def axis_weights(origins, length, ramp, mode):
    """(count, length) float32: normalised weight of each tile along one axis at each of its offsets."""
    origins = [int(o) for o in origins]
    weights = []
    if mode == MODES["stitch"]:
        margin = ramp // 2
        for i, origin in enumerate(origins):
            positions = range(origin, origin + length)
            owner = [next((j for j, o in enumerate(origins) if o + margin <= p < o + length - margin), -1)
                     for p in positions]
            weights.append(torch.tensor([1.0 if w == i else 0.0 for w in owner], dtype=torch.float32))
        return torch.stack(weights)
    window = blend_window(length, ramp, mode)
    for origin in origins:
        positions = torch.arange(origin, origin + length)
        total = torch.zeros(length, dtype=torch.float64)
        for other in origins:
            offset = positions - other
            inside = (offset >= 0) & (offset < length)
            total += torch.where(inside, window[offset.clamp(0, length - 1)], torch.zeros((), dtype=torch.float64))
        weights.append((window / total).to(torch.float32))
    return torch.stack(weights)


def to_unit(pixels, dtype):
    """Integers scaled to [0, 1] by their peak (multiplying by the float32 reciprocal, as the kernels do)."""
    scale = _SCALE.get(pixels.dtype, 1.0)
    values = pixels.to(torch.float32)
    if scale != 1.0:
        values = values * torch.tensor(scale, dtype=torch.float32)
    return values.to(dtype)


def tile_gather(image, index, row_origins, col_origins, tile_h, tile_w, height, row0, dtype):
    """(K, C, tile_h, tile_w) tiles of `dtype` from image (N, C, rows, W) holding image rows [row0, row0 + rows)."""
    width = image.shape[-1]
    tiles = []
    for n, iy, ix in index.tolist():
        top, left = int(row_origins[iy]), int(col_origins[ix])
        rows = mirror_index(torch.arange(top, top + tile_h, device=image.device), height) - row0
        cols = mirror_index(torch.arange(left, left + tile_w, device=image.device), width)
        tiles.append(to_unit(image[n].index_select(1, rows).index_select(2, cols), dtype))
    if not tiles:
        return torch.empty((0, image.shape[1], tile_h, tile_w), dtype=dtype, device=image.device)
    return torch.stack(tiles)


def tile_blend(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, mode):
    """Adds the weighted tiles, in index order, into out (float32 (N, C, rows, width) = image rows from row0)."""
    tile_h, tile_w = tiles.shape[-2:]
    weight_y = axis_weights(row_origins.tolist(), tile_h, overlap, mode).to(out.device)
    weight_x = axis_weights(col_origins.tolist(), tile_w, overlap, mode).to(out.device)
    band_end = row0 + out.shape[2]
    for k, (n, iy, ix) in enumerate(index.tolist()):
        top, left = int(row_origins[iy]), int(col_origins[ix])
        y0, y1 = max(top, row0, 0), min(top + tile_h, band_end, height)
        x0, x1 = max(left, 0), min(left + tile_w, width)
        if y0 >= y1 or x0 >= x1:
            continue
        weight = weight_y[iy, y0 - top:y1 - top, None] * weight_x[ix, None, x0 - left:x1 - left]
        values = tiles[k, :, y0 - top:y1 - top, x0 - left:x1 - left].to(torch.float32) * weight
        out[n, :, y0 - row0:y1 - row0, x0:x1] += torch.where(weight == 0, 0.0, values)
    return None


# ---- volumes (N, C, planes, H, W): the same rules along z, y and x (csrc/tiling3d.h)

def _slab_planes(front, tile_d, depth, plane0, planes, device):
    """Slab positions of the (mirrored) volume planes a tile starting at plane `front` reads; ValueError when one
    lies outside the held slab [plane0, plane0 + planes)."""
    wanted = mirror_index(torch.arange(front, front + tile_d, device=device), depth)
    low, high = int(wanted.min()), int(wanted.max())
    if low < plane0 or high >= plane0 + planes:
        raise ValueError(f"tile_gather_3d: volume: a tile at plane {front} reads volume planes [{low}, {high}] but "
                         f"the slab holds planes [{plane0}, {plane0 + planes})")
    return wanted - plane0


def tile_gather_3d(volume, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth, plane0, dtype):
    """(K, C, tile_d, tile_h, tile_w) tiles of `dtype` from volume (N, C, planes, H, W) holding volume planes
    [plane0, plane0 + planes) of a volume `depth` planes deep; index rows (n, iz, iy, ix)."""
    planes, height, width = volume.shape[-3:]
    device = volume.device
    tiles = []
    for n, iz, iy, ix in index.tolist():
        front, top, left = int(z_origins[iz]), int(y_origins[iy]), int(x_origins[ix])
        zs = _slab_planes(front, tile_d, depth, plane0, planes, device)
        rows = mirror_index(torch.arange(top, top + tile_h, device=device), height)
        cols = mirror_index(torch.arange(left, left + tile_w, device=device), width)
        tiles.append(to_unit(volume[n].index_select(1, zs).index_select(2, rows).index_select(3, cols), dtype))
    if not tiles:
        return torch.empty((0, volume.shape[1], tile_d, tile_h, tile_w), dtype=dtype, device=device)
    return torch.stack(tiles)


def tile_blend_3d(out, tiles, index, z_origins, y_origins, x_origins, depth, height, width, plane0, overlap_z,
                  overlap_y, overlap_x, blend_mode):
    """Adds the weighted tiles, in index order, into out (float32 (N, C, planes, height, width) = volume planes
    from plane0); the weight is (w_z * w_y) * w_x in float32, each axis normalised as in 2-D."""
    tile_d, tile_h, tile_w = tiles.shape[-3:]
    weight_z = axis_weights(z_origins.tolist(), tile_d, overlap_z, blend_mode).to(out.device)
    weight_y = axis_weights(y_origins.tolist(), tile_h, overlap_y, blend_mode).to(out.device)
    weight_x = axis_weights(x_origins.tolist(), tile_w, overlap_x, blend_mode).to(out.device)
    slab_end = plane0 + out.shape[2]
    for k, (n, iz, iy, ix) in enumerate(index.tolist()):
        front, top, left = int(z_origins[iz]), int(y_origins[iy]), int(x_origins[ix])
        z0, z1 = max(front, plane0, 0), min(front + tile_d, slab_end, depth)
        y0, y1 = max(top, 0), min(top + tile_h, height)
        x0, x1 = max(left, 0), min(left + tile_w, width)
        if z0 >= z1 or y0 >= y1 or x0 >= x1:
            continue
        zs, ys, xs = slice(z0 - front, z1 - front), slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)
        weight = (weight_z[iz, zs, None, None] * weight_y[iy, None, ys, None]) * weight_x[ix, None, None, xs]
        values = tiles[k, :, zs, ys, xs].to(torch.float32) * weight
        out[n, :, z0 - plane0:z1 - plane0, y0:y1, x0:x1] += torch.where(weight == 0, 0.0, values)
    return None
