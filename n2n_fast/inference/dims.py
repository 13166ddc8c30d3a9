"""Which way a network denoises an array: a volume in 3-D tiles, a stack slice by slice, or one image
(docs/volumes.md §4).

A network's dimensionality is its `dims` attribute (n2n_fast.UNet: 2 or 3; any other model: 2). A 2-D network on
a Z or T stack denoises it slice by slice, as before volumes existed; a 3-D network needs a Z stack (a volume):
given a single image or a time series it is refused with what to pass, before any work starts.
"""
from ..axes import check_axes


def denoise_mode(model, axes, shape, name="image"):
    """"volume", "slices" or "image" for `model` on an array of `shape` laid out as `axes` (n2n_fast/axes.py);
    ValueError naming `name` when a 3-D network meets data that is not a volume."""
    axes = check_axes(axes, shape, "axes")
    dims = getattr(model, "dims", 2)
    if dims == 3:
        if "Z" in axes:
            return "volume"
        what = "a time series (axes {!r}): T points are not sections of one volume" if "T" in axes else \
            "a single 2-D image (axes {!r})"
        raise ValueError(f"{name}: the model is a 3-D network (UNet dims=3) but {name} of shape {tuple(shape)} is "
                         f"{what.format(axes)}; pass a volume with axes='ZYX' (or 'ZYXC'), or denoise it with a "
                         f"2-D network (UNet dims=2, train(..., dims=2))")
    return "slices" if set(axes) & set("ZT") else "image"
