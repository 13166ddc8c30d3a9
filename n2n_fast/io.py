"""Image I/O for users' data: PNG/JPEG (8-bit grey/RGB), 16-bit PNG, TIFF (grey, RGB, multi-channel), numpy, MRC.

Pixels come in as float32 in [0, 1] together with the original dtype, so results can be written back in kind.
Decoding is Pillow's, tifffile's and mrcfile's (n2n_fast/mrc.py); this module only scales, checks and routes.
MRC files (docs/volumes.md §2) also carry a voxel grid (voxel size, origin): `read_voxel_grid` returns it and the
writers take it back (`voxel_grid=`), so a denoised tomogram keeps its header's geometry.
"""
import os

import numpy as np

from .atomic_file import atomic_path, check_writable
from .axes import check_axes, infer_axes, to_stack
from .conventions import UINT_PEAKS
from .mrc import SUFFIXES as MRC_SUFFIXES
from .mrc import read_mrc, write_mrc

_TIFF = (".tif", ".tiff")
_PILLOW = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".pgm", ".ppm")
SUPPORTED = _TIFF + _PILLOW + (".npy",) + MRC_SUFFIXES
_INTEGER_PEAK = {np.dtype(name): float(peak) for name, peak in UINT_PEAKS.items()}
# What each Pillow format stores and reads back as written: (sample dtype, channels) pairs. Pillow itself would
# refuse some of the rest with an OSError (RGBA or 16-bit JPEG) and silently change others (BMP drops alpha, WebP
# turns grey into RGB and 16-bit into 8-bit), so anything else is refused before writing, pointing to .png / .tif.
_PILLOW_STORES = {
    ".png": {("uint8", 1), ("uint8", 3), ("uint8", 4), ("uint16", 1)},
    ".jpg": {("uint8", 1), ("uint8", 3)},
    ".jpeg": {("uint8", 1), ("uint8", 3)},
    ".bmp": {("uint8", 1), ("uint8", 3)},
    ".webp": {("uint8", 3), ("uint8", 4)},
    ".pgm": {("uint8", 1), ("uint16", 1)},
    ".ppm": {("uint8", 3)},
}
_CHANNEL_NAMES = {1: "grey", 3: "RGB", 4: "RGBA"}


def check_layout(array, name="image"):
    """Raise unless `array` is (H, W) or (H, W, C) with H, W, C >= 1."""
    if array.ndim not in (2, 3) or min(array.shape) < 1:
        raise ValueError(f"{name}: expected an array of shape (H, W) or (H, W, C), got shape {array.shape}")


def to_unit(array, name="image"):
    """(float32 array in [0, 1], original dtype). uint8/uint16 are scaled by their peak; floats are kept as they
    are (assumed already in [0, 1]) but must be finite."""
    array = np.asarray(array)
    dtype = array.dtype
    if dtype in _INTEGER_PEAK:
        return array.astype(np.float32) / np.float32(_INTEGER_PEAK[dtype]), dtype
    if dtype.kind == "f":
        pixels = array.astype(np.float32, copy=False)
        if not np.isfinite(pixels).all():
            raise ValueError(f"{name}: contains NaN or Inf values")
        return pixels, dtype
    if dtype == np.bool_:
        return array.astype(np.float32), dtype
    raise TypeError(f"{name}: unsupported dtype {dtype}; accepted: uint8, uint16, float16, float32, float64, bool")


def from_unit(pixels, dtype):
    """Back to `dtype`: integer dtypes are rounded and clipped to their range; float dtypes are cast unchanged."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: {dtype!r} is not a dtype; accepted: uint8, uint16, float32, float64") from exc
    if dtype.kind not in "fb" and dtype not in _INTEGER_PEAK:
        raise TypeError(f"dtype: {dtype} cannot hold [0, 1] images faithfully; accepted: uint8, uint16 (scaled to "
                        "their full range), float16, float32, float64")
    if dtype in _INTEGER_PEAK and not np.isfinite(np.asarray(pixels)).all():
        raise ValueError(f"pixels: NaN or Inf cannot be written as {dtype}")
    if dtype in _INTEGER_PEAK:
        peak = _INTEGER_PEAK[dtype]
        return np.clip(np.rint(np.asarray(pixels, dtype=np.float32) * peak), 0, peak).astype(dtype)
    if dtype == np.bool_:
        return np.asarray(pixels) >= 0.5
    return np.asarray(pixels).astype(dtype, copy=False)


def _extension(path, name):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__} {path!r}")
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in SUPPORTED:
        raise ValueError(f"{name}: unsupported file type {ext or '(none)'!r} for {path}; accepted: "
                         f"{', '.join(SUPPORTED)}")
    return ext


def _decode(path, ext):
    """(array, axes hint or None): tifffile's series axes for TIFF files, "YXC" for colour images from Pillow."""
    if ext in _TIFF:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            return series.asarray(), series.axes
    if ext == ".npy":
        return np.load(path, allow_pickle=False), None
    if ext in MRC_SUFFIXES:
        array, _ = read_mrc(path)
        if array.dtype.kind == "i":  # modes 0 and 1 (signed int8/int16): exact as float32, in the file's own units
            array = array.astype(np.float32)
        return array, "ZYX" if array.ndim == 3 else "YX"
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "1":  # bilevel: grey, not RGB
            image = image.convert("L")
        if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
        if image.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(image).astype(np.uint16), "YX"
        if image.mode == "I":  # 16-bit PNG greyscale is often opened as 32-bit 'I' with values below 65536
            array = np.asarray(image)
            if array.min() >= 0 and array.max() <= UINT_PEAKS["uint16"]:
                return array.astype(np.uint16), "YX"
            raise ValueError(f"path: {path} holds 32-bit integer pixels; accepted: 8- or 16-bit images")
        array = np.array(image)  # a writable copy: np.asarray's view is read-only, and torch warns on those
        return array, "YXC" if array.ndim == 3 else "YX"


def has_alpha(path, channels):
    """Whether a `channels`-channel image read from `path` carries an alpha channel: Pillow formats decode to grey,
    grey + alpha, RGB or RGBA, so 2 or 4 channels there are alpha; TIFF and .npy channels are data."""
    return os.path.splitext(str(path))[1].lower() in _PILLOW and channels in (2, 4)


def read_stack(path, axes=None, keep_integers=False):
    """Decode an image file -> (stack, dtype, axes): stack float32 (N, H, W, C) in [0, 1] (N > 1 for a Z or T
    stack), dtype the file's sample type, axes the layout read (given, from the file's metadata, or unambiguous
    from the shape; see n2n_fast/axes.py). An ambiguous 3-D or 4-D array without axes is refused.
    keep_integers: uint8/uint16 pixels come back unscaled in their own dtype (the training store keeps them
    compact: scaling to float32 and back would only cost time and memory)."""
    ext = _extension(path, "path")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file {path}" + (" (a folder)" if os.path.isdir(path) else ""))
    try:
        array, hint = _decode(path, ext)
    except Exception as exc:  # decoders raise many types for corrupt files; name the file and the cause
        if str(exc).startswith("path:"):
            raise
        raise ValueError(f"path: cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    if array.dtype == object or array.dtype.kind not in "uifb":
        raise TypeError(f"path: {path} holds {array.dtype} data; accepted: uint8, uint16 or float pixels")
    if array.dtype.byteorder == ">":  # big-endian files (valid input): native order for the arithmetic
        array = array.astype(array.dtype.newbyteorder("="))
    axes = check_axes(axes, array.shape) if axes is not None else infer_axes(array.shape, hint, f"image {path}")
    stack = to_stack(array, axes)
    if min(stack.shape) < 1:
        raise ValueError(f"image {path}: empty array of shape {array.shape}")
    if keep_integers and stack.dtype in _INTEGER_PEAK:
        return stack, stack.dtype, axes
    pixels, dtype = to_unit(stack, f"image {path}")
    return pixels, dtype, axes


def read_image(path, axes=None):
    """Decode one image file -> (pixels, dtype): pixels float32 (H, W) or (H, W, C) in [0, 1], dtype the file's
    sample type (uint8, uint16 or a float type), for writing results back in kind. A stack is refused (read_stack
    reads it)."""
    stack, dtype, axes = read_stack(path, axes)
    if stack.shape[0] != 1:
        raise ValueError(f"path: {path} holds a stack of {stack.shape[0]} images (axes {axes}); read it with "
                         "read_stack, or give the stack to train/denoise with axes=")
    image = stack[0]
    return (image if "C" in axes else image[..., 0]), dtype


def read_voxel_grid(path):
    """The VoxelGrid (voxel size and origin, (z, y, x) in ångström) of an MRC file, None for formats that carry
    none here."""
    ext = _extension(path, "path")
    return read_mrc(path)[1] if ext in MRC_SUFFIXES else None


def _mrc_data(pixels, dtype, path):
    """`pixels` in [0, 1] as the voxels of an MRC file: MRC has no unsigned 8-bit mode (mode 0 is signed), so
    uint8 is written as uint16 (mode 6) scaled to 65535, which is exact (65535 = 255 * 257: the same [0, 1]
    values read back); float32, float16 and uint16 as asked."""
    dtype = np.dtype(np.uint16) if np.dtype(dtype) == np.uint8 else np.dtype(dtype)
    if dtype not in (np.float32, np.float16, np.uint16):
        raise ValueError(f"dtype: MRC files store float32, float16, uint16 (or uint8, widened to uint16) voxels, "
                         f"not {dtype} (for {path})")
    return from_unit(pixels, dtype)


def check_image_format(path, channels, dtype, name="path"):
    """Raise unless the file type of `path` stores `channels`-channel images of `dtype` (a numpy dtype) as they are:
    TIFF, .npy and MRC store any (MRC: one channel, checked by write_image); the Pillow formats what _PILLOW_STORES
    lists. The error says what the suffix stores and which suffix to use instead."""
    ext = _extension(path, name)
    dtype = np.dtype(dtype)
    if ext in _TIFF + (".npy",) + MRC_SUFFIXES or (dtype.name, channels) in _PILLOW_STORES[ext]:
        return ext
    stores = ", ".join(f"{kind} {_CHANNEL_NAMES[c]}" for kind, c in sorted(_PILLOW_STORES[ext]))
    png = (dtype.name, channels) in _PILLOW_STORES[".png"]
    what = f"{dtype.name} {_CHANNEL_NAMES[channels]}" if channels in _CHANNEL_NAMES else \
        f"{dtype.name} {channels}-channel"
    raise ValueError(f"{name}: {ext} cannot store {what} images ({path}); it stores {stores}. Use "
                     f"{'.png or ' if png else ''}.tif (any channel count, uint8, uint16 or float32)")


def write_image(path, pixels, dtype=np.uint8, *, voxel_grid=None):
    """Write `pixels` ((H, W) or (H, W, C), float in [0, 1]) to `path` as `dtype` (uint8, uint16 or float32).

    PNG takes uint8 and uint16 (grey or RGB/RGBA); TIFF takes any channel count and float32; MRC one channel, as a
    single section, with `voxel_grid`'s voxel size and origin (other formats do not store it); JPEG and BMP uint8
    grey or RGB (check_image_format says what each suffix takes). The path is checked before anything is written
    (n2n_fast/atomic_file.py); the file goes through a temporary one renamed onto it, so an interrupted write never
    leaves a truncated image."""
    ext = _extension(path, "path")
    pixels = np.asarray(pixels)
    check_layout(pixels, "pixels")
    if ext in MRC_SUFFIXES:
        if pixels.ndim == 3 and pixels.shape[2] != 1:
            raise ValueError(f"pixels: an MRC file holds one channel, got {pixels.shape[2]} channels for {path}; "
                             "write colour or multi-channel images to .tif")
        check_writable(path)
        return write_mrc(path, _mrc_data(pixels.reshape(pixels.shape[:2]), dtype, path), voxel_grid)
    data = from_unit(pixels, dtype)
    ext = check_image_format(path, data.shape[2] if data.ndim == 3 else 1, data.dtype)
    check_writable(path)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    with atomic_path(path) as tmp:
        if ext in _TIFF:
            import tifffile

            rgb = data.ndim == 3 and data.shape[2] in (3, 4)
            # the axes go into the file, so a multi-channel image reads back as channels, not as a stack
            tifffile.imwrite(tmp, data, photometric="rgb" if rgb else "minisblack",
                             metadata=None if rgb else {"axes": "YXC" if data.ndim == 3 else "YX"})
        elif ext == ".npy":
            np.save(tmp, data)  # tmp ends in .npy, so numpy writes exactly there
        else:
            from PIL import Image

            Image.fromarray(data).save(tmp)  # check_image_format: a mode this format stores
    return path


def write_stack(path, stack, dtype, axes, *, voxel_grid=None):
    """Write an (N, H, W, C) float stack in [0, 1] to `path` (.tif/.tiff with its axes in the metadata, .npy, or
    MRC for one channel: a (Z, Y, X) volume with `voxel_grid`'s voxel size and origin) laid out as `axes`, in
    `dtype`; atomically."""
    from .axes import from_stack

    ext = _extension(path, "path")
    if ext in MRC_SUFFIXES:
        stack = np.asarray(stack)
        if stack.ndim != 4 or stack.shape[3] != 1:
            raise ValueError(f"pixels: an MRC file holds one channel, got a stack of shape {stack.shape} ({axes}) "
                             f"for {path}; write multi-channel stacks to .tif")
        volume = stack[..., 0] if set(axes) & set("ZT") else stack[0, ..., 0]
        return write_mrc(path, _mrc_data(volume, dtype, path), voxel_grid)
    if ext not in _TIFF + (".npy",):
        raise ValueError(f"path: {path}: a stack ({axes}) is written to .tif/.tiff, .npy or MRC "
                         f"({', '.join(MRC_SUFFIXES)}), not {ext}")
    data = from_stack(from_unit(stack, dtype), axes)
    check_writable(path)
    with atomic_path(path) as tmp:
        if ext == ".npy":
            np.save(tmp, data)
        else:
            import tifffile

            tifffile.imwrite(tmp, data, photometric="minisblack", metadata={"axes": axes})
    return path
