"""The `crop_gather` and `training_crops` ops in PyTorch: training crops cut from a store's packed images
(n2n_fast/crops.py); training_crops also draws the picks itself (its Triton twin does both in one launch).

Arguments (all on one device):
    flat        every image of the store, packed: image k's (C, H, W) values start at offsets[k]
    offsets, heights, widths  int64 [images]
    inv_scale   float32 [images]: the factor taking image k to [0, 1] (1/255 for uint8, 1 for floats)
    image, row, col, bits     int64 [B]: the picks (data.draw_crops): which image, the crop's top-left corner, and
                the flip (bit 0) and quarter turns (bits 1-2)
    channels, crop            ints
Returns (B, C, crop, crop) float32: crop b is image[b]'s patch, flipped (bit 0) then turned (bits 1-2) as
data.ImageStore.crops does with torch.flip and torch.rot90, times inv_scale (one float32 multiply).
"""
import torch

from .philox import philox_words

_MASK32 = 0xFFFFFFFF


def crop_gather(flat, offsets, heights, widths, inv_scale, image, row, col, bits, channels, crop):
    n = crop
    device = flat.device
    i = torch.arange(n, device=device).view(1, n, 1)
    j = torch.arange(n, device=device).view(1, 1, n)
    turns = ((bits >> 1) & 3).view(-1, 1, 1)
    # rot90 by k quarter turns reads the flipped patch at (a, b) for output (i, j)
    a = torch.where(turns == 0, i, torch.where(turns == 1, j, torch.where(turns == 2, n - 1 - i, n - 1 - j)))
    b = torch.where(turns == 0, j, torch.where(turns == 1, n - 1 - i, torch.where(turns == 2, n - 1 - j, i)))
    b = torch.where((bits & 1).view(-1, 1, 1) == 1, n - 1 - b, b)
    width = widths[image].view(-1, 1, 1)
    pixel = (row.view(-1, 1, 1) + a) * width + col.view(-1, 1, 1) + b
    plane = (heights[image] * widths[image]).view(-1, 1, 1, 1)
    channel = torch.arange(channels, device=device).view(1, -1, 1, 1)
    index = offsets[image].view(-1, 1, 1, 1) + channel * plane + pixel.unsqueeze(1)
    return flat[index].float() * inv_scale[image].view(-1, 1, 1, 1)


def training_crops(flat, offsets, heights, widths, inv_scale, key, step, index, count, purpose, channels, crop):
    """The `training_crops` op: the crops of samples index .. index + count - 1 at `step` (an int or a 0-d int64
    tensor), picked with data.py's counter layout (Philox key `key`, counter (sample, 0, step, purpose); image =
    w0 % images, row = w1 % (H - crop + 1), col = w2 % (W - crop + 1), bits = w3 & 7), then crop_gather."""
    device = flat.device
    counters = torch.zeros(count, 4, dtype=torch.int64, device=device)
    counters[:, 0] = torch.arange(index, index + count, dtype=torch.int64, device=device) & _MASK32
    counters[:, 2] = step & _MASK32
    counters[:, 3] = purpose
    counters = counters.to(torch.int32)  # int64 -> int32 keeps the low 32 bits: the same counter words
    words = philox_words(counters, key).to(torch.int64) & _MASK32
    image = words[:, 0] % offsets.shape[0]
    row = words[:, 1] % (heights[image] - crop + 1)
    col = words[:, 2] % (widths[image] - crop + 1)
    return crop_gather(flat, offsets, heights, widths, inv_scale, image, row, col, words[:, 3] & 7, channels, crop)
