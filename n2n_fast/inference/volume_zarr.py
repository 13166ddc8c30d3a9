"""Zarr / OME-Zarr volumes through a 3-D network, a slab of z planes at a time (docs/volumes.md §6).

The 3-D sibling of zarr_io.denoise_zarr: the same axes (NGFF metadata, dimension names or `axes=`, letters from
"tczyx"), the same output (the input's shape, chunks, dtype, zarr format, axes, units and pixel sizes, one
resolution level), but z is a volume axis here, not a stack of images: ZarrVolume reads planes [z0, z1) of one
volume (a slice of the array along z: only the chunks it touches are decoded) and writes finished planes the same
way. Each t position is a volume of its own (T points are not sections of one volume). The output is built under a
temporary name beside the target and renamed onto it when complete, so an interrupted run leaves no Zarr that
looks finished (zarr_io removes a failed output; this also survives a killed process).
"""
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from .volume_stream import check_volume_dtype


class ZarrVolume:
    """One volume (t position `t`, or the whole array without t) of a zarr array laid out as `axes` (lower case,
    zarr_store.check_axes), as a slab source (`read`) and sink (`write`) on the canonical (D, H, W, C) layout."""

    def __init__(self, array, axes, t=None, path="image"):
        from ..axes import check_axes

        self.array, self.path = array, str(path)
        self._fixed = {axes.index("t"): t} if "t" in axes else {}
        self.axes = check_axes("".join(a for a in axes if a != "t"), [0] * (len(axes) - len(self._fixed)))
        self.names = axes
        self.dtype = np.dtype(array.dtype).newbyteorder("=")
        check_volume_dtype(self.dtype, f"image {path}")
        sizes = dict(zip(axes.upper(), array.shape))
        self.file_shape = tuple(sizes[a] for a in self.axes)
        self.shape = sizes.get("Z", 1), sizes["Y"], sizes["X"], sizes.get("C", 1)
        self.voxel_grid = None

    def _slab(self, z0, z1):
        index = []
        for position, name in enumerate(self.names):
            index.append(self._fixed[position] if position in self._fixed else
                         slice(z0, z1) if name == "z" else slice(None))
        return tuple(index)

    def read(self, z0, z1):
        """(z1 - z0, H, W, C) planes in the array's dtype, native order."""
        from ..axes import to_stack

        block = np.asarray(self.array[self._slab(z0, z1)])
        return np.ascontiguousarray(to_stack(block, self.axes), dtype=self.dtype)

    def write(self, z0, planes):
        """Store canonical (n, H, W, C) planes (float in [0, 1], or already in the array's dtype) at [z0, z0 + n)."""
        from ..axes import from_stack
        from ..io import from_unit

        values = planes if np.dtype(planes.dtype) == self.dtype else from_unit(planes, self.dtype)
        self.array[self._slab(z0, z0 + planes.shape[0])] = from_stack(values, self.axes)


def _temporary_name(target):
    return target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"


def _install(temporary, target):
    """Move the finished output onto `target`, replacing an existing Zarr (checked by check_output) last."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(temporary, target)


def denoise_zarr_volumes(model, source, target, *, axes=None, overwrite=False, **options):
    """Denoise the Zarr/OME-Zarr volume(s) at `source` with a 3-D network into a new Zarr at `target`, a slab of
    planes at a time (memory: the plan's slab and tile batch, whatever the depth). Returns the target path.
    axes: a plain zarr array's axes from "tczyx" with z (e.g. "zyx", "czyx"); options: those of n2n_fast.denoise
    for volumes (tile, overlap, memory_budget, batch_size, blend, precision, device, backend, value_range)."""
    from .dims import denoise_mode
    from .volume import denoise_planes
    from .volume_files import check_stream
    from .zarr_store import check_output, create_like, open_image

    array, names, ome = open_image(source, axes)
    if "z" not in names:  # a single image or a time series: the error says what a 3-D network needs
        denoise_mode(model, names.upper(), array.shape, "image")
    t_size = array.shape[names.index("t")] if "t" in names else 1
    volumes = [ZarrVolume(array, names, t if "t" in names else None, source) for t in range(t_size)]
    check_stream(model, volumes[0], "image", **options)  # the plan and the data's checks, before any output
    target = check_output(source, target, overwrite, remove=False)
    temporary = _temporary_name(target)
    try:
        written = create_like(temporary, array, names, ome)
        for t, volume in enumerate(volumes):
            sink = ZarrVolume(written, names, t if "t" in names else None, target)
            denoise_planes(model, volume, sink, **options)
        _install(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return Path(target)
