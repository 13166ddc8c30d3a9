"""Zarr and OME-Zarr images in and out of n2n_fast.denoise, streamed in bands of rows.

`denoise` reads its input one band of tile rows at a time and writes finished rows once (tiling.py), so a ZarrImage
(an array seen as (N, C, H, W) bands) lets an image larger than memory stream through the same tiled path: only the
chunks a band touches are decoded, and results go to the output array band by band. Same tile plan, same kernels:
the result equals the in-memory one bitwise.

Axes: y and x are the image plane, c (optional) the channels, t and z (optional) index independent 2-D images.
OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on zarr v3) is read from its first (full-resolution) level; the output is written
in the input's NGFF version and zarr format, with the same axes, units and pixel sizes (coordinate transformations)
and one resolution level: the lower levels of a pyramid would need a downsampling step this module does not do.
A plain zarr array takes its axes from `axes=`, its dimension names (zarr v3) or xarray's `_ARRAY_DIMENSIONS`.
Needs the [zarr] extra (the `zarr` package, v3); the NGFF metadata is read and written by zarr_store.py, not by
`ome-zarr`. With a 3-D network, z is a volume axis instead: volume_zarr.py streams slabs of z planes.
"""
import os

import numpy as np
import torch

from .zarr_store import check_axes, check_output, create_like, open_image
from .zarr_store import is_zarr  # noqa: F401 (folder.py asks this module)

_DENOISE_OPTIONS = ("tile", "overlap", "memory_budget", "batch_size", "blend", "precision", "device", "progress",
                    "backend", "value_range")  # n2n_fast.denoise's, but out and axes
_PLAN_OPTIONS = ("tile", "overlap", "memory_budget", "batch_size", "blend", "device")  # denoise_plan's
_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16, np.dtype(np.float16): torch.float16,
           np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class ZarrImage:
    """A zarr array as the (N, C, H, W) image that `denoise` reads (`image[:, :, lo:hi]` -> tensor) or, with
    output=True, writes (`out[:, :, lo:hi].copy_(tensor)`) by bands of rows; N runs over the t and z axes, C is 1
    without a c axis. (One class for both: denoise wants `out` of the image's kind.)"""

    is_band_store = True  # tiling._as_nchw takes it as it is
    device = torch.device("cpu")

    def __init__(self, array, axes, name="image", output=False, plane=None):
        if np.dtype(array.dtype) not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {array.dtype}; accepted: uint8, uint16, float16, float32, "
                            f"float64")
        self.array, self.axes, self.output = array, check_axes(axes, array.ndim, f"{name} axes"), output
        self.dtype = _DTYPES[np.dtype(array.dtype)]
        self.stack = [a for a in self.axes if a not in "cyx"]
        self.plane = plane  # None: every t/z position is one of the N images; else their indices (N = 1)
        self._order = [self.axes.index(a) for a in self.stack + [a for a in "cyx" if a in self.axes]]
        sizes = dict(zip(self.axes, array.shape))
        if plane is not None:
            sizes.update((a, 1) for a in self.stack)
        self._stacked = tuple(sizes[a] for a in self.stack + [a for a in "c" if a in self.axes])  # before (y, x)
        self.shape = torch.Size((int(np.prod([sizes[a] for a in self.stack], dtype=np.int64)), sizes.get("c", 1),
                                 sizes["y"], sizes["x"]))

    def _rows_index(self, rows):
        index = [slice(None)] * self.array.ndim
        index[self.axes.index("y")] = rows
        for axis, position in zip(self.stack, self.plane or ()):
            index[self.axes.index(axis)] = slice(position, position + 1)
        return tuple(index)

    def __getitem__(self, key):
        rows = _row_slice(key)
        if self.output:
            return _RowBand(self, rows)
        block = np.asarray(self.array[self._rows_index(rows)]).transpose(self._order)
        block = block.reshape(self.shape[0], self.shape[1], block.shape[-2], block.shape[-1])
        return torch.from_numpy(np.ascontiguousarray(block))

    def write_rows(self, rows, tensor):
        """Store the (N, C, h, W) tensor as rows `rows` (a slice) of the array."""
        block = tensor.numpy().reshape(self._stacked + tuple(tensor.shape[-2:]))
        self.array[self._rows_index(rows)] = block.transpose(np.argsort(self._order))


def _row_slice(key):
    if (not isinstance(key, tuple) or len(key) != 3 or key[:2] != (slice(None), slice(None))
            or not isinstance(key[2], slice)):
        raise IndexError(f"ZarrImage: only [:, :, lo:hi] row bands are supported, got {key!r}")
    return key[2]


class _RowBand:
    """`out[:, :, lo:hi]` of an output ZarrImage: `copy_(tensor)` writes through to the array."""

    def __init__(self, image, rows):
        self.image, self.rows = image, rows

    def copy_(self, tensor):
        self.image.write_rows(self.rows, tensor.cpu())
        return self



def denoise_zarr(model, source, target, *, axes=None, overwrite=False, **options):
    """Denoise the Zarr/OME-Zarr image at `source` into a new one at `target`, streaming bands of rows of one
    t/z plane at a time through the tiled path (memory: about one band of tile rows plus the chunks it touches,
    whatever the image size and stack depth).

    axes: names of a plain zarr array's axes from "tczyx" (e.g. "yx", "cyx", "zyx"); OME-Zarr brings its own.
    The output has the input's shape, chunks, dtype (integers rounded and clipped as in `denoise`), zarr format,
    axes, units and pixel sizes. overwrite: replace an existing Zarr at `target`. options: those of
    `n2n_fast.denoise` (tile, overlap, batch_size, blend, precision, device, progress, backend).
    Returns the target path. Needs the [zarr] extra. A 3-D network (UNet dims=3) denoises the z axis as a volume
    axis instead, in slabs of planes (n2n_fast/inference/volume_zarr.py)."""
    if not isinstance(source, (str, os.PathLike)) or not isinstance(target, (str, os.PathLike)):
        raise TypeError("denoise_zarr: source and target are paths of Zarr data")
    if "out" in options:
        raise TypeError("denoise_zarr: the output is `target`; out= is not accepted")
    unknown = sorted(set(options) - set(_DENOISE_OPTIONS))
    if unknown:
        raise TypeError(f"denoise_zarr: unknown option(s) {', '.join(unknown)}; accepted: "
                        f"{', '.join(_DENOISE_OPTIONS)}")
    from ..devices import check_device
    from .denoise import denoise, denoise_plan

    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__} {overwrite!r}")
    check_device(options.get("device"))  # before the target is created
    if getattr(model, "dims", 2) == 3:
        from .volume_zarr import denoise_zarr_volumes

        return denoise_zarr_volumes(model, source, target, axes=axes, overwrite=overwrite, **options)
    array, names, ome = open_image(source, axes)
    image = ZarrImage(array, names)  # checks the dtype before anything is written
    first = ZarrImage(array, names, plane=(0,) * len(image.stack))
    # the tiling arguments, checked on one plane before an existing target is replaced or a new one created
    denoise_plan(model, first, **{k: v for k, v in options.items() if k in _PLAN_OPTIONS})
    target = check_output(source, target, overwrite)
    written = create_like(target, array, names, ome)
    try:
        # one t/z plane at a time: denoise holds a band of every image it is given, so memory stays that of one
        # plane's band however deep the stack (planes are independent images; tiles never mix them)
        for plane in np.ndindex(*(array.shape[names.index(a)] for a in image.stack)):
            denoise(model, ZarrImage(array, names, plane=plane),
                    out=ZarrImage(written, names, "out", output=True, plane=plane), **options)
    except BaseException:
        import shutil

        shutil.rmtree(target, ignore_errors=True)  # never leave a half-written output behind
        raise
    return target
