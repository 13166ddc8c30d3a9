"""Volume files written a slab of z planes at a time (docs/volumes.md §6).

`volume_target(path, file_shape, axes, dtype, voxel_grid)` creates the whole output up front, under a temporary
name beside `path` (n2n_fast/atomic_file.py), in the layout `axes` and in `dtype`, and yields a VolumeSink whose
`write(z0, planes)` stores canonical (n, H, W, C) float planes in [0, 1] as planes [z0, z0 + n) of the file at
once (integers rounded and clipped as io.from_unit does). When the block ends the file is flushed, synced and
renamed onto `path`; when it raises (or the process dies) no file appears under `path`.

- `.npy`: np.lib.format.open_memmap; TIFF: tifffile.memmap (uncompressed, contiguous; the axes in its metadata as
  io.write_stack writes them); MRC: mrcfile.new_mmap with the input's voxel size and origin, header statistics
  gathered slab by slab (mrcfile's update_header_stats would read the whole volume into float32 temporaries).
- Pages of a written slab leave the process's resident set at once (mapped_pages.py); the kernel writes them back.
"""
import contextlib

import numpy as np

from ..axes import from_stack
from .mapped_pages import release_pages

_TIFF = (".tif", ".tiff")


class _Statistics:
    """min, max, mean and rms of everything written, merged slab by slab in float64 (Chan et al.'s pairwise
    update of the mean and the sum of squared deviations: no second pass, no cancellation)."""

    def __init__(self):
        self.count, self.mean, self.squares = 0, 0.0, 0.0
        self.minimum, self.maximum = np.inf, -np.inf

    def add(self, planes):
        for plane in planes:  # canonical (n, H, W, C): float64 one plane at a time, so memory stays a plane's
            values = plane.astype(np.float64)
            count, mean = values.size, float(values.mean())
            squares = float(np.square(values - mean).sum())
            total = self.count + count
            delta = mean - self.mean
            self.squares += squares + delta * delta * self.count * count / total
            self.mean += delta * count / total
            self.count = total
            self.minimum, self.maximum = min(self.minimum, float(values.min())), max(self.maximum, float(values.max()))

    def into(self, header):
        header.dmin, header.dmax = np.float32(self.minimum), np.float32(self.maximum)
        header.dmean, header.rms = np.float32(self.mean), np.float32(np.sqrt(self.squares / max(self.count, 1)))


class VolumeSink:
    """Planes written into `array` (a writable memory map laid out as `axes`) as they are finished."""

    def __init__(self, array, axes, statistics=None):
        self.array, self.axes, self.dtype = array, axes, np.dtype(array.dtype)
        self._z = axes.index("Z")
        self.statistics = statistics
        self.planes_written = 0

    def write(self, z0, planes):
        """Store canonical (n, H, W, C) float planes in [0, 1] (or planes already in the file's dtype) as planes
        [z0, z0 + n)."""
        from ..io import from_unit

        values = planes if np.dtype(planes.dtype) == self.dtype else from_unit(planes, self.dtype)
        block = from_stack(values, self.axes)
        index = [slice(None)] * len(self.axes)
        index[self._z] = slice(z0, z0 + planes.shape[0])
        target = self.array[tuple(index)]
        target[...] = block
        if self.statistics is not None:
            self.statistics.add(values)
        release_pages(self.array, target)
        self.planes_written += planes.shape[0]


def _check(path, file_shape, axes, ext):
    from ..mrc import SUFFIXES as MRC_SUFFIXES

    if "Z" not in axes:
        raise ValueError(f"target: {path}: a volume needs a Z axis, got axes {axes!r}")
    if ext in MRC_SUFFIXES and ("C" in axes and file_shape[axes.index("C")] != 1):
        raise ValueError(f"target: an MRC file holds one channel, got a volume of shape {tuple(file_shape)} "
                         f"({axes}) for {path}; write multi-channel volumes to .tif or .npy")
    if ext not in _TIFF + (".npy",) + MRC_SUFFIXES:
        raise ValueError(f"target: {path}: a volume is written to .tif/.tiff, .npy or MRC "
                         f"({', '.join(MRC_SUFFIXES)}), not {ext}")


def mrc_dtype(dtype):
    """What an MRC file stores for results of `dtype`: uint8 widened to uint16 (io._mrc_data says why)."""
    return np.dtype(np.uint16) if np.dtype(dtype) == np.uint8 else np.dtype(dtype)


def check_target(path, file_shape, axes):
    """Before any work: `path`'s format can take a volume of this shape and layout."""
    from ..io import _extension

    _check(path, file_shape, axes, _extension(path, "target"))


@contextlib.contextmanager
def volume_target(path, file_shape, axes, dtype, voxel_grid=None):
    """Yields the VolumeSink of a new volume file at `path` (see the module docstring)."""
    from ..atomic_file import atomic_path
    from ..io import _extension
    from ..mrc import SUFFIXES as MRC_SUFFIXES

    path = str(path)
    ext = _extension(path, "target")
    _check(path, file_shape, axes, ext)
    with atomic_path(path, "target") as temporary:
        if ext in MRC_SUFFIXES:
            with _mrc_target(temporary, file_shape, axes, mrc_dtype(dtype), voxel_grid) as sink:
                yield sink
        else:
            if ext == ".npy":
                array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.dtype(dtype),
                                                  shape=tuple(file_shape))
            else:
                import tifffile

                array = tifffile.memmap(temporary, shape=tuple(file_shape), dtype=np.dtype(dtype),
                                        photometric="minisblack", metadata={"axes": axes})
            sink = VolumeSink(array, axes)
            yield sink
            _check_complete(sink, file_shape, axes, path)
            array.flush()
            del array, sink


@contextlib.contextmanager
def _mrc_target(temporary, file_shape, axes, dtype, voxel_grid):
    import mrcfile

    from ..mrc import write_grid

    sections = tuple(file_shape[axes.index(a)] for a in "ZYX")  # MRC is (Z, Y, X); a C of 1 is dropped
    with mrcfile.new_mmap(temporary, shape=sections, mrc_mode=mrcfile.utils.mode_from_dtype(dtype),
                          overwrite=True) as mrc:
        write_grid(mrc, voxel_grid)
        sink = VolumeSink(mrc.data.reshape(file_shape), axes, _Statistics())
        yield sink
        _check_complete(sink, file_shape, axes, temporary)
        sink.statistics.into(mrc.header)


def _check_complete(sink, file_shape, axes, path):
    depth = file_shape[axes.index("Z")]
    if sink.planes_written != depth:  # a loop that stopped early must not leave a file of zeros behind
        raise RuntimeError(f"target: {path}: {sink.planes_written} of {depth} planes were written")
