"""tile="auto", overlap="auto": the tiling plan of n2n_fast.denoise chosen from a named memory budget.

The plan is a pure function of (image shape, model architecture, tile/overlap/blend/batch arguments, budget): no
free-memory query, no timing, so the same inputs and budget give the same plan on any machine. Only the default
budget reads the machine, and only its total memory (RAM, or the GPU's), never what happens to be free.

- Memory model: one model call on a tile_h x tile_w tile costs `activation_bytes_per_pixel` bytes per pixel
  (float32 activations at their peak, measured: see below), plus the float32 output band the tiles blend into
  (two copies while the band moves on). Peak memory is therefore set by the plan, not by the image.
- Tile: the largest square cap (a multiple of the network's alignment) whose tiles fit the budget; along each axis
  the image then takes the fewest tiles of at most that cap, each made as small as the overlaps allow, so the
  network processes few pixels beyond the image's own (the last tile is no longer shifted back over its
  neighbour by up to a whole stride).
- Overlap: AUTO_OVERLAP, the smallest overlap keeping tiled-vs-whole PSNR >= 50 dB on trained U-Nets, measured by
  benchmarks/seam_study.py (numbers and method: docs/tiling.md).
"""
import math
import os
from dataclasses import dataclass

from .plan import MODES, Plan, axis_origins

# Per blend, (minimum tile side, overlap) pairs, largest side first: the smallest overlap (pixels) with tiled vs
# whole-image PSNR >= 50 dB in what benchmarks/seam_study.py measured for such tiles (docs/tiling.md has the
# tables). Small tiles put more seams in each pixel's neighbourhood, so they need more overlap; the gaussian
# window (sigma = tile / 8, whatever the overlap) leaves large tiles' seams weighted by the floor at 32 px, so it
# keeps 64. Stitch stays near 45 dB at any affordable overlap (the U-Net sees +-128 px): 64 is its quality knee.
AUTO_OVERLAP = {"cosine": ((384, 32), (0, 64)), "gaussian": ((0, 64),), "stitch": ((0, 64),)}
# Default budget: a quarter of total RAM on the CPU, capped because the U-Net's cost per pixel rises past tiles of
# about 768^2 on the CPU (cache; docs/tiling.md), half the device's total memory on a GPU (larger tiles only help).
CPU_BUDGET_FRACTION, CPU_BUDGET_CAP = 0.25, 1 << 30
GPU_BUDGET_FRACTION = 0.5
# Paper U-Net, float32, peak resident bytes per pixel measured at batch 1 for 128^2-1024^2 tiles: 1169-1637 for
# features=48, 834-971 for features=16 (benchmarks/unet_cost.py); this bound is 4 * (6 f + 2 c + 160):
# 1816 and 1048 bytes, above every measurement.
UNET_FLOATS = (6, 2, 160)
GENERIC_FLOATS_PER_CHANNEL = 4  # models without a known formula: 4 live maps of their widest convolution


@dataclass(frozen=True)
class DenoisePlan:
    """The plan denoise runs: geometry (`plan`), tiles per model call, and the memory it was sized for."""
    plan: Plan
    batch_size: int
    memory_budget: int  # bytes; 0 when the tile was given explicitly and no budget was asked for
    estimated_bytes: int  # activations of one batch + the output band
    auto_tile: bool
    auto_overlap: bool

    def describe(self):
        p = self.plan
        rows, cols = len(p.row_origins), len(p.col_origins)
        how = "auto" if self.auto_tile else "given"
        budget = f" of a {_mib(self.memory_budget)} budget" if self.memory_budget else ""
        return (f"plan: {rows} x {cols} tiles of {p.tile_h} x {p.tile_w} ({how}), overlap {p.overlap}"
                f"{' (auto)' if self.auto_overlap else ''}, {self.batch_size} tile(s) per model call, "
                f"~{_mib(self.estimated_bytes)} estimated{budget}")


def _mib(nbytes):
    return f"{nbytes / 2**20:.0f} MiB"


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def default_memory_budget(device):
    """Bytes: from the total memory of `device` (torch.device), never its free memory."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory * GPU_BUDGET_FRACTION)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume a modest 8 GiB machine
        total = 8 << 30
    return int(min(total * CPU_BUDGET_FRACTION, CPU_BUDGET_CAP))


def activation_bytes_per_pixel(model, channels):
    """Peak float32 activation bytes per tile pixel of one model call (an upper bound, from the architecture)."""
    import torch

    return activation_bytes(model, channels, "activation_bytes_per_pixel", UNET_FLOATS, torch.nn.Conv2d)


def activation_bytes(model, channels, custom_name, unet_floats, convolution):
    """Peak float32 activation bytes per tile element of one model call: the model's own `custom_name`(channels)
    when it has one, else for a UNet 4 * (a f + b c + fixed) from `unet_floats` = (a, b, fixed) (measured per
    dims), else GENERIC_FLOATS_PER_CHANNEL live maps of its widest `convolution` (nn.Conv2d or nn.Conv3d)."""
    custom = getattr(model, custom_name, None)
    if callable(custom):
        return int(custom(channels))
    from ..unet import UNet

    if isinstance(model, UNet):
        per_feature, per_channel, fixed = unet_floats
        return 4 * (per_feature * model.features + per_channel * channels + fixed)
    widths = [m.in_channels + m.out_channels for m in model.modules() if isinstance(m, convolution)]
    return 4 * GENERIC_FLOATS_PER_CHANNEL * max(widths + [2 * channels])


def auto_overlap(tile, alignment, blend="cosine"):
    """The measured overlap rule for a tile side (rounded up to the alignment, below tile / 2)."""
    overlap = next(value for side, value in AUTO_OVERLAP[blend] if tile >= side)
    overlap = _round_up(overlap, alignment)
    while overlap and 2 * overlap >= tile:
        overlap -= alignment
    return overlap


def axis_tile(length, cap, overlap, alignment):
    """Smallest aligned tile side that covers `length` pixels with the fewest tiles of at most `cap`, or None when
    several tiles are needed and `cap` leaves no room for `overlap` (2 * overlap >= cap)."""
    aligned = _round_up(length, alignment)
    if aligned <= cap:
        return aligned
    if 2 * overlap >= cap:
        return None
    count = -(-(aligned - overlap) // (cap - overlap))
    return _round_up(-(-(aligned + (count - 1) * overlap) // count), alignment)


def _tiles_for(height, width, cap, overlap, alignment, blend):
    """(overlap, tile_h, tile_w) under a cap, or None. An auto overlap follows the tile sides it gives: a smaller
    tile than the cap may need the larger overlap of its own size class."""
    ov = auto_overlap(cap, alignment, blend) if overlap == "auto" else _round_up(overlap, alignment)
    for _ in range(2):
        pad = 2 * (ov // 2) if blend == "stitch" else 0
        tile_h = axis_tile(height + pad, cap, ov, alignment)
        tile_w = axis_tile(width + pad, cap, ov, alignment)
        if tile_h is None or tile_w is None:
            return None
        split = [t for t, length in ((tile_h, height + pad), (tile_w, width + pad)) if t < length]
        if overlap != "auto" or not split or auto_overlap(min(split), alignment, blend) <= ov:
            return ov, tile_h, tile_w
        ov = auto_overlap(min(split), alignment, blend)
    return None


def _geometry(height, width, tile_h, tile_w, overlap, alignment, blend):
    """Plan with per-axis tile sides and stride tile - overlap (overlap a multiple of the alignment)."""
    margin = overlap // 2 if blend == "stitch" else 0
    rows, tile_h = axis_origins(height, tile_h, tile_h - overlap, alignment, margin)
    cols, tile_w = axis_origins(width, tile_w, tile_w - overlap, alignment, margin)
    return Plan(height, width, tuple(rows), tuple(cols), tile_h, tile_w, overlap, MODES[blend])


def _band_bytes(n_images, channels, tile_h, width):
    return 2 * n_images * channels * tile_h * width * 4  # float32 band + its successor while rows carry over


def plan_auto(n_images, channels, height, width, *, overlap, memory_budget, batch_size, bytes_per_pixel,
              alignment, blend):
    """DenoisePlan with the largest tiles that fit `memory_budget` bytes (overlap: "auto" or an int)."""
    reach = max(value for _, value in AUTO_OVERLAP[blend]) if overlap == "auto" else overlap
    # from a cap that holds the whole image (plus stitch margins) in one tile, down to one aligned tile
    for cap in range(_round_up(max(height, width) + reach, alignment), alignment - 1, -alignment):
        tiles = _tiles_for(height, width, cap, overlap, alignment, blend)
        if tiles is None:
            continue
        ov, tile_h, tile_w = tiles
        tile_bytes = tile_h * tile_w * bytes_per_pixel
        band = _band_bytes(n_images, channels, tile_h, width)
        if tile_bytes + band <= memory_budget:
            if overlap != "auto" and 2 * ov >= min(tile_h, tile_w):
                raise ValueError(f"overlap: must be smaller than half the tile, but the image fits tiles of "
                                 f"{tile_h} x {tile_w} px and overlap {overlap} (rounded to the alignment: {ov}) is "
                                 f"not below {min(tile_h, tile_w) // 2}; use overlap='auto' or a smaller overlap")
            plan = _geometry(height, width, tile_h, tile_w, ov, alignment, blend)
            # denoise batches the tiles of one tile row (of every image): more would never be used
            batch = max(1, min(batch_size, (memory_budget - band) // tile_bytes, n_images * len(plan.col_origins)))
            return DenoisePlan(plan, int(batch), int(memory_budget), int(batch * tile_bytes + band), True,
                               overlap == "auto")
    if overlap != "auto" and overlap > 0:
        try:
            fits = plan_auto(n_images, channels, height, width, overlap=0, memory_budget=memory_budget,
                             batch_size=batch_size, bytes_per_pixel=bytes_per_pixel, alignment=alignment, blend=blend)
        except ValueError:
            fits = None
        if fits is not None:  # the budget holds tiles, only not ones with room for this overlap
            largest = max(fits.plan.tile_h, fits.plan.tile_w)
            raise ValueError(f"overlap: {overlap} px needs tiles wider than {2 * overlap} px, but memory_budget "
                             f"{memory_budget} bytes holds tiles of at most {largest} px; use overlap='auto', an "
                             f"overlap below {largest // 2}, or a larger memory_budget")
    need = alignment * alignment * bytes_per_pixel + _band_bytes(n_images, channels, alignment, width)
    raise ValueError(f"memory_budget: {memory_budget} bytes is too small for one {alignment} x {alignment} tile of "
                     f"this model ({bytes_per_pixel} bytes per pixel of activations plus the output band need "
                     f"{need} bytes); give at least {need}")


def check_budget(memory_budget):
    if memory_budget is None:
        return
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) or not math.isfinite(
            memory_budget) or memory_budget <= 0:
        raise ValueError(f"memory_budget: expected a positive number of bytes (or None for the default), got "
                         f"{memory_budget!r}")


def choose_plan(n_images, channels, height, width, *, tile, overlap, memory_budget, batch_size, alignment, blend,
                bytes_per_pixel, device):
    """The DenoisePlan for denoise's arguments: auto tile from the budget, or the given tile (and overlap)."""
    if blend not in MODES:
        raise ValueError(f"blend: expected one of {', '.join(MODES)}, got {blend!r}")
    check_budget(memory_budget)
    for name, value in (("tile", tile), ("overlap", overlap)):
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"{name}: expected an int or 'auto', got {value!r}")
    if tile != "auto":
        _check_tile(tile, alignment)
    if overlap != "auto":
        _check_overlap(overlap)
    budget = default_memory_budget(device) if memory_budget is None else int(memory_budget)
    if tile == "auto":
        return plan_auto(n_images, channels, height, width, overlap=overlap, memory_budget=budget,
                         batch_size=batch_size, bytes_per_pixel=bytes_per_pixel, alignment=alignment, blend=blend)
    from .plan import make_plan

    given = auto_overlap(tile, alignment, blend) if overlap == "auto" and isinstance(tile, int) else overlap
    plan = make_plan(height, width, tile, given, alignment, blend)
    tile_bytes = plan.tile_h * plan.tile_w * bytes_per_pixel
    return DenoisePlan(plan, batch_size, 0 if memory_budget is None else budget,
                       batch_size * tile_bytes + _band_bytes(n_images, channels, plan.tile_h, width), False,
                       overlap == "auto")


def _check_tile(tile, alignment):
    if isinstance(tile, bool) or not isinstance(tile, int):
        raise TypeError(f"tile: expected a positive int or 'auto', got {type(tile).__name__} ({tile!r})")
    if tile < alignment or tile % alignment:
        raise ValueError(f"tile: must be a positive multiple of the network's alignment {alignment} (or 'auto'), "
                         f"got {tile}")


def _check_overlap(overlap):
    if isinstance(overlap, bool) or not isinstance(overlap, int):
        raise TypeError(f"overlap: expected an int or 'auto', got {type(overlap).__name__} ({overlap!r})")
    if overlap < 0:
        raise ValueError(f"overlap: must be >= 0, got {overlap}")
