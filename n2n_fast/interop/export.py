"""n2n_fast.export: a trained U-Net (2-D or 3-D) as an ONNX model or a bioimage.io package, for Fiji/deepImageJ,
ilastik, napari, onnxruntime and other runtimes that do not run Python checkpoints.

The ONNX model is built in n2n_fast/interop/onnx_model.py, the bioimage.io package in n2n_fast/interop/bioimageio.py.
"""
import copy
import os
from pathlib import Path

import torch

from ..atomic_file import atomic_path, check_writable
from ..extras import require
from .onnx_model import ONNX_MODULES, write_onnx
from ..unet import UNet

FORMATS = {"onnx": ".onnx", "bioimageio": ".zip"}  # format -> the file suffix it writes
PACKAGE_OPTIONS = ("name", "authors", "license", "input_dtype", "test_image")  # bioimageio.write_package's


def resolve(model_or_checkpoint, name="model_or_checkpoint"):
    """(a float32 CPU copy of the U-Net in eval mode, the checkpoint dict or None) from a UNet or a checkpoint
    path."""
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        from ..checkpoint import load_checkpoint

        return load_checkpoint(model_or_checkpoint, name)
    if isinstance(model_or_checkpoint, UNet):
        return copy.deepcopy(model_or_checkpoint).to("cpu", torch.float32).eval(), None
    raise TypeError(f"{name}: expected an n2n_fast.UNet or the path of an n2n_fast checkpoint, got "
                    f"{type(model_or_checkpoint).__name__}")


def check_destination(path, format, overwrite):
    """(Path, format) after checking them before any work starts: a known format (None: from the suffix), the
    suffix that format writes, an existing parent folder, and no existing file unless `overwrite`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if format is None:
        format = next((f for f, suffix in FORMATS.items() if path.suffix.lower() == suffix), None)
        if format is None:
            raise ValueError(f"format: not given and not implied by the suffix of {str(path)!r}; accepted: "
                             + ", ".join(f"{f!r} ({suffix})" for f, suffix in FORMATS.items()))
    if format not in FORMATS:
        raise ValueError(f"format: unknown format {format!r}; accepted: {', '.join(map(repr, FORMATS))}")
    if path.suffix.lower() != FORMATS[format]:
        raise ValueError(f"path: a {format} export is written to a {FORMATS[format]} file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path: {str(path)!r} is a folder; give the file to write")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__} {overwrite!r}")
    if path.exists() and not overwrite:
        raise ValueError(f"path: {str(path)!r} exists; pass overwrite=True (--overwrite) to replace it")
    return check_writable(path), format


def export(model_or_checkpoint, path, format=None, *, overwrite=False, **package):
    """Write a trained U-Net to `path` in `format`, for runtimes outside n2n_fast; returns the Path written.

    model_or_checkpoint: an n2n_fast.UNet (dims=2 or 3), or the path of a checkpoint written by `train` (its
      training record then fills the bioimage.io model card).
    format: "onnx" (a .onnx file: input "input" (B, C, H, W), or (B, C, D, H, W) for a 3-D net, float32 in the
      network's data units ([0, 1] unless it carries a normalisation map) -> output "output", any batch and sizes)
      or "bioimageio" (a .zip model package: rdf.yaml, ONNX and state-dict weights, test tensors, model card;
      validated with bioimageio.spec before it is written); None: from the suffix of `path`.
    overwrite: replace an existing file at `path` (otherwise that is an error).
    package: options of the bioimage.io package (see n2n_fast.interop.bioimageio.write_package): name, authors, license,
      input_dtype, test_image (an image, or a volume (D, H, W[, C]) for a 3-D net).
    Needs the [export] extra: pip install 'n2n_fast[export]'."""
    path, format = check_destination(path, format, overwrite)
    if format == "onnx" and package:
        raise TypeError(f"export: {', '.join(sorted(package))} only apply to format='bioimageio'")
    unknown = sorted(set(package) - set(PACKAGE_OPTIONS))
    if unknown:
        raise TypeError(f"export: unknown option(s) {', '.join(unknown)}; the bioimage.io package takes "
                        f"{', '.join(PACKAGE_OPTIONS)}")
    net, state = resolve(model_or_checkpoint)
    if format == "onnx":
        require("export", "export(format='onnx')", *ONNX_MODULES)
        with atomic_path(path) as temporary:
            write_onnx(net, temporary)
        return path
    from .bioimageio import write_package

    with atomic_path(path) as temporary:
        write_package(net, state, temporary, **package)
    return path
