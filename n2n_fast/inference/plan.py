"""Tile geometry of tiled inference: where the tiles go along each axis, and the argument checks it implies.

Tiles are aligned to the network's downsampling factor (32 for the paper U-Net): tile sizes and strides are
multiples of it and origins sit on its grid, so every tile sees the same pooling phase as whole-image inference.
Along an axis of length L the origins are 0, s, 2s, ... while a tile ends before L, then one last tile shifted
back onto the grid so it ends at or just past L (past pixels are mirror padding, docs/design.md §5). A tile larger
than the image shrinks to the image rounded up to the alignment: one padded tile.
Stitch mode tiles the image mirror-padded by margin = overlap / 2 on every side, so each tile's centre (its
kept part) abuts the next: the same plan on length L + 2 * margin, shifted by -margin.
csrc/tiling.h consumes these origins; n2n_fast/reference/tiling.py too.
"""
from dataclasses import dataclass

from ..conventions import BLEND_MODES as MODES


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def stride_for(tile, overlap, alignment):
    """Tile step: tile - overlap rounded down to the alignment (a larger effective overlap, never a smaller one)."""
    _check_int("alignment", alignment, 1)
    _check_int("tile", tile, 1)
    _check_int("overlap", overlap, 0)
    if tile % alignment:
        raise ValueError(f"tile: must be a multiple of the network's alignment {alignment}, got {tile}")
    if 2 * overlap >= tile:
        raise ValueError(f"overlap: must be smaller than tile / 2 = {tile / 2:g}, got {overlap}")
    stride = (tile - overlap) // alignment * alignment
    if stride < alignment:
        raise ValueError(f"overlap: tile - overlap = {tile - overlap} rounds down to a stride of 0 at alignment "
                         f"{alignment}; use overlap=0 or a tile of at least {2 * alignment}")
    return stride


def axis_origins(length, tile, stride, alignment, margin=0):
    """(origins, tile extent) along one axis of `length` pixels."""
    padded = length + 2 * margin
    extent = min(tile, _round_up(padded, alignment))
    origins = []
    position = 0
    while position + extent < padded:
        origins.append(position)
        position += stride
    last = max(0, _round_up(padded - extent, alignment))
    if not origins or last > origins[-1]:
        origins.append(last)
    return [origin - margin for origin in origins], extent


@dataclass(frozen=True)
class Plan:
    """Where the tiles of an image height x width go. `overlap` is the effective overlap the kernels blend over."""
    height: int
    width: int
    row_origins: tuple
    col_origins: tuple
    tile_h: int
    tile_w: int
    overlap: int
    mode: int

    @property
    def count(self):
        return len(self.row_origins) * len(self.col_origins)


def make_plan(height, width, tile, overlap, alignment, blend):
    if blend not in MODES:
        raise ValueError(f"blend: expected one of {', '.join(MODES)}, got {blend!r}")
    stride = stride_for(tile, overlap, alignment)
    effective = tile - stride
    margin = effective // 2 if blend == "stitch" else 0
    rows, tile_h = axis_origins(height, tile, stride, alignment, margin)
    cols, tile_w = axis_origins(width, tile, stride, alignment, margin)
    return Plan(height, width, tuple(rows), tuple(cols), tile_h, tile_w, effective, MODES[blend])


def tile_row_rows(plan, r):
    """Image rows [first, last) that tile row r contributes to."""
    top = plan.row_origins[r]
    return max(top, 0), min(top + plan.tile_h, plan.height)


def source_rows(plan, r):
    """Image rows [lo, hi) the tiles of row r read (mirror padding folded back into the image)."""
    height = plan.height
    top = plan.row_origins[r]
    if top >= 0 and top + plan.tile_h <= height:
        return top, top + plan.tile_h
    rows = [_mirror(y, height) for y in range(top, top + plan.tile_h)]
    return min(rows), max(rows) + 1


def _mirror(i, size):
    if 0 <= i < size:
        return i
    if size == 1:
        return 0
    period = 2 * (size - 1)
    i %= period
    return i if i < size else period - i
