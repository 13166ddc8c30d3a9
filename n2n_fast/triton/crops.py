"""The `crop_gather` op on Triton: every training crop of a step in one launch (arguments and result:
n2n_fast/reference/crops.py, its PyTorch twin, bit for bit).

Why a kernel: the PyTorch twin builds its gather index with about 25 small ops, each a launch on a GPU (and a
kernel in the captured graph). Here program (block, b) computes the source pixel of BLOCK output pixels of crop b
from the picks, with the flip and the quarter turns folded into the index, and reads and writes every channel:
bytes per output element, the source element (1-4 bytes) plus 4 written.
"""
import torch
import triton
import triton.language as tl

from .device import on_device

BLOCK = 1024
NUM_WARPS = 4
MAX_CROP = 46340  # crop * crop < 2**31


@triton.jit
def _crop_gather_kernel(
    flat_ptr,  # the store's images, packed: image k's (C, H, W) at offsets[k]; any dtype of the table
    offsets_ptr, heights_ptr, widths_ptr,  # int64 [images]
    inv_scale_ptr,  # float32 [images]
    image_ptr, row_ptr, col_ptr, bits_ptr,  # int64 [B]: the picks
    out_ptr,  # out, float32 (B, C, crop, crop), contiguous
    channels,
    crop,  # < 46341, so crop * crop and the pixel coordinates fit 32 bits
    BLOCK: tl.constexpr,
):
    sample = tl.program_id(1)
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # output pixel i * crop + j
    inside = p < crop * crop
    image = tl.load(image_ptr + sample)
    row = tl.load(row_ptr + sample)
    col = tl.load(col_ptr + sample)
    bits = tl.load(bits_ptr + sample)
    offset = tl.load(offsets_ptr + image)
    width = tl.load(widths_ptr + image)
    plane = tl.load(heights_ptr + image) * width
    inv = tl.load(inv_scale_ptr + image)
    i = p // crop  # 32-bit: a 64-bit division is a called subroutine
    j = p - i * crop
    last = crop - 1
    turns = ((bits >> 1) & 3).to(tl.int32)
    # rot90 by `turns` quarter turns reads the flipped patch at (a, b) for output (i, j), as the twin
    a = tl.where(turns == 0, i, tl.where(turns == 1, j, tl.where(turns == 2, last - i, last - j)))
    b = tl.where(turns == 0, j, tl.where(turns == 1, last - i, tl.where(turns == 2, last - j, i)))
    b = tl.where((bits & 1) == 1, last - b, b)
    pixel = offset + (row + a.to(tl.int64)) * width + col + b.to(tl.int64)
    area = (tl.zeros([], dtype=tl.int64) + crop) * crop  # 64-bit from here on; crop may arrive as a constexpr 1
    out = out_ptr + sample.to(tl.int64) * channels * area + p
    for c in range(0, channels):
        value = tl.load(flat_ptr + pixel + c * plane, mask=inside, other=0).to(tl.float32) * inv
        tl.store(out + c * area, value, mask=inside)


def crop_gather(flat, offsets, heights, widths, inv_scale, image, row, col, bits, channels, crop):
    """(B, C, crop, crop) float32 crops (see n2n_fast/reference/crops.py)."""
    if crop > MAX_CROP:
        raise ValueError(f"crop: at most {MAX_CROP} pixels on the Triton path (32-bit pixel numbers), got {crop}")
    count = image.shape[0]
    out = torch.empty((count, channels, crop, crop), dtype=torch.float32, device=flat.device)
    if count and crop:
        with on_device(flat):
            _crop_gather_kernel[(triton.cdiv(crop * crop, BLOCK), count)](
                flat, offsets, heights, widths, inv_scale, image, row, col, bits, out, channels, crop,
                BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out
