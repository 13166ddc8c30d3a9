"""The `training_crops` and `volume_crops` ops on Triton: a step's training crops, picked and cut in one launch
(arguments and result: n2n_fast/reference/crops.py, their PyTorch twins, bit for bit).

Why one kernel: the twin draws the Philox words, turns them into picks (`word % n`) and builds its gather index with
about 35 small ops, each a launch on a GPU (and a node in the captured graph). Here program (block, b) draws
sample b's words itself (the counter layout of n2n_fast/training/data.py, the step read from device memory in
train()), picks the image, the corner, the flip and the quarter turns, and reads and writes BLOCK output pixels of
every channel: bytes per output element, the source element (1-4 bytes) plus 4 written. Volumes (VOLUMES) are the
same kernel with one more Philox call (the DEPTH purpose: the first slice and the z flip) and the output's slice
folded into its pixel number; images compile without either.
"""
import torch
import triton
import triton.language as tl

from ..conventions import signed_seed
from .buffers import step_arguments
from .device import on_device

BLOCK = 1024
NUM_WARPS = 4
MAX_CROP = 46340  # crop * crop < 2**31: output pixel numbers in 32 bits
MAX_VOXELS = 2**31 - 1  # depth * crop * crop of a volume crop: output voxel numbers in 32 bits


# key, step and index vary from call to call: an int equal to 1 would otherwise compile its own specialisation
@triton.jit(do_not_specialize=["key", "step", "index"])
def _training_crops_kernel(
    flat_ptr,  # the store's images, packed: image k's (C, H, W) (volume k's (C, D, H, W)) at offsets[k]
    offsets_ptr, depths_ptr, heights_ptr, widths_ptr,  # int64 [images]; depths read only with VOLUMES
    inv_scale_ptr,  # float32 [images]
    out_ptr,  # out, float32 (B, C, crop, crop) or with VOLUMES (B, C, crop_depth, crop, crop), contiguous
    key,  # Philox key: seed ^ data.DATA_KEY, as a signed int64
    step,  # training step (when STEP_IN_MEMORY is off)
    step_ptr,  # int64 0-d: the training step (when STEP_IN_MEMORY is on)
    index,  # global index of the batch's first sample
    images,  # images (volumes) in the store
    purpose,  # the counter's c3: data.SAMPLE
    depth_purpose,  # the counter's c3 of the slice draw (VOLUMES): volumes.DEPTH
    channels,
    crop_depth,  # the crop's slices (VOLUMES; 1 for images)
    crop,  # height and width; crop_depth * crop * crop <= MAX_VOXELS
    BLOCK: tl.constexpr,
    STEP_IN_MEMORY: tl.constexpr,
    VOLUMES: tl.constexpr,
):
    if STEP_IN_MEMORY:
        step = tl.load(step_ptr)
    sample = tl.program_id(1)
    # data.py's counter (sample, 0, step, purpose), each word 32 bits
    c0 = ((index + sample.to(tl.int64)) & 0xFFFFFFFF).to(tl.uint32)
    c1 = c0 * 0
    c2 = c1 + ((tl.zeros([], dtype=tl.int64) + step) & 0xFFFFFFFF).to(tl.uint32)  # step may be a constexpr
    c3 = c1 + purpose
    w0, w1, w2, w3 = tl.philox(key, c0, c1, c2, c3)
    image = w0.to(tl.int64) % images
    height = tl.load(heights_ptr + image)
    width = tl.load(widths_ptr + image)
    row = w1.to(tl.int64) % (height - crop + 1)
    col = w2.to(tl.int64) % (width - crop + 1)
    bits = (w3 & 7).to(tl.int32)
    offset = tl.load(offsets_ptr + image)
    inv = tl.load(inv_scale_ptr + image)
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # output pixel (s * crop + i) * crop + j
    inside = p < crop_depth * crop * crop
    i = p // crop  # 32-bit: a 64-bit division is a called subroutine
    j = p - i * crop
    plane = height * width  # a channel's elements
    if VOLUMES:
        # the same counter with c3 = DEPTH: word 0 the first slice, word 1 bit 0 the z flip
        z0, z1, _, _ = tl.philox(key, c0, c1, c2, c1 + depth_purpose)
        depth = tl.load(depths_ptr + image)
        first = z0.to(tl.int64) % (depth - crop_depth + 1)
        s = i // crop
        i = i - s * crop
        s = tl.where((z1 & 1) == 1, crop_depth - 1 - s, s)
        top = (first + s.to(tl.int64)) * height + row  # the source row in the volume's (D * H, W) view
        plane = depth * plane
    else:
        top = row
    last = crop - 1
    turns = (bits >> 1) & 3
    # rot90 by `turns` quarter turns reads the flipped patch at (a, b) for output (i, j), as the twin
    a = tl.where(turns == 0, i, tl.where(turns == 1, j, tl.where(turns == 2, last - i, last - j)))
    b = tl.where(turns == 0, j, tl.where(turns == 1, last - i, tl.where(turns == 2, last - j, i)))
    b = tl.where((bits & 1) == 1, last - b, b)
    pixel = offset + (top + a.to(tl.int64)) * width + col + b.to(tl.int64)
    # 64-bit from here on; crop and crop_depth may arrive as constexpr 1s
    area = (tl.zeros([], dtype=tl.int64) + crop_depth) * crop * crop
    out = out_ptr + sample.to(tl.int64) * channels * area + p
    for c in range(0, channels):
        value = tl.load(flat_ptr + pixel + c * plane, mask=inside, other=0).to(tl.float32) * inv
        tl.store(out + c * area, value, mask=inside)


def _launch(flat, tables, key, step, index, count, purposes, channels, crop, volumes):
    """Allocate the crops and launch the kernel over (output blocks, samples)."""
    offsets, depths, heights, widths, inv_scale = tables
    depth, height, _ = crop
    shape = (count, channels, depth, height, height) if volumes else (count, channels, height, height)
    out = torch.empty(shape, dtype=torch.float32, device=flat.device)
    if count and height and depth:
        step, step_ptr, in_memory = step_arguments(step, offsets)
        with on_device(flat):
            _training_crops_kernel[(triton.cdiv(depth * height * height, BLOCK), count)](
                flat, offsets, depths, heights, widths, inv_scale, out, signed_seed(key), step, step_ptr, index,
                offsets.shape[0], *purposes, channels, depth, height, BLOCK=BLOCK, STEP_IN_MEMORY=in_memory,
                VOLUMES=volumes, num_warps=NUM_WARPS)
    return out


def training_crops(flat, offsets, heights, widths, inv_scale, key, step, index, count, purpose, channels, crop):
    """(count, C, crop, crop) float32 crops (see n2n_fast/reference/crops.py); step an int or a 0-d int64 tensor on
    flat's device."""
    if crop > MAX_CROP:
        raise ValueError(f"crop: at most {MAX_CROP} pixels on the Triton path (32-bit pixel numbers), got {crop}")
    return _launch(flat, (offsets, heights, heights, widths, inv_scale), key, step, index, count, (purpose, 0),
                   channels, (1, crop, crop), volumes=False)


def volume_crops(flat, offsets, depths, heights, widths, inv_scale, key, step, index, count, purposes, channels,
                 crop):
    """(count, C, depth, height, width) float32 volume crops (see n2n_fast/reference/crops.py); purposes (SAMPLE,
    DEPTH); step an int or a 0-d int64 tensor on flat's device."""
    depth, height, width = crop
    if height != width:
        raise ValueError(f"crop: height and width must be equal (quarter turns in YX), got {tuple(crop)}")
    if depth * height * width > MAX_VOXELS:
        raise ValueError(f"crop: at most {MAX_VOXELS} voxels on the Triton path (32-bit voxel numbers), got "
                         f"{'x'.join(map(str, crop))}")
    return _launch(flat, (offsets, depths, heights, widths, inv_scale), key, step, index, count, purposes, channels,
                   crop, volumes=True)
