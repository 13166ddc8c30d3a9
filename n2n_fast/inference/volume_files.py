"""Volume files denoised by a 3-D network from disk to disk, a slab of z planes at a time (docs/volumes.md §6).

Neither the input nor the output is ever held whole: the input is opened as a slab source (volume_sources.py:
.npy and TIFF memory maps, TIFF pages, MRC memory maps), the output created up front under a temporary name as a
slab sink (volume_sinks.py), and the tiled 3-D pass (volume.py denoise_planes) reads the planes each row of tiles
needs and writes each finished plane once. Memory is the plan's (volume_plan.py: tile batch + slab), not the
volume's. The result equals volume.denoise_volume on the same data and plan bitwise: the same pass over the same
planes, only the source and sink differ.
"""
import numpy as np

from .dims import denoise_mode

_PLAN_OPTIONS = ("tile", "overlap", "memory_budget", "batch_size", "blend", "device")  # volume.volume_plan's


def kept_dtype(dtype):
    """The dtype an output volume is written in: the input's for 8/16-bit integers, else float32."""
    return np.dtype(dtype) if np.dtype(dtype) in (np.uint8, np.uint16) else np.dtype(np.float32)


def check_stream(model, source, name, **options):
    """The plan (volume.volume_plan) of `source` for these options, after the checks that need no voxel: a volume
    (dims.denoise_mode), the model's channels, integers without a value_range. Raises before any output exists."""
    from ..value_range import check_value_range, refuse_integers
    from .volume import volume_plan

    denoise_mode(model, source.axes, source.file_shape, name)
    channels = getattr(model, "in_channels", source.shape[3])
    if channels != source.shape[3]:
        raise ValueError(f"{name}: has {source.shape[3]} channels, the model takes {channels}")
    value_range = check_value_range(options.get("value_range"))
    if source.dtype.kind in "ui":
        refuse_integers(value_range, source.dtype, name)
    return volume_plan(model, source, **{k: v for k, v in options.items() if k in _PLAN_OPTIONS})


def denoise_volume_file(model, source_path, target_path, *, axes=None, log=None, **options):
    """Denoise the volume file `source_path` into `target_path` (.npy, TIFF or MRC, any of them from any), in the
    input's layout and kept dtype (kept_dtype), with the input's voxel size and origin (MRC headers); returns the
    VolumeDenoisePlan it ran. options: as volume.denoise_planes takes them."""
    from .volume import denoise_planes
    from .volume_sinks import check_target, volume_target
    from .volume_sources import open_volume

    source = open_volume(source_path, axes)
    name = f"input {source_path}"
    plan = check_stream(model, source, name, **options)
    dtype = kept_dtype(source.dtype)
    check_target(str(target_path), source.file_shape, source.axes)
    if log is not None:
        log(f"{source_path}: {plan.describe()}")
    with volume_target(target_path, source.file_shape, source.axes, dtype, source.voxel_grid) as sink:
        denoise_planes(model, source, sink, **options)
    return plan


def denoise_volume_files(model, jobs, *, axes=None, log=print, **options):
    """[(input, output)]: each (source, target) volume file streamed through denoise_volume_file. A file that
    cannot be read or is refused raises an error naming it (before its output is created); outputs written before
    it stay."""
    written = []
    for source, target in jobs:
        denoise_volume_file(model, source, target, axes=axes, log=log, **options)
        written.append((source, target))
        log(f"{source} -> {target} (streamed in slabs of planes)")
    return written
