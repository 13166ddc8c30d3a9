"""The `crop_gather` and `training_crops` ops in PyTorch, and their volume forms `volume_crop_gather` and
`volume_crops`: training crops cut from a store's packed images or volumes (n2n_fast/crops.py); training_crops and
volume_crops also draw the picks themselves (their Triton twin does both in one launch).

Arguments (all on one device):
    flat        every image (volume) of the store, packed: image k's (C, H, W) (volume k's (C, D, H, W)) values
                start at offsets[k]
    offsets, heights, widths  int64 [images]; depths int64 [volumes] for the volume forms
    inv_scale   float32 [images]: the factor taking image k to [0, 1] (1/255 for uint8, 1 for floats)
    image, row, col, bits     int64 [B]: the picks (data.draw_crops): which image, the crop's top-left corner, and
                the flip (bit 0) and quarter turns (bits 1-2); volumes add z (the first slice) and bit 3 (z flip)
    channels, crop            ints; for volumes crop is (depth, height, width) with height == width
Returns (B, C, crop, crop) float32: crop b is image[b]'s patch, flipped (bit 0) then turned (bits 1-2) as
data.ImageStore.crops does with torch.flip and torch.rot90, times inv_scale (one float32 multiply); for volumes
(B, C, depth, height, width), also flipped in z by bit 3 as volumes.VolumeStore.crops does.
"""
import torch

from .philox import philox_words

_MASK32 = 0xFFFFFFFF


def _turned(bits, n, device):
    """(a, b) int64 (B, n, n): the row and column of the flipped patch that output (i, j) reads, for the YX bits."""
    i = torch.arange(n, device=device).view(1, n, 1)
    j = torch.arange(n, device=device).view(1, 1, n)
    turns = ((bits >> 1) & 3).view(-1, 1, 1)
    # rot90 by k quarter turns reads the flipped patch at (a, b) for output (i, j)
    a = torch.where(turns == 0, i, torch.where(turns == 1, j, torch.where(turns == 2, n - 1 - i, n - 1 - j)))
    b = torch.where(turns == 0, j, torch.where(turns == 1, n - 1 - i, torch.where(turns == 2, n - 1 - j, i)))
    return a, torch.where((bits & 1).view(-1, 1, 1) == 1, n - 1 - b, b)


def crop_gather(flat, offsets, heights, widths, inv_scale, image, row, col, bits, channels, crop):
    device = flat.device
    a, b = _turned(bits, crop, device)
    width = widths[image].view(-1, 1, 1)
    pixel = (row.view(-1, 1, 1) + a) * width + col.view(-1, 1, 1) + b
    plane = (heights[image] * widths[image]).view(-1, 1, 1, 1)
    channel = torch.arange(channels, device=device).view(1, -1, 1, 1)
    index = offsets[image].view(-1, 1, 1, 1) + channel * plane + pixel.unsqueeze(1)
    return flat[index].float() * inv_scale[image].view(-1, 1, 1, 1)


def volume_crop_gather(flat, offsets, depths, heights, widths, inv_scale, volume, z, row, col, bits, channels,
                       crop):
    device = flat.device
    slices, n, _ = crop
    a, b = _turned(bits, n, device)  # (B, n, n)
    s = torch.arange(slices, device=device).view(1, -1)
    s = torch.where((bits & 8).view(-1, 1) != 0, slices - 1 - s, s)  # the z flip
    height, width = heights[volume], widths[volume]
    # small terms first, one add at the crops' size: the index of a voxel is the sum of a per-(sample, channel),
    # a per-slice and a per-(row, column) term
    in_plane = (row.view(-1, 1, 1) + a) * width.view(-1, 1, 1) + col.view(-1, 1, 1) + b  # (B, n, n)
    in_depth = (z.view(-1, 1) + s) * (height * width).view(-1, 1)  # (B, slices)
    stride = depths[volume] * height * width
    first = offsets[volume].view(-1, 1) + torch.arange(channels, device=device).view(1, -1) * stride.view(-1, 1)
    index = (first.view(-1, channels, 1, 1, 1) + in_depth.view(-1, 1, slices, 1, 1)) + in_plane.view(-1, 1, 1, n, n)
    return flat[index].float() * inv_scale[volume].view(-1, 1, 1, 1, 1)


def _words(key, step, index, count, purpose, device):
    """(count, 4) int64 words in [0, 2**32) of data.py's counters (sample, 0, step, purpose) for samples index ..
    index + count - 1; step an int or a 0-d int64 tensor."""
    counters = torch.zeros(count, 4, dtype=torch.int64, device=device)
    counters[:, 0] = torch.arange(index, index + count, dtype=torch.int64, device=device) & _MASK32
    counters[:, 2] = step & _MASK32
    counters[:, 3] = purpose
    counters = counters.to(torch.int32)  # int64 -> int32 keeps the low 32 bits: the same counter words
    return philox_words(counters, key).to(torch.int64) & _MASK32


def training_crops(flat, offsets, heights, widths, inv_scale, key, step, index, count, purpose, channels, crop):
    """The `training_crops` op: the crops of samples index .. index + count - 1 at `step` (an int or a 0-d int64
    tensor), picked with data.py's counter layout (Philox key `key`, counter (sample, 0, step, purpose); image =
    w0 % images, row = w1 % (H - crop + 1), col = w2 % (W - crop + 1), bits = w3 & 7), then crop_gather."""
    words = _words(key, step, index, count, purpose, flat.device)
    image = words[:, 0] % offsets.shape[0]
    row = words[:, 1] % (heights[image] - crop + 1)
    col = words[:, 2] % (widths[image] - crop + 1)
    return crop_gather(flat, offsets, heights, widths, inv_scale, image, row, col, words[:, 3] & 7, channels, crop)


def volume_crops(flat, offsets, depths, heights, widths, inv_scale, key, step, index, count, purposes, channels,
                 crop):
    """The `volume_crops` op: training_crops for volumes, with volumes.draw_volume_crops' picks. purposes =
    (SAMPLE, DEPTH): SAMPLE's words give the volume, row, column and YX bits as for images, DEPTH's word 0 the
    first slice (w % (D - depth + 1)) and word 1 bit 0 the z flip (bit 3 of bits); then volume_crop_gather."""
    sample_purpose, depth_purpose = purposes
    words = _words(key, step, index, count, sample_purpose, flat.device)
    slice_words = _words(key, step, index, count, depth_purpose, flat.device)
    slices, height, width = crop
    volume = words[:, 0] % offsets.shape[0]
    z = slice_words[:, 0] % (depths[volume] - slices + 1)
    row = words[:, 1] % (heights[volume] - height + 1)
    col = words[:, 2] % (widths[volume] - width + 1)
    bits = (words[:, 3] & 7) | ((slice_words[:, 1] & 1) << 3)
    return volume_crop_gather(flat, offsets, depths, heights, widths, inv_scale, volume, z, row, col, bits,
                              channels, crop)
