"""Denoising image files (docs/usage.md): one file, a folder of them or a list, into files of the same kind and
dtype; Zarr/OME-Zarr into Zarr, streamed. `n2n-fast denoise` is this function plus argparse.

Every output is checked before any work starts (never an input, a known format, a writable folder, and not an
existing file unless overwrite=True). A file that cannot be read or is refused (e.g. 0-255 floats without a
value_range) is reported and skipped, the others go on, and a FilesNotDenoised error at the end names every file
that failed with its full error. Same-shape images that each fit one tile run together through the network (a
folder of small images is not run at batch 1); Z/T stacks are denoised slice by slice and written back as stacks.
"""
import inspect
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..io import SUPPORTED, read_stack, write_image, write_stack

SUMMARY_FILES = 5  # the error at the end lists this many failed files with their errors, then counts the rest


class FilesNotDenoised(ValueError):
    """Some files could not be denoised (the others were): .failures is [(path, exception)], .written is
    [(input path, output path)] of those that were."""

    def __init__(self, message, failures, written):
        super().__init__(message)
        self.failures, self.written = failures, written


def _jobs(source, target):
    """[(input path, output path)]: one file into a file or a folder; a folder's supported images or a list of
    files into a folder (created)."""
    target = Path(target)
    if isinstance(source, (list, tuple)):
        inputs = [Path(p) for p in source]
        if not inputs:
            raise ValueError("source: an empty list of files")
        missing = [str(p) for p in inputs if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"source: no such file {missing[0]}"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        names = [p.name for p in inputs]
        if len(set(names)) != len(names):
            raise ValueError("source: files of the same name would write the same output in the folder target")
    elif Path(source).is_dir():
        source = Path(source)
        inputs = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED)
        if not inputs:
            raise ValueError(f"source: no images ({', '.join(SUPPORTED)}) in folder {source}")
    else:
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"source: no such file or folder {source}")
        return [(source, target / source.name if target.is_dir() else target)]
    if target.exists() and not target.is_dir():
        raise ValueError(f"target: several images go into a folder; got the file {target}")
    target.mkdir(parents=True, exist_ok=True)
    return [(p, target / p.name) for p in inputs]


def _check_outputs(jobs, overwrite):
    """Before any work: no output is its input, every output's format and folder are usable, and none exists
    unless overwrite."""
    from ..io import _extension

    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__} {overwrite!r}")
    for source, target in jobs:
        if source.resolve() == target.resolve():
            raise ValueError(f"target: {target} is the input file; denoise never overwrites its input")
        _extension(target, "target")
        if not os.access(target.parent, os.W_OK):
            raise ValueError(f"target: cannot write into the folder {target.parent}")
    existing = [str(target) for _, target in jobs if target.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(f"target: {existing[0]}{more} exists; overwrite=True replaces it")


def _check_file_range(source, stack, dtype, value_range):
    """A float file of unstated range far above [0, 1], or an integer file given a value_range, is refused by
    name (denoise itself sees [0, 1] floats for both and could not tell)."""
    from ..value_range import check_unit_max, refuse_integers

    if np.dtype(dtype).kind == "f":
        check_unit_max(stack, value_range, f"input {source}")
    else:
        refuse_integers(value_range, dtype, f"input {source}")


def _read(jobs, axes, value_range, stacks, failures, log):
    """(source, target, pixels, dtype) of each single image; Z/T stacks go to `stacks`, unreadable files to
    `failures` (reported, and the others go on)."""
    for source, target in jobs:
        try:
            stack, dtype, layout = read_stack(str(source), axes)
            _check_file_range(source, stack, dtype, value_range)
        except (ValueError, TypeError) as exc:
            failures.append((source, exc))
            log(f"{source}: skipped: {exc}", file=sys.stderr)
            continue
        if stack.shape[0] > 1:
            stacks.append((source, target, stack, dtype, layout))
            continue
        yield source, target, stack[0] if "C" in layout else stack[0, ..., 0], dtype


def _groups(images, fits_one_tile, limit):
    """Consecutive images (source, target, pixels, dtype) grouped: those of one shape that each fit one tile run
    together, up to `limit` per group."""
    group = []
    for image in images:
        if group and (image[2].shape != group[0][2].shape or len(group) >= limit or not fits_one_tile(image[2])):
            yield group
            group = []
        group.append(image)
        if not fits_one_tile(image[2]):
            yield group
            group = []
    if group:
        yield group


def _kept(dtype):
    """The dtype an output file is written in: the input's for 8/16-bit integers, else float32."""
    return dtype if dtype in (np.uint8, np.uint16) else np.float32


def _default(function, name):
    return inspect.signature(function).parameters[name].default


def _silent(*args, **kwargs):
    pass


def denoise_files(model, source, target, *, overwrite=False, axes=None, value_range=None, device=None,
                  progress=None, log=None, **options):
    """Denoise image files with `model` into files; returns [(input path, output path)] written.

    model: an nn.Module, or the path of a checkpoint written by `train` (loaded with n2n_fast.load).
    source, target: an image file (PNG, JPEG, TIFF, .npy) into a file, or into a folder (same name); a folder's
      supported images, or a list of image files, into a folder (created); Zarr/OME-Zarr into Zarr
      (n2n_fast.denoise_zarr, streamed by bands). Outputs keep the input's dtype (uint8, uint16, else float32).
    overwrite: replace existing outputs (else a FileExistsError before any work). An input is never overwritten.
    axes: the layout of the files (n2n_fast/axes.py), e.g. "ZYX" to denoise a stack slice by slice.
    value_range: of float files, as in `denoise` (results are written back in those units).
    device: where the model runs; None: CUDA when available, else the CPU.
    progress: as in `denoise`. log: called as log(text) for each plan and file written, and log(text,
      file=sys.stderr) for a file skipped; `print` fits, None is silent.
    options: tile, overlap, memory_budget, batch_size, blend, precision, backend, as in `denoise`.
    A file that cannot be read is skipped and the others go on; then FilesNotDenoised (a ValueError) names every
    file that failed."""
    from ..checkpoint import load_checkpoint
    from .denoise import denoise, denoise_plan
    from .zarr_io import denoise_zarr, is_zarr

    log = _silent if log is None else log
    if "out" in options:
        raise TypeError("denoise_files: the outputs are `target`; out= is not accepted")
    if isinstance(model, (str, os.PathLike)):
        model = load_checkpoint(model, "model")[0]
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    many = isinstance(source, (list, tuple))
    if not many and (is_zarr(source) or is_zarr(target)):
        if not (is_zarr(source) and is_zarr(target)):
            raise ValueError(f"source, target: Zarr goes to Zarr; got {source} -> {target} (name the output "
                             f"*.zarr, or convert the image first)")
        written = denoise_zarr(model, source, target, axes=axes, overwrite=overwrite, device=device,
                               progress=progress, value_range=value_range, **options)
        log(f"{source} -> {written}")
        return [(Path(source), written)]
    precision = options.pop("precision", "float32")
    backend = options.pop("backend", None)
    options["device"] = device
    jobs = _jobs(source, target)
    _check_outputs(jobs, overwrite)
    if getattr(model, "dims", 2) == 3:  # a 3-D network streams volume files in slabs of planes (volume_files.py)
        from .volume_files import denoise_volume_files

        return denoise_volume_files(model, jobs, axes=axes, log=log, **dict(
            options, precision=precision, backend=backend, value_range=value_range, progress=progress))
    fits_one_tile = lambda pixels: denoise_plan(model, pixels, **options).plan.count == 1  # noqa: E731
    run = dict(options, precision=precision, backend=backend, value_range=value_range)
    stacks, failures, written = [], [], []
    for group in _groups(_read(jobs, axes, value_range, stacks, failures, log), fits_one_tile,
                         options.get("batch_size", _default(denoise, "batch_size"))):
        # a group is one (N, C, H, W) tensor: the tiles of all its images share model calls
        stack = np.stack([pixels.reshape(pixels.shape[:2] + (-1,)) for _, _, pixels, _ in group])
        images = torch.from_numpy(stack).permute(0, 3, 1, 2)
        plan = denoise_plan(model, images if len(group) > 1 else group[0][2], **options)
        names = group[0][0] if len(group) == 1 else f"{group[0][0]} .. {group[-1][0]} ({len(group)} images)"
        log(f"{names}: {plan.describe()}")
        result = denoise(model, images, progress=progress, **run).permute(0, 2, 3, 1).numpy()
        for (source_path, target_path, pixels, dtype), denoised in zip(group, result):
            write_image(str(target_path), denoised.reshape(pixels.shape), dtype=_kept(dtype))
            written.append((source_path, target_path))
            log(f"{source_path} -> {target_path}")
    for source_path, target_path, stack, dtype, layout in stacks:
        log(f"{source_path}: a {layout} stack of {stack.shape[0]} slices")
        slices = [denoise(model, plane, **dict(run, progress=False)) for plane in stack]
        write_stack(str(target_path), np.stack(slices), _kept(dtype), layout)
        written.append((source_path, target_path))
        log(f"{source_path} -> {target_path}")
    if failures:
        listed = "; ".join(f"{path.name} ({exc})" for path, exc in failures[:SUMMARY_FILES])
        more = f"; and {len(failures) - SUMMARY_FILES} more" if len(failures) > SUMMARY_FILES else ""
        raise FilesNotDenoised(f"source: {len(failures)} of {len(jobs)} files could not be denoised: {listed}{more}",
                               failures, written)
    return written
