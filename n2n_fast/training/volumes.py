"""Training data for train(..., dims=3): whole volumes and their 3-D crops (docs/volumes.md §4).

A source whose axes hold Z (ZYX, ZYXC, CZYX, ...; MRC files are ZYX) is one volume (D, H, W, C), not a stack of
2-D images; a source without Z is refused. Crops: an int c is a c x c x c cube, a tuple (depth, height, width)
states each extent (height == width: quarter turns in the YX plane must keep the crop's shape).

Random layout (n2n_fast/training/data.py, where every purpose is listed): SAMPLE gives the volume, the crop's
row and column and the YX bits (bit 0 x flip, bits 1-2 quarter turns in YX, which with the x flip give y flips)
exactly as for images; DEPTH (3) adds the first slice and the z flip. So every axis is flipped, and quarter turns
stay in the YX plane (z voxels are often longer than y-x ones, docs/volumes.md §4).
Training cuts the crops on the device (n2n_fast/crops.py, DeviceVolumeCrops: one Triton launch per step where
Triton serves); draw_volume_crops and VolumeStore.crops here are the host path it equals bit for bit, taken where
volumes are not resident on the device, and its oracle in the tests.
"""
import os
from pathlib import Path

import numpy as np
import torch

from ..axes import check_axes, to_stack
from ..io import SUPPORTED as IMAGE_SUFFIXES
from .data import DATA_KEY, SAMPLE, _as_image, _scale, scaled_and_turned

DEPTH = 3


def check_crop(crop):
    """(depth, height, width) from an int c (a c x c x c cube) or a 3-tuple, or an error naming crop."""
    extents = (crop,) * 3 if isinstance(crop, int) and not isinstance(crop, bool) else crop
    if (not isinstance(extents, (tuple, list)) or len(extents) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in extents)):
        raise ValueError(f"crop: with dims=3 expected an int c (a c x c x c cube) or (depth, height, width) of "
                         f"positive ints, got {crop!r}")
    _, height, width = extents
    if height != width or height < 2:
        raise ValueError(f"crop: height and width must be equal and >= 2 (quarter turns in the YX plane keep the "
                         f"crop's shape), got (depth, height, width) = {tuple(extents)}")
    return tuple(extents)


def _volume(array, axes, where, value_range, any_units):
    """(D, H, W, C) array from `array` laid out as `axes`, checked like a 2-D image (n2n_fast/training/data.py)."""
    if "Z" not in axes:
        raise ValueError(f"{where}: dims=3 trains on volumes, whose axes hold Z, but its axes are {axes!r} (shape "
                         f"{tuple(array.shape)}); pass axes= with Z (e.g. 'ZYX', 'ZYXC'), or train with dims=2")
    stack = np.array(to_stack(array, axes))  # resident: the host path cuts crops from memory
    depth = stack.shape[0]
    flat = _as_image(stack.reshape(depth * stack.shape[1], *stack.shape[2:]), where, value_range, any_units)
    return flat.reshape(stack.shape)


def _read_volume(path, where, axes, value_range, any_units):
    from ..io import read_stack, read_voxel_grid

    try:
        stack, _, read_axes = read_stack(str(path), axes, keep_integers=True)
        grid = read_voxel_grid(str(path))
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise ValueError(f"{where}: {exc}") from exc
    where = f"{where} ({path})"
    if "Z" not in read_axes:
        raise ValueError(f"{where}: dims=3 trains on volumes, whose axes hold Z, but the file reads as "
                         f"{read_axes!r}; pass axes= with Z (e.g. 'ZYX'), or train with dims=2")
    return _volume(np.asarray(stack), "ZYXC", where, value_range, any_units), grid, where


def load_volumes(source, name, axes=None, value_range=None, any_units=False):
    """([volumes (D, H, W, C)], [VoxelGrid or None], [where]) from a volume file, a folder of them, an array with
    Z in `axes`, or a list of those."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{name}: folder {str(source)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        source = files
    items = source if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ValueError(f"{name}: empty list of volumes")
    out = ([], [], [])
    for i, item in enumerate(items):
        where = f"{name}[{i}]" if isinstance(source, (list, tuple)) else name
        if isinstance(item, (str, os.PathLike)):
            volume, grid, where = _read_volume(item, where, axes, value_range, any_units)
        elif isinstance(item, np.ndarray):
            if axes is None:
                raise ValueError(f"{where}: an array of shape {item.shape} with dims=3 needs axes= saying where Z "
                                 "is (e.g. 'ZYX', 'ZYXC', 'CZYX')")
            volume, grid = _volume(item, check_axes(axes, item.shape), where, value_range, any_units), None
        else:
            raise TypeError(f"{where}: expected a volume path or a numpy array, got {type(item).__name__}")
        for collected, value in zip(out, (volume, grid, where)):
            collected.append(value)
    return out


def check_volumes(volumes, wheres, crop):
    """One channel count, and every volume at least the crop (depth, height, width)."""
    channels = {v.shape[3] for v in volumes}
    if len(channels) != 1:
        raise ValueError(f"{wheres[0]}: volumes must all have the same number of channels, got {sorted(channels)}")
    for volume, where in zip(volumes, wheres):
        if any(size < extent for size, extent in zip(volume.shape[:3], crop)):
            raise ValueError(f"{where}: volume of {'x'.join(map(str, volume.shape[:3]))} (depth x height x width) "
                             f"is smaller than the crop {'x'.join(map(str, crop))}; use a smaller crop= or larger "
                             "volumes")


def anisotropy(grids):
    """z / y-x voxel size from the first volume whose file states it, else 1.0 (isotropic)."""
    for grid in grids:
        if grid is not None and grid.anisotropy is not None:
            return float(grid.anisotropy)
    return 1.0


class VolumeStore:
    """Volumes as compact (C, D, H, W) tensors on `device`; `crops` is the host path (each crop a slice of a resident
    tensor), which DeviceVolumeCrops equals. The interface of data.ImageStore, one axis more."""

    def __init__(self, volumes, device):
        self.device = torch.device(device)
        self.sizes = [tuple(v.shape[:3]) for v in volumes]
        self.channels = volumes[0].shape[3]
        self.scales = [_scale(v) for v in volumes]
        # uint16 has no arithmetic on every device in torch; int32 keeps it exact
        self.images = [torch.from_numpy(v.astype(np.int32) if v.dtype == np.uint16 else v)
                       .permute(3, 0, 1, 2).contiguous().to(self.device) for v in volumes]

    def __len__(self):
        return len(self.images)

    def crops(self, picks, crop):
        """(B, C, depth, height, width) float32 for picks [(volume, z, row, col, bits)]: bits 0-2 the YX bits of
        2-D crops, bit 3 the z flip."""
        depth, height, width = crop
        out = []
        for volume, z, row, col, bits in picks:
            patch = scaled_and_turned(self.images[volume][:, z:z + depth, row:row + height, col:col + width].float(),
                                      self.scales[volume], bits)
            if bits & 8:
                patch = patch.flip(-3)
            out.append(patch)
        return torch.stack(out)

    def full(self, volume):
        """Volume `volume` as a (1, C, D, H, W) float32 tensor on the device."""
        return self.crops([(volume, 0, 0, 0, 0)], self.sizes[volume])


def draw_volume_crops(seed, step, index, count, sizes, crop):
    """[(volume, z, row, col, bits)] for global samples index .. index + count - 1 at `step` (host ints)."""
    from ..philox import host_words

    depth, height, width = crop
    sample = host_words(seed ^ DATA_KEY, index, count, 0, step, SAMPLE)
    z_words = host_words(seed ^ DATA_KEY, index, count, 0, step, DEPTH)
    picks = []
    for w_volume, w_row, w_col, bits, w_z, w_flip in zip(*sample, *z_words[:2]):
        volume = w_volume % len(sizes)
        d, h, w = sizes[volume]
        picks.append((volume, w_z % (d - depth + 1), w_row % (h - height + 1), w_col % (w - width + 1),
                      (bits & 7) | ((w_flip & 1) << 3)))
    return picks


def _check_pair(k, first, mine):
    """Realisation k against realisation 0: the same volume shapes and voxel sizes (even/odd half tomograms)."""
    (volumes0, grids0, _), (volumes, grids, wheres) = first, mine
    shapes0, shapes = [v.shape for v in volumes0], [v.shape for v in volumes]
    if shapes != shapes0:
        raise ValueError(f"pairs[{k}] ({wheres[0]}): volumes of shapes {shapes[:4]} do not match pairs[0]'s "
                         f"{shapes0[:4]}: realisations must be aligned volumes of the same scenes")
    for a, b, where in zip(grids0, grids, wheres):
        sizes = [None if g is None else tuple(g.voxel_size) for g in (a, b)]
        if sizes[0] != sizes[1]:
            raise ValueError(f"{where}: voxel size {sizes[1]} differs from pairs[0]'s {sizes[0]} (z, y, x, Å): "
                             "the halves of a pair must be sampled alike")
    if all(np.array_equal(a, b) for a, b in zip(volumes, volumes0)):
        raise ValueError(f"pairs[{k}]: the same volumes as pairs[0]; Noise2Noise needs two independent noisy "
                         "realisations of each scene (identical pairs teach the identity map)")


def volume_stores(data, pairs, crop, device, axes=None, value_range=None, any_units=False):
    """(stores, realisations, anisotropy): data.training_stores for volumes; anisotropy (z / y-x voxel size) from
    the MRC headers when known, else 1.0."""
    if pairs is not None:
        if not isinstance(pairs, (tuple, list)) or len(pairs) < 2:
            raise ValueError(f"pairs: expected a tuple of >= 2 aligned sources, got {type(pairs).__name__}")
        loaded = [load_volumes(source, f"pairs[{k}]", axes, value_range, any_units) for k, source in enumerate(pairs)]
        for k, mine in enumerate(loaded[1:], 1):
            _check_pair(k, loaded[0], mine)
    else:
        loaded = [load_volumes(data, "data", axes, value_range, any_units)]
    volumes, grids, wheres = loaded[0]
    check_volumes(volumes, wheres, crop)
    realisations = [volumes for volumes, _, _ in loaded]
    return [VolumeStore(v, device) for v in realisations], realisations, anisotropy(grids)


def training_volumes(data, pairs, crop, device, axes=None, value_range=None, any_units=False):
    """(stores, realisations, crop, z_pools): what train(dims=3) trains on, from its arguments: the crop checked
    as (depth, height, width), the stores (volume_stores) and the z-pooling levels the crop's depth and the voxel
    sizes' anisotropy allow (docs/volumes.md §1). train() and benchmarks/bench_train3d.py both build a 3-D run
    through it and step.make_run."""
    from ..unet import z_pool_levels

    crop = check_crop(crop)
    stores, realisations, ratio = volume_stores(data, pairs, crop, device, axes, value_range, any_units)
    return stores, realisations, crop, z_pool_levels(crop[0], ratio)


def validation_volumes(val, noise, channels, device, seed, axes=None, value_range=None, any_units=False):
    """data.validation_pairs for volumes: [(noisy, clean)] (1, C, D, H, W) float32 on `device`."""
    if val is None:
        return []
    from .data import validation_set

    val_noisy, val_clean = val if isinstance(val, tuple) and len(val) == 2 else (None, val)
    clean, _, _ = load_volumes(val_clean, "val", axes, value_range, any_units)
    if clean[0].shape[3] != channels:
        raise ValueError(f"val: volumes have {clean[0].shape[3]} channels, the training data {channels}")
    clean_store = VolumeStore(clean, device)
    noisy_store = None if val_noisy is None else VolumeStore(load_volumes(val_noisy, "val[0]", axes, value_range,
                                                                          any_units)[0], device)
    return validation_set(clean_store, noisy_store, noise, seed)
