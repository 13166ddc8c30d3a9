"""The `training_crops` op on Triton: a step's training crops, picked and cut in one launch (arguments and result:
n2n_fast/reference/crops.py, its PyTorch twin, bit for bit).

Why one kernel: the twin draws the Philox words, turns them into picks (`word % n`) and builds its gather index with
about 35 small ops, each a launch on a GPU (and a node in the captured graph). Here program (block, b) draws
sample b's four words itself (the counter layout of n2n_fast/training/data.py, the step read from device memory
in train()), picks the image, the corner, the flip and the quarter turns, and reads and writes BLOCK output
pixels of every channel: bytes per output element, the source element (1-4 bytes) plus 4 written.
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


# key, step and index vary from call to call: an int equal to 1 would otherwise compile its own specialisation
@triton.jit(do_not_specialize=["key", "step", "index"])
def _training_crops_kernel(
    flat_ptr,  # the store's images, packed: image k's (C, H, W) at offsets[k]; any dtype of the table
    offsets_ptr, heights_ptr, widths_ptr,  # int64 [images]
    inv_scale_ptr,  # float32 [images]
    out_ptr,  # out, float32 (B, C, crop, crop), contiguous
    key,  # Philox key: seed ^ data.DATA_KEY, as a signed int64
    step,  # training step (when STEP_IN_MEMORY is off)
    step_ptr,  # int64 0-d: the training step (when STEP_IN_MEMORY is on)
    index,  # global index of the batch's first sample
    images,  # images in the store
    purpose,  # the counter's c3: data.SAMPLE
    channels,
    crop,  # <= MAX_CROP
    BLOCK: tl.constexpr,
    STEP_IN_MEMORY: tl.constexpr,
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
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # output pixel i * crop + j
    inside = p < crop * crop
    i = p // crop  # 32-bit: a 64-bit division is a called subroutine
    j = p - i * crop
    last = crop - 1
    turns = (bits >> 1) & 3
    # rot90 by `turns` quarter turns reads the flipped patch at (a, b) for output (i, j), as the twin
    a = tl.where(turns == 0, i, tl.where(turns == 1, j, tl.where(turns == 2, last - i, last - j)))
    b = tl.where(turns == 0, j, tl.where(turns == 1, last - i, tl.where(turns == 2, last - j, i)))
    b = tl.where((bits & 1) == 1, last - b, b)
    pixel = offset + (row + a.to(tl.int64)) * width + col + b.to(tl.int64)
    plane = height * width
    area = (tl.zeros([], dtype=tl.int64) + crop) * crop  # 64-bit from here on; crop may arrive as a constexpr 1
    out = out_ptr + sample.to(tl.int64) * channels * area + p
    for c in range(0, channels):
        value = tl.load(flat_ptr + pixel + c * plane, mask=inside, other=0).to(tl.float32) * inv
        tl.store(out + c * area, value, mask=inside)


def training_crops(flat, offsets, heights, widths, inv_scale, key, step, index, count, purpose, channels, crop):
    """(count, C, crop, crop) float32 crops (see n2n_fast/reference/crops.py); step an int or a 0-d int64 tensor on
    flat's device."""
    if crop > MAX_CROP:
        raise ValueError(f"crop: at most {MAX_CROP} pixels on the Triton path (32-bit pixel numbers), got {crop}")
    out = torch.empty((count, channels, crop, crop), dtype=torch.float32, device=flat.device)
    if count and crop:
        step, step_ptr, in_memory = step_arguments(step, offsets)
        with on_device(flat):
            _training_crops_kernel[(triton.cdiv(crop * crop, BLOCK), count)](
                flat, offsets, heights, widths, inv_scale, out, signed_seed(key), step, step_ptr, index,
                offsets.shape[0], purpose, channels, crop, BLOCK=BLOCK, STEP_IN_MEMORY=in_memory,
                num_warps=NUM_WARPS)
    return out
