"""The tile plan of 3-D inference (a 3-D network on a volume; docs/tiling.md §8): tiles (d, h, w), overlaps, origins.

Each axis is planned as the 2-D planner plans rows and columns (n2n_fast/inference/plan.py axis_origins, the same
stride rounding and last-tile rule), against that axis's alignment: the network's `spatial_alignment`
(2**z_pools, 32, 32) for UNet(dims=3), so tiles and strides keep the pooling phase along z as along y and x. An
axis that one tile covers has no seam along it and takes overlap 0 there (the tile is the axis rounded up to its
alignment, mirror-padded past the end exactly as whole-volume inference pads it), so a volume that fits one tile is
denoised exactly as the network would denoise it whole.

- tile="auto": a cube cap walked down one voxel at a time from the whole volume; each axis takes the fewest tiles
  of at most the cap (rounded down to its alignment, never below it) and makes them as small as the overlap allows
  (as auto_plan.axis_tile does in 2-D); the first cap whose memory fits memory_budget wins. Memory: one model call costs
  `activation_bytes_per_voxel` bytes per tile voxel (measured, UNET3D_FLOATS below) and, for thin tiles on the
  CPU, a convolution's column buffer (column_bytes), plus the slab: the float32
  output planes of one tile row (two copies while the slab moves on) and the source planes it reads.
- overlap="auto": AUTO_OVERLAP_3D, per axis, from the seams measured by benchmarks/seam_study3d.py: in y-x the
  smallest overlap keeping tiled-vs-whole PSNR >= 50 dB, along z half the tile; rounded up to the axis's alignment
  and at most half the tile.
The plan is a pure function of (volume shape and dtype, network architecture, arguments, budget), as in 2-D.
"""
import math
from dataclasses import dataclass

from .auto_plan import _check_overlap, _check_tile, _mib, activation_bytes, check_budget, default_memory_budget
from .plan import MODES, axis_origins, stride_for

AXES = ("z", "y", "x")
# UNet(dims=3), float32, peak resident bytes per tile voxel measured at batch 1 by benchmarks/unet_cost3d.py:
# 658-979 at features 8 and 16, 1030-1672 at features 48 (docs/tiling.md §8 has the table); this bound,
# 4 * (6 f + 2 c + 210), is 1040 and 2000 bytes there, above every measurement once the column buffer below is
# added (the one measurement above it, 2395 at features 8 on 8 x 128 x 128, is that buffer).
UNET3D_FLOATS = (6, 2, 210)
# PyTorch's CPU float32 convolution takes slow_conv3d instead of oneDNN for a batch of one whose channels x depth x
# height is at most 20480 (aten ConvUtils use_mkldnn), and slow_conv3d unfolds its input into a column buffer of
# 27 floats per input channel and voxel: thin tiles of few channels pay it on top of the activations.
SLOW_CONV3D_LIMIT = 20480
# Per blend, the (z, y-x) overlap in voxels from benchmarks/seam_study3d.py (docs/tiling.md §8), each rounded up to
# its axis's alignment. y-x: 64, the smallest overlap with tiled vs whole-volume PSNR >= 50 dB (52.2 dB at tiles of
# 160, 47.5 at 32). z: no z overlap the study could afford reached 50 dB (a z seam costs 10-15 dB: the z receptive
# field, ~37 planes at z_pools 3, exceeds the tiles a budget holds), and each step of it helped (+3-5 dB), so z
# takes HALF_TILE, half the z tile (stride = half the tile): the most the blend takes.
HALF_TILE = "half"
AUTO_OVERLAP_3D = {"cosine": (HALF_TILE, 64), "gaussian": (HALF_TILE, 64), "stitch": (HALF_TILE, 64)}


@dataclass(frozen=True)
class VolumePlan:
    """Where the tiles of a depth x height x width volume go: per axis (z, y, x) the tile origins, the tile extent
    and the effective overlap the blend ramps over."""
    shape: tuple  # (depth, height, width)
    origins: tuple  # (z origins, y origins, x origins), each a tuple of ints (negative: mirror padding)
    tile: tuple  # (tile_d, tile_h, tile_w)
    overlap: tuple  # (overlap_z, overlap_y, overlap_x)
    mode: int

    @property
    def grid(self):
        return tuple(len(o) for o in self.origins)

    @property
    def count(self):
        return math.prod(self.grid)

    def index(self):
        """Every tile's (n, iz, iy, ix) in processing order: z tile rows one after another."""
        nz, ny, nx = self.grid
        return [(0, iz, iy, ix) for iz in range(nz) for iy in range(ny) for ix in range(nx)]


@dataclass(frozen=True)
class VolumeDenoisePlan:
    """The plan denoise runs on a volume: geometry (`plan`), tiles per model call, the memory it was sized for."""
    plan: VolumePlan
    batch_size: int
    memory_budget: int  # bytes; 0 when the tile was given explicitly and no budget was asked for
    estimated_bytes: int  # activations of one batch + the slab
    auto_tile: bool
    auto_overlap: bool

    def describe(self):
        p = self.plan
        how = "auto" if self.auto_tile else "given"
        budget = f" of a {_mib(self.memory_budget)} budget" if self.memory_budget else ""
        return (f"plan: {' x '.join(map(str, p.grid))} tiles of {' x '.join(map(str, p.tile))} voxels ({how}), "
                f"overlap {' x '.join(map(str, p.overlap))}{' (auto)' if self.auto_overlap else ''}, "
                f"{self.batch_size} tile(s) per model call, slabs of {p.tile[0]} planes, "
                f"~{_mib(self.estimated_bytes)} estimated{budget}")


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def spatial_alignment(model):
    """(z, y, x) alignment of a 3-D network: UNet's spatial_alignment, else the `alignment` int on every axis."""
    aligned = getattr(model, "spatial_alignment", None)
    if aligned is not None and len(aligned) == 3:
        return tuple(int(a) for a in aligned)
    return (int(getattr(model, "alignment", 32)),) * 3


def activation_bytes_per_voxel(model, channels):
    """Peak float32 activation bytes per tile voxel of one model call (an upper bound, from the architecture)."""
    import torch

    return activation_bytes(model, channels, "activation_bytes_per_voxel", UNET3D_FLOATS, torch.nn.Conv3d)


def column_bytes(model, channels, tile):
    """The largest slow_conv3d column buffer one call of UNet(dims=3) on a (d, h, w) tile allocates (bytes; 0 for
    other models, whose convolutions are not known)."""
    from ..unet import LEVELS, UNet

    if not isinstance(model, UNet) or model.dims != 3:
        return 0
    f = model.features
    # input channels of the 3x3x3 convolutions at each level (0: full resolution): encoder, then decoder
    inputs = [(channels, f, 2 * f + channels, 64, 32)] + [(f, 3 * f, 2 * f)] * (LEVELS - 1) + [(f, 2 * f)]
    depth, height, width = tile
    largest = 0
    for level, cins in enumerate(inputs):
        if level:
            kz = model._kernels[level - 1][0]
            depth, height, width = max(1, depth // kz), max(1, height // 2), max(1, width // 2)
        for cin in cins:
            if cin * depth * height <= SLOW_CONV3D_LIMIT:
                largest = max(largest, 27 * cin * depth * height * width * 4)
    return largest


def tile_bytes(model, channels, tile, bytes_per_voxel, cpu=True):
    """Peak bytes of one model call on a tile: activations plus, on the CPU, the column buffer of thin tiles."""
    return math.prod(tile) * bytes_per_voxel + (column_bytes(model, channels, tile) if cpu else 0)


def _per_axis(value, name):
    """An int (every axis) or a (z, y, x) triple of ints, as a tuple; "auto" stays "auto"."""
    if value == "auto":
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ValueError(f"{name}: expected an int, 'auto' or (z, y, x), got {value!r}")
        return tuple(value)
    return (value,) * 3


def auto_overlaps(alignment, blend, caps):
    """The measured overlap per axis, rounded up to the axis's alignment and at most half of `caps`: half a tile is
    the effective overlap that an overlap just below it gives through the stride rounding (plan.stride_for), and
    small 3-D tiles need it (docs/tiling.md §8)."""
    z, yx = AUTO_OVERLAP_3D[blend]
    overlaps = []
    for wanted, align, cap in zip((z, yx, yx), alignment, caps):
        overlap = cap // 2 // align * align if wanted == HALF_TILE else _round_up(wanted, align)
        while overlap and (2 * overlap > cap or overlap >= cap):
            overlap -= align
        overlaps.append(max(overlap, 0))
    return tuple(overlaps)


def _axis_side(length, cap, overlap, align):
    """auto_plan.axis_tile with overlaps of up to half the cap: the smallest aligned side covering `length` with the
    fewest tiles of at most `cap`, or None when the cap leaves no stride."""
    aligned = _round_up(length, align)
    if aligned <= cap:
        return aligned
    if 2 * overlap > cap or overlap >= cap:
        return None
    count = -(-(aligned - overlap) // (cap - overlap))
    return _round_up(-(-(aligned + (count - 1) * overlap) // count), align)


def _axis(length, tile, overlap, align, blend, name, checked):
    """(origins, extent, effective overlap) along one axis for a given tile side and overlap; `checked`: the
    overlap was given, so the 2-D rule applies (below half the tile, the stride rounded down to the alignment)."""
    if _round_up(length, align) <= tile:  # one tile covers the axis: no seam along it
        return axis_origins(length, tile, tile, align)[0], _round_up(length, align), 0
    try:
        stride = stride_for(tile, overlap, align) if checked else tile - overlap
    except ValueError as exc:
        raise ValueError(f"{exc} (along {name}, alignment {align})") from None
    effective = tile - stride
    origins, extent = axis_origins(length, tile, stride, align, effective // 2 if blend == "stitch" else 0)
    return origins, extent, effective


def make_volume_plan(shape, tile, overlap, alignment, blend, checked=True):
    """VolumePlan of a (depth, height, width) volume for per-axis tile sides and overlaps (ints); checked=False for
    the planner's own aligned overlaps of up to half a tile."""
    axes = [_axis(length, t, o, a, blend, name, checked) for length, t, o, a, name in
            zip(shape, tile, overlap, alignment, AXES)]
    return VolumePlan(tuple(shape), tuple(tuple(a[0]) for a in axes), tuple(a[1] for a in axes),
                      tuple(a[2] for a in axes), MODES[blend])


def slab_bytes(channels, tile_d, height, width, source_itemsize):
    """The float32 output slab of one tile row and its successor while planes carry over, plus the source planes
    the row reads (at most a tile deep) in the volume's own dtype."""
    planes = channels * tile_d * height * width
    return 2 * planes * 4 + planes * source_itemsize


def _axis_options(length, align, wanted, blend, given):
    """{(side, overlap): tiles along the axis} for every cap from the whole axis down to one alignment step;
    `wanted` is the overlap asked (given=True) or the measured rule's (clamped to half the side when it does not
    fit: those options are marked by an overlap below `wanted`)."""
    options = {}
    reach = 2 * (length if wanted == HALF_TILE else wanted) + 2 * align
    for cap in range(_round_up(length + reach, align), align - 1, -align):
        if _round_up(length, align) <= cap:  # one tile: no seam, no overlap
            options[_round_up(length, align), 0] = 1
            continue
        overlap = wanted
        if not given:
            half = cap // 2 // align * align
            overlap = half if wanted == HALF_TILE else min(wanted, half)
        side = _axis_side(length + (2 * (overlap // 2) if blend == "stitch" else 0), cap, overlap, align)
        if side is None or 2 * overlap > side or (given and 2 * overlap >= side):
            continue
        margin = overlap // 2 if blend == "stitch" else 0
        options[side, overlap] = len(axis_origins(length, side, side - overlap, align, margin)[0])
    return options


def _plan_auto(shape, channels, overlap, budget, batch_size, tile_cost, alignment, blend, itemsize):
    """The fitting plan that processes the fewest voxels among those whose split axes all get their full overlap;
    when none fits, the one with the widest y-x tile (then the fewest axes short of it, the largest tile). Tiles
    along z and in y-x are sized separately, since a slab costs its depth times the whole plane."""
    _, height, width = shape
    given = overlap != "auto"
    rule = (AUTO_OVERLAP_3D[blend][0],) + (AUTO_OVERLAP_3D[blend][1],) * 2
    wanted = tuple(_round_up(o, a) for o, a in zip(overlap, alignment)) if given else \
        tuple(w if w == HALF_TILE else _round_up(w, a) for w, a in zip(rule, alignment))
    axes = [_axis_options(length, a, w, blend, given) for length, a, w in zip(shape, alignment, wanted)]
    best, need, cheapest = None, None, tuple(alignment)
    for (d, oz), nz in axes[0].items():
        slab = slab_bytes(channels, d, height, width, itemsize)
        for (h, oy), ny in axes[1].items():
            for (w, ox), nx in axes[2].items():
                cost = tile_cost((d, h, w)) + slab
                if need is None or cost < need:
                    need, cheapest = cost, (d, h, w)
                if cost > budget:
                    continue
                # short of the rule: a split axis below its overlap (half-tile axes: with none at all)
                clamped = sum(n > 1 and (o == 0 if want == HALF_TILE else o < want)
                              for o, want, n in zip((oz, oy, ox), wanted, (nz, ny, nx)))
                processed = nz * ny * nx * d * h * w
                # full overlaps: the fewest voxels processed; else the widest y-x tile (the seams a short overlap
                # leaves are fewest there), then the fewest short axes, then the largest tile
                rank = processed if not clamped else (-min(h, w), clamped, -(d * h * w))
                key = (clamped > 0, rank, processed, (d, h, w), (oz, oy, ox))
                if best is None or key < best:
                    best = key
    if best is not None:
        tile, overlaps = best[3], best[4]
        one, slab = tile_cost(tile), slab_bytes(channels, tile[0], height, width, itemsize)
        plan = make_volume_plan(shape, tile, overlaps, alignment, blend, checked=False)
        per_row = plan.grid[1] * plan.grid[2]  # denoise batches the tiles of one tile row: more is never used
        batch = max(1, min(batch_size, (budget - slab) // one, per_row))
        return VolumeDenoisePlan(plan, int(batch), int(budget), int(batch * one + slab), True, not given)
    least = tuple(alignment)
    least_need = tile_cost(least) + slab_bytes(channels, least[0], height, width, itemsize)
    if need is None or least_need < need:
        need, cheapest = least_need, least
    if given and any(overlap) and need <= budget:
        raise ValueError(f"overlap: {overlap} voxels (z, y, x) needs tiles more than twice as large along each split "
                         f"axis, but memory_budget {budget} bytes holds no such tile of this volume; use "
                         f"overlap='auto', a smaller overlap, or a larger memory_budget")
    raise ValueError(f"memory_budget: {budget} bytes is too small for one {' x '.join(map(str, cheapest))} tile of "
                     f"this 3-D network (its activations plus a slab of {cheapest[0]} planes of {height} x "
                     f"{width} need {need} bytes, the least of any tile); give at least {need}")


def choose_volume_plan(shape, channels, *, tile, overlap, memory_budget, batch_size, alignment, blend,
                       tile_cost, device, itemsize=4):
    """The VolumeDenoisePlan for denoise's arguments on a (depth, height, width) volume of `channels` channels
    whose elements take `itemsize` bytes: auto tile from the budget, or the given tile (and overlap).
    tile_cost((d, h, w)): bytes of one model call on one tile (tile_bytes)."""
    if blend not in MODES:
        raise ValueError(f"blend: expected one of {', '.join(MODES)}, got {blend!r}")
    check_budget(memory_budget)
    tile, overlap = _per_axis(tile, "tile"), _per_axis(overlap, "overlap")
    for name, value in (("tile", tile), ("overlap", overlap)):
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"{name}: expected an int, (z, y, x) or 'auto', got {value!r}")
    if tile != "auto":
        for side, align, axis in zip(tile, alignment, AXES):
            try:
                _check_tile(side, align)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{exc} (along {axis}; the network's alignment per axis (z, y, x) is "
                                f"{tuple(alignment)})") from None
    if overlap != "auto":
        for value in overlap:
            _check_overlap(value)
    budget = default_memory_budget(device) if memory_budget is None else int(memory_budget)
    if tile == "auto":
        return _plan_auto(shape, channels, overlap, budget, batch_size, tile_cost, alignment, blend, itemsize)
    given = auto_overlaps(alignment, blend, tile) if overlap == "auto" else overlap
    plan = make_volume_plan(shape, tile, given, alignment, blend, checked=overlap != "auto")
    slab = slab_bytes(channels, plan.tile[0], shape[1], shape[2], itemsize)
    estimated = batch_size * tile_cost(plan.tile) + slab
    return VolumeDenoisePlan(plan, batch_size, 0 if memory_budget is None else budget, estimated, False,
                             overlap == "auto")
