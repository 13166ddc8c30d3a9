"""Volume files read a slab of z planes at a time, never whole (docs/volumes.md §6).

`open_volume(path, axes)` gives a VolumeSource: `.shape` is the canonical (D, H, W, C) of the volume, `.dtype` what
`read` returns, `.axes` the file's own layout (a result is written back in it), `.voxel_grid` the MRC header's
voxel size and origin (None for other formats), and `read(z0, z1)` the (z1 - z0, H, W, C) planes as a native-order
numpy array: only those planes are read from the file.

- `.npy`: `np.load(mmap_mode="r")`; MRC: `mrcfile.mmap` (n2n_fast/mrc.py read_mrc, read-only), signed int8/int16
  modes converted to float32 slab by slab as io.read_stack converts them whole; TIFF: `tifffile.memmap` when the
  file's data lie uncompressed in one run, else the pages of the planes asked for (tifffile, page by page).
- Pages a slab mapped are given back once it is read (mapped_pages.py), so reading a volume from end to end does
  not grow the process by the file's size.
"""
import os

import numpy as np

from ..axes import check_axes, infer_axes, to_stack
from .mapped_pages import release_pages
from .volume_stream import check_volume_dtype

_TIFF = (".tif", ".tiff")


class VolumeSource:
    """Planes [z0, z1) of a volume held by an array-like (memmap) laid out as `axes`, read on request."""

    def __init__(self, array, axes, path, voxel_grid=None, read_pages=None):
        self.path, self.axes, self.voxel_grid = str(path), axes, voxel_grid
        self.array, self._read_pages = array, read_pages
        self._z = axes.index("Z") if "Z" in axes else None  # no Z: refused by dims.denoise_mode before a read
        dtype = np.dtype(array.dtype)  # MRC's signed modes 0 and 1 read as float32, as io.read_stack reads them
        self.dtype = np.dtype(np.float32) if dtype.kind == "i" and voxel_grid is not None else dtype.newbyteorder("=")
        check_volume_dtype(self.dtype, f"image {path}")
        self.file_shape = tuple(array.shape)  # in the file's layout, for the checks of n2n_fast/inference/dims.py
        self.shape = _canonical_shape(self.file_shape, axes)
        if min(self.shape) < 1:
            raise ValueError(f"image {path}: empty array of shape {tuple(array.shape)}")

    def _slab(self, z0, z1):
        index = [slice(None)] * len(self.axes)
        index[self._z] = slice(z0, z1)
        return tuple(index)

    def read(self, z0, z1):
        """(z1 - z0, H, W, C) planes in `self.dtype`, native byte order, C-contiguous."""
        if not 0 <= z0 < z1 <= self.shape[0]:
            raise IndexError(f"{self.path}: planes [{z0}, {z1}) outside the volume's {self.shape[0]}")
        if self._read_pages is not None:
            block = self._read_pages(self._z, z0, z1)
        else:
            block = self.array[self._slab(z0, z1)]
        planes = np.ascontiguousarray(to_stack(block, self.axes), dtype=self.dtype)
        if self._read_pages is None:
            release_pages(self.array, block)
        return planes


def _canonical_shape(shape, axes):
    """(D, H, W, C) of an array of `shape` laid out as `axes`, without touching any data."""
    sizes = dict(zip(axes, shape))
    return sizes.get("Z", 1), sizes["Y"], sizes["X"], sizes.get("C", 1)


def _mrc(path):
    from ..mrc import read_mrc

    array, grid = read_mrc(path)
    return array, ("ZYX" if array.ndim == 3 else "YX"), grid


class _TiffPages:
    """Planes of a TIFF series read page by page (compressed or scattered data that tifffile cannot map). The
    series' pages hold its trailing axes (Y, X and maybe samples); its leading axes number the pages in C order, so
    the pages of planes [z0, z1) are a slice of arange(pages) shaped like those axes."""

    def __init__(self, path, series):
        self.path, self.series_shape = path, tuple(series.shape)
        self.page_shape = tuple(series.keyframe.shape)
        leading = self.series_shape[:len(self.series_shape) - len(self.page_shape)]
        if self.series_shape[len(leading):] != self.page_shape:
            raise ValueError(f"path: {path}: TIFF pages of shape {self.page_shape} do not tile its series "
                             f"{self.series_shape}; convert it to an uncompressed TIFF or .npy")
        self.pages = np.arange(int(np.prod(leading, dtype=np.int64))).reshape(leading)

    def check(self, z_axis):
        """Refuse, before any work, a series whose z axis lies inside its pages (one page holding the volume)."""
        if z_axis is not None and z_axis >= self.pages.ndim:
            raise ValueError(f"path: {self.path}: its z axis lies inside one TIFF page of shape {self.page_shape}; "
                             f"convert it to an uncompressed TIFF or .npy to stream it")

    def __call__(self, z_axis, z0, z1):
        index = [slice(None)] * self.pages.ndim
        index[z_axis] = slice(z0, z1)
        keys = self.pages[tuple(index)]
        import tifffile

        with tifffile.TiffFile(self.path) as tiff:
            planes = tiff.asarray(key=[int(k) for k in keys.ravel()], series=0, maxworkers=1)
        return planes.reshape(keys.shape + self.page_shape)


def _tiff(path):
    """(memmap or shape-only stand-in, tifffile's axes, page reader or None)."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        hint, shape, dtype = series.axes, tuple(series.shape), series.dtype
        try:
            return tifffile.memmap(path, mode="r"), hint, None
        except ValueError:  # compressed, tiled or scattered data: "image data are not memory-mappable"
            return _ShapeOnly(shape, dtype), hint, _TiffPages(path, series)


class _ShapeOnly:
    """The shape and dtype of a file read by pages: what VolumeSource checks before any read."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)


def open_volume(path, axes=None):
    """The VolumeSource of the volume file at `path` (see the module docstring), its axes given (`axes`), from the
    file's metadata or unambiguous from its shape (as io.read_stack decides them)."""
    from ..io import _extension
    from ..mrc import SUFFIXES as MRC_SUFFIXES

    path = str(path)
    ext = _extension(path, "path")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file {path}" + (" (a folder)" if os.path.isdir(path) else ""))
    grid, read_pages = None, None
    try:
        if ext == ".npy":
            array, hint = np.load(path, mmap_mode="r", allow_pickle=False), None
        elif ext in MRC_SUFFIXES:
            array, hint, grid = _mrc(path)
        elif ext in _TIFF:
            array, hint, read_pages = _tiff(path)
        else:
            raise ValueError(f"path: {path}: volumes stream from .npy, TIFF or MRC files, not {ext}")
    except Exception as exc:  # decoders raise many types for corrupt files; name the file and the cause
        if str(exc).startswith("path:"):
            raise
        raise ValueError(f"path: cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    if np.dtype(array.dtype).kind not in "uifb":
        raise TypeError(f"path: {path} holds {array.dtype} data; accepted: uint8, uint16 or float voxels")
    axes = check_axes(axes, array.shape) if axes is not None else infer_axes(array.shape, hint, f"image {path}")
    source = VolumeSource(array, axes, path, grid, read_pages)
    if read_pages is not None:
        read_pages.check(source._z)
    return source
