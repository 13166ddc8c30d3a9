"""MRC files (cryo-EM / cryo-ET maps, tomograms, image stacks) through mrcfile, the CCP-EM library (docs/volumes.md §2).

Read as a read-only memory map in the file's own mode (a 300x1000x1000 float32 tomogram is not loaded to read a
crop); ZYX for a volume, YX for a single section. The voxel size and the header's origin travel beside the array
as a `VoxelGrid`, so a result is written with the grid it was read with. n2n_fast/io.py routes the suffixes here
and does the scaling; this module only reads, checks and writes the file.
"""
import dataclasses

import numpy as np

from .atomic_file import atomic_path

SUFFIXES = (".mrc", ".rec", ".map")
# mode -> what it holds. Modes 3 and 4 (complex) and 101 (4-bit) have no place in denoising: refused by name.
READABLE_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_UNREADABLE_MODES = {3: "complex int16", 4: "complex float32", 101: "packed 4-bit"}
# What is written for each numpy dtype: float32 -> mode 2, float16 -> 12, uint16 -> 6 (mrcfile's own mapping).
WRITABLE = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint16))


@dataclasses.dataclass(frozen=True)
class VoxelGrid:
    """Where a volume's voxels lie: voxel_size and origin as (z, y, x) in ångström, the units of an MRC header
    (voxel size = cell / grid sampling; origin = the MRC2014 `origin` field). A voxel size of 0 means unset."""

    voxel_size: tuple = (0.0, 0.0, 0.0)
    origin: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        for name in ("voxel_size", "origin"):
            value = getattr(self, name)
            try:
                value = tuple(float(v) for v in value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name}: expected three numbers (z, y, x) in ångström, got {value!r}") from exc
            if len(value) != 3 or not all(np.isfinite(value)):
                raise ValueError(f"{name}: expected three finite numbers (z, y, x) in ångström, got {value!r}")
            object.__setattr__(self, name, value)
        if min(self.voxel_size) < 0:
            raise ValueError(f"voxel_size: must not be negative, got {self.voxel_size}")

    @property
    def anisotropy(self):
        """z voxel size / y-x voxel size (the mean of y and x), or None when the header leaves them unset: what
        n2n_fast.unet.z_pool_levels takes."""
        z, y, x = self.voxel_size
        return z / ((y + x) / 2) if min(self.voxel_size) > 0 else None


def _header(path):
    import mrcfile

    with mrcfile.open(path, header_only=True, permissive=False) as mrc:
        return mrc.header.copy()


def read_mrc(path):
    """(array, VoxelGrid) of the MRC file at `path`: the array a read-only numpy memmap of the file's data in its
    own dtype and byte order, (Z, Y, X) for a volume or image stack, (Y, X) for a single section.
    ValueError naming the file: not a valid MRC file (mrcfile's strict reading), or a mode that is not a real-valued
    image (complex modes 3 and 4, packed 4-bit mode 101) or a stack of volumes."""
    import mrcfile

    try:
        mode = int(_header(path).mode)
    except ValueError as exc:  # mrcfile's strict reading: bad map ID, machine stamp, sizes
        raise ValueError(f"path: {path} is not a valid MRC file ({exc})") from exc
    if mode not in READABLE_MODES:
        what = _UNREADABLE_MODES.get(mode, "not an MRC2014 mode")
        readable = ", ".join(f"{m} ({t})" for m, t in READABLE_MODES.items())
        raise ValueError(f"path: {path} is an MRC file of mode {mode} ({what}), which n2n_fast cannot denoise; "
                         f"readable modes: {readable}")
    try:
        with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
            data, voxel, origin = mrc.data, mrc.voxel_size, mrc.header.origin
            grid = VoxelGrid((voxel.z, voxel.y, voxel.x), (origin.z, origin.y, origin.x))
    except ValueError as exc:  # e.g. a data block shorter than the header says (a truncated download)
        raise ValueError(f"path: {path} is not a valid MRC file ({exc})") from exc
    # the memmap keeps its own mapping of the file: it stays valid after mrcfile closes its handle
    if data.ndim == 4:
        raise ValueError(f"path: {path} holds a stack of volumes {data.shape}; n2n_fast reads single volumes: "
                         "split it into one file per volume")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    return data, grid


def write_mrc(path, data, grid=None):
    """Write `data` ((Y, X) or (Z, Y, X), float32, float16 or uint16) to the MRC file `path` atomically, with
    `grid`'s voxel size and origin (VoxelGrid; None: unset) and the header's min/max/mean/rms. The data go through
    a memory map of the new file, one section at a time, so a tomogram is not copied in memory. A 3-D array is
    written as a volume (space group 1), image stacks included: readers treat both as (Z, Y, X)."""
    import mrcfile

    data = np.asarray(data)
    if data.dtype not in WRITABLE:
        raise ValueError(f"pixels: MRC files store float32, float16 or uint16 voxels, not {data.dtype} (for "
                         f"{path})")
    if data.ndim not in (2, 3) or min(data.shape) < 1:
        raise ValueError(f"pixels: an MRC file holds a (Y, X) section or a (Z, Y, X) volume of one channel, got "
                         f"shape {data.shape} for {path}")
    if grid is not None and not isinstance(grid, VoxelGrid):
        raise TypeError(f"voxel_grid: expected an n2n_fast.mrc.VoxelGrid or None, got {type(grid).__name__}")
    with atomic_path(path) as tmp:
        mode = mrcfile.utils.mode_from_dtype(data.dtype)
        with mrcfile.new_mmap(tmp, shape=data.shape, mrc_mode=mode, overwrite=True) as mrc:
            sections = data.reshape((-1,) + data.shape[-2:])
            target = mrc.data.reshape(sections.shape)
            for z in range(sections.shape[0]):
                target[z] = sections[z]
            write_grid(mrc, grid)
            mrc.update_header_stats()
    return path


def write_grid(mrc, grid):
    """Put `grid`'s voxel size and origin (VoxelGrid, (z, y, x); None: leave them unset) into the header of the
    open mrcfile object `mrc` (which stores them x first)."""
    if grid is None:
        return
    if not isinstance(grid, VoxelGrid):
        raise TypeError(f"voxel_grid: expected an n2n_fast.mrc.VoxelGrid or None, got {type(grid).__name__}")
    z, y, x = grid.voxel_size
    mrc.voxel_size = (x, y, z)
    z, y, x = grid.origin
    mrc.header.origin = (x, y, z)
