"""Mirror padding by docs/design.md §5: reflection without repeating the edge pixel, periodic when the pad exceeds the
image, replication when a side is one pixel long. Shared by the U-Net (pad to a multiple of 32) and the tiling
reference; csrc/tiling.h implements the same `mirror_index` for the compiled kernels."""
import torch


def mirror_index(index, size):
    """Map integer positions (tensor, any values) into [0, size) by reflection about the edge pixels.

    Period 2*(size-1): ... 2 1 [0 1 2 ... size-1] size-2 ... ; size == 1 maps everything to 0."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = torch.remainder(index, period)
    return torch.where(index < size, index, period - index)


def mirror_pad(x, left, right, top, bottom):
    """Pad the last two dims of `x` by mirror reflection (any pad sizes, even larger than the image)."""
    height, width = x.shape[-2:]
    rows = mirror_index(torch.arange(-top, height + bottom, device=x.device), height)
    cols = mirror_index(torch.arange(-left, width + right, device=x.device), width)
    return x.index_select(-2, rows).index_select(-1, cols)


def mirror_pad_end(x, pads):
    """Pad the last len(pads) dims of `x` at their far ends by mirror reflection, pads[i] elements after dim
    -len(pads) + i (any pad sizes, even larger than the axis): the 3-D U-Net's pad up to its alignment."""
    for dim, pad in zip(range(-len(pads), 0), pads):
        if pad:
            size = x.shape[dim]
            x = x.index_select(dim, mirror_index(torch.arange(size + pad, device=x.device), size))
    return x
