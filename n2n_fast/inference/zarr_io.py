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
Needs the [zarr] extra (the `zarr` package, v3); the NGFF metadata is read and written here, not by `ome-zarr`.
"""
import os
from pathlib import Path

import numpy as np
import torch

from ..extras import MissingExtra, require

_DENOISE_OPTIONS = ("tile", "overlap", "memory_budget", "batch_size", "blend", "precision", "device", "progress",
                    "backend", "value_range")  # n2n_fast.denoise's, but out and axes
_PLAN_OPTIONS = ("tile", "overlap", "memory_budget", "batch_size", "blend", "device")  # denoise_plan's
AXES = "tczyx"  # the NGFF axis names this module accepts (any order, y and x required)
_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16, np.dtype(np.float16): torch.float16,
           np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _zarr():
    (zarr,) = require("zarr", "Zarr/OME-Zarr input and output", "zarr")
    if int(zarr.__version__.split(".")[0]) < 3:  # the v3 API (create_array, dimension_names) is used throughout
        raise MissingExtra(f"Zarr/OME-Zarr input and output needs zarr >= 3 (Python >= 3.11), found "
                           f"{zarr.__version__}: pip install 'n2n_fast[zarr]'")
    return zarr


def check_axes(axes, ndim, name="axes"):
    """`axes` lower-cased after checking it names each of `ndim` dimensions once from AXES, y and x included."""
    if not isinstance(axes, str):
        raise TypeError(f"{name}: expected a string such as 'yx', 'cyx' or 'tczyx', got {type(axes).__name__}")
    lowered = axes.lower()
    if (len(lowered) != ndim or len(set(lowered)) != ndim or not set(lowered) <= set(AXES)
            or not {"y", "x"} <= set(lowered)):
        raise ValueError(f"{name}: {axes!r} does not describe a {ndim}-D image; expected {ndim} distinct letters "
                         f"from {AXES!r} including y and x")
    return lowered


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



def _ngff(attributes):
    """(version, the first multiscales entry) of OME-NGFF group attributes (0.5: under "ome"), or None."""
    ome = attributes.get("ome", attributes)
    multiscales = ome.get("multiscales")
    if not multiscales:
        return None
    return str(ome.get("version") or multiscales[0].get("version") or "0.4"), multiscales[0]


def _dimension_names(array):
    names = getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS")
    return "".join(str(n) for n in names) if names and all(len(str(n)) == 1 for n in names) else None


def open_image(path, axes=None, name="image"):
    """(zarr array, axes, OME group attributes or None) of the image at `path`: an OME-Zarr image group (its
    full-resolution level) or a plain zarr array. `axes` overrides a plain array's names; it must agree with
    OME-Zarr metadata."""
    zarr = _zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a path that holds no zarr data
        raise ValueError(f"{name}: cannot open {str(path)!r} as Zarr ({type(exc).__name__}: {exc})") from exc
    if isinstance(node, zarr.Group):
        found = _ngff(dict(node.attrs))
        if found is None:
            raise ValueError(f"{name}: {str(path)!r} is a zarr group without OME-NGFF multiscales metadata; give "
                             f"the path of an image array inside it, or an OME-Zarr image")
        _, multiscale = found
        named = "".join(str(axis["name"]) if isinstance(axis, dict) else str(axis) for axis in multiscale["axes"])
        if axes is not None and axes.lower() != named.lower():
            raise ValueError(f"axes: {axes!r} disagrees with the OME-Zarr axes {named!r} of {str(path)!r}")
        array = node[multiscale["datasets"][0]["path"]]
        return array, check_axes(named, array.ndim, f"{name} axes (OME-Zarr)"), dict(node.attrs)
    named = axes or _dimension_names(node)
    if named is None:
        raise ValueError(f"{name}: the zarr array {str(path)!r} of shape {node.shape} has no axis names; pass "
                         f"axes= (--axes), e.g. 'yx', 'cyx', 'yxc' or 'tczyx'")
    return node, check_axes(named, node.ndim, f"{name} axes"), None


def _single_level(attributes):
    """OME group attributes keeping only the first resolution level (the one written)."""
    attributes = {key: value for key, value in attributes.items()}
    holder = dict(attributes["ome"]) if "ome" in attributes else attributes
    multiscales = [dict(holder["multiscales"][0])]
    multiscales[0]["datasets"] = multiscales[0]["datasets"][:1]
    holder["multiscales"] = multiscales
    if "ome" in attributes:
        attributes["ome"] = holder
    return attributes


def create_like(path, source, axes, ome):
    """A new, empty zarr array at `path` shaped, chunked and typed like `source`, in its zarr format, with its
    attributes; inside an OME-Zarr group (single level, same axes and transformations) when `ome` is given."""
    zarr = _zarr()
    zarr_format = source.metadata.zarr_format
    layout = {"shape": source.shape, "chunks": source.chunks, "dtype": source.dtype}
    if zarr_format == 3:
        layout.update(dimension_names=list(axes), chunk_key_encoding=source.metadata.chunk_key_encoding)
    else:  # NGFF 0.4 requires "/" between chunk indices; zarr v2's own default is "."
        layout["chunk_key_encoding"] = {"name": "v2", "separator": source.metadata.dimension_separator or "/"}
    if ome is None:
        return zarr.create_array(str(path), zarr_format=zarr_format, attributes=dict(source.attrs), **layout)
    attributes = _single_level(ome)
    group = zarr.open_group(str(path), mode="w-", zarr_format=zarr_format, attributes=attributes)
    holder = attributes.get("ome", attributes)
    return group.create_array(holder["multiscales"][0]["datasets"][0]["path"], **layout)


def _holds_zarr(path):
    return any((Path(path) / f).is_file() for f in (".zarray", ".zgroup", "zarr.json"))


def is_zarr(path):
    """Whether `path` names Zarr data: a folder with zarr metadata, or a path ending in .zarr."""
    return Path(path).suffix.lower() == ".zarr" or _holds_zarr(path)


def _check_target(source, target, overwrite):
    from ..atomic_file import check_writable

    target = check_writable(target, "out", folder=True)  # before anything is removed or written
    if target.resolve() == Path(source).resolve():
        raise ValueError(f"out: {str(target)!r} is the input; denoise never overwrites its input")
    if target.exists():
        if not overwrite:
            raise ValueError(f"out: {str(target)!r} exists; pass overwrite=True (--overwrite) to replace it")
        if not target.is_dir() or not _holds_zarr(target):  # a name ending in .zarr is not proof enough
            raise ValueError(f"out: {str(target)!r} exists and is not Zarr data; refusing to replace it")
        import shutil

        shutil.rmtree(target)
    return target


def denoise_zarr(model, source, target, *, axes=None, overwrite=False, **options):
    """Denoise the Zarr/OME-Zarr image at `source` into a new one at `target`, streaming bands of rows of one
    t/z plane at a time through the tiled path (memory: about one band of tile rows plus the chunks it touches,
    whatever the image size and stack depth).

    axes: names of a plain zarr array's axes from "tczyx" (e.g. "yx", "cyx", "zyx"); OME-Zarr brings its own.
    The output has the input's shape, chunks, dtype (integers rounded and clipped as in `denoise`), zarr format,
    axes, units and pixel sizes. overwrite: replace an existing Zarr at `target`. options: those of
    `n2n_fast.denoise` (tile, overlap, batch_size, blend, precision, device, progress, backend).
    Returns the target path. Needs the [zarr] extra."""
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
    array, names, ome = open_image(source, axes)
    image = ZarrImage(array, names)  # checks the dtype before anything is written
    first = ZarrImage(array, names, plane=(0,) * len(image.stack))
    # the tiling arguments, checked on one plane before an existing target is replaced or a new one created
    denoise_plan(model, first, **{k: v for k, v in options.items() if k in _PLAN_OPTIONS})
    target = _check_target(source, target, overwrite)
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
