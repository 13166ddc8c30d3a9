"""Giving a memory map's pages back once a slab of planes is done with (docs/volumes.md §6).

Pages of a file mapped into the process count towards its resident memory for as long as they stay mapped, so a
volume read (or written) through a memory map from end to end would grow the process by the whole file, whatever
the tile plan says. After each slab, the pages behind it are dropped from the mapping (madvise MADV_DONTNEED):
for a read-only or shared file mapping the data stay in the file and the kernel's page cache (written pages are
written back as usual, and reread from the file if touched again), so nothing is lost; only the process's
resident set shrinks back to what the plan holds. Private (copy-on-write) mappings are left alone: there the
pages are the only copy of what was written.
"""
import mmap

import numpy as np


def _mapping(array):
    """The mmap.mmap under a numpy memmap (or an ndarray over one, as mrcfile makes), or None."""
    mapped = getattr(array, "_mmap", None)
    while mapped is None and array is not None:
        array = getattr(array, "base", None)
        mapped = array if isinstance(array, mmap.mmap) else getattr(array, "_mmap", None)
    return mapped if isinstance(mapped, mmap.mmap) else None


def _release_contiguous(mapped, start_address, part):
    begin = part.ctypes.data - start_address
    end = begin + part.nbytes
    first = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the part only: its neighbours live on
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        mapped.madvise(mmap.MADV_DONTNEED, first, last - first)


def release_pages(array, part):
    """Drop the pages behind `part` (a view into the memory-mapped `array`) from the process's resident set.
    No-op for arrays that are not memory maps, private mappings, or platforms without madvise."""
    mapped = _mapping(array)
    if mapped is None or not hasattr(mapped, "madvise") or getattr(array, "mode", "r") == "c" or part.size == 0:
        return
    start_address = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
    _release_blocks(mapped, start_address, part)


def _release_blocks(mapped, start_address, part):
    """`part` split along its leading axes until each piece is one contiguous run of bytes (a slab of a CZYX
    file is one run per channel)."""
    if part.flags.c_contiguous or part.flags.f_contiguous:
        _release_contiguous(mapped, start_address, part)
        return
    if part.ndim <= 2:  # scattered rows or voxels (a Fortran-order file read along z): not worth a call each
        return
    for piece in part:
        _release_blocks(mapped, start_address, piece)
