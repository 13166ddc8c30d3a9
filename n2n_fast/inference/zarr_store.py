"""Zarr and OME-Zarr stores for denoising: opening an image (its axes from NGFF metadata, dimension names or
`axes=`), creating an output like it, and checking an output path. Shared by the 2-D band path (zarr_io.py) and
the 3-D slab path (volume_zarr.py). Needs the [zarr] extra (zarr >= 3); the NGFF metadata is read and written
here, not by `ome-zarr`.
"""
from pathlib import Path

from ..extras import MissingExtra, require

AXES = "tczyx"  # the NGFF axis names this module accepts (any order, y and x required)


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


def check_output(source, target, overwrite, remove=True):
    """`target` as a Path after the checks of an output Zarr; an existing one (with overwrite) is removed now, or
    with remove=False left for the caller to replace once its output is complete (volume_zarr.py)."""
    from ..atomic_file import check_writable

    target = check_writable(target, "out", folder=True)  # before anything is removed or written
    if target.resolve() == Path(source).resolve():
        raise ValueError(f"out: {str(target)!r} is the input; denoise never overwrites its input")
    if target.exists():
        if not overwrite:
            raise ValueError(f"out: {str(target)!r} exists; pass overwrite=True (--overwrite) to replace it")
        if not target.is_dir() or not _holds_zarr(target):  # a name ending in .zarr is not proof enough
            raise ValueError(f"out: {str(target)!r} exists and is not Zarr data; refusing to replace it")
        if not remove:
            return target
        import shutil

        shutil.rmtree(target)
    return target
