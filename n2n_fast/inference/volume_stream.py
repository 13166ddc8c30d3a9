"""Where the planes of a volume come from and go to while denoise tiles it (n2n_fast/inference/volume.py).

The tiled 3-D pass never holds the volume: for each row of tiles along z it reads the planes those tiles need
and writes the planes no later tile touches. It talks to the data through two small objects on the canonical
(D, H, W, C) layout (planes along z, then rows, columns and channels), so a file format only has to provide them:

  source: `shape` (D, H, W, C), `dtype` (a numpy dtype: uint8, uint16, float16, float32, float64 or bool), and
          `read(z0, z1) -> ndarray` of shape (z1 - z0, H, W, C) in that dtype: volume planes [z0, z1), any strides
          (a view is best: it is only read, once per tile row, and dropped when the row is done).
  sink:   `dtype` (the numpy dtype it stores) and `write(z0, planes)`: stores planes (n, H, W, C) of that dtype as
          volume planes [z0, z0 + n). Called once per plane, in increasing z, with planes it may keep.

ArraySource and ArraySink implement them for numpy arrays and memmaps (a view per slab: a np.memmap then reads
only the planes a tile row needs, and writes each finished plane once). Float sources hold [0, 1] values or the
units of a stated value_range; integers are scaled by their peak on the way in and rounded back on the way out
(io.to_unit / io.from_unit rules). The two adapters below let the 2-D band movers (n2n_fast/inference/stream.py:
pinned staging and a side stream on CUDA, so copies overlap compute) move planes of a source and sink as they move
rows of a tensor.
"""
import warnings

import numpy as np
import torch

VOLUME_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64, np.bool_)  # as io.to_unit accepts


def check_volume_dtype(dtype, name):
    if np.dtype(dtype).type not in VOLUME_DTYPES:
        raise TypeError(f"{name}: unsupported dtype {np.dtype(dtype)}; accepted: uint8, uint16, float16, float32, "
                        f"float64, bool")


class ArraySource:
    """A numpy (D, H, W, C) array or view (e.g. axes.to_stack of a memmap) as a source."""

    def __init__(self, stack):
        check_volume_dtype(stack.dtype, "image")
        self.stack, self.shape, self.dtype = stack, tuple(stack.shape), stack.dtype

    def read(self, z0, z1):
        return self.stack[z0:z1]


class ArraySink:
    """A writable numpy (D, H, W, C) array or view (axes.to_stack of `out`, a memmap too) as a sink."""

    def __init__(self, stack):
        check_volume_dtype(stack.dtype, "out")
        self.stack, self.dtype = stack, stack.dtype

    def write(self, z0, planes):
        self.stack[z0:z0 + planes.shape[0]] = planes


class SourcePlanes:
    """A source seen as the (1, C, D, H, W) tensor that stream.BandReader slices (`view[:, :, lo:hi]`): each slice
    reads planes [lo, hi) (native byte order, bool as 0/1 floats) as a CPU tensor view."""

    def __init__(self, source):
        self.source = source

    def __getitem__(self, key):
        planes = self.source.read(key[2].start, key[2].stop)
        planes = np.asarray(planes)
        if planes.dtype == np.bool_:
            planes = planes.astype(np.float32)
        if not planes.dtype.isnative or any(stride < 0 for stride in planes.strides):
            planes = np.ascontiguousarray(planes, dtype=planes.dtype.newbyteorder("="))
        with warnings.catch_warnings():  # read-only arrays and memmaps are only ever read through this view
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(planes).permute(3, 0, 1, 2)[None]


class SinkPlanes:
    """A sink seen as the float32 CPU destination stream.RowWriter stores rows into (`dest[:, :, a:b].copy_(t)`):
    each store converts float32 planes to the sink's dtype (io.from_unit) and writes them."""
    dtype, device = torch.float32, torch.device("cpu")

    def __init__(self, sink):
        self.sink = sink

    def __getitem__(self, key):
        return _PlaneStore(self.sink, key[2].start)


class _PlaneStore:
    def __init__(self, sink, z0):
        self.sink, self.z0 = sink, z0

    def copy_(self, planes):
        from ..io import from_unit

        values = planes[0].permute(1, 2, 3, 0).cpu().numpy()
        self.sink.write(self.z0, from_unit(values, self.sink.dtype))
