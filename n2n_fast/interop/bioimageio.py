"""bioimage.io model packages (model format 0.5) of an n2n_fast U-Net, 2-D or 3-D, for Fiji/deepImageJ, ilastik
and napari.

The package is a zip with, at its root: rdf.yaml (the description), weights.onnx (n2n_fast.export's ONNX model,
dynamic batch and spatial sizes) with weights.pt (the state dict; architecture n2n_fast.unet.UNet) as its parent,
test_input.npy / test_output.npy, cover.png and README.md (the model card, from the checkpoint's training record).
Before the zip is written, the description is validated by bioimageio.spec on the local files (format, file
hashes; nothing is downloaded) and the test input is run through onnxruntime against the test output: the validator
checks the description, not the model.

Tensors are (batch, channel, y, x), or (batch, channel, z, y, x) for a 3-D network; the tile sizes and halo of
each axis come from n2n_fast/interop/package_tensors.py. The input keeps the data's dtype (uint8/uint16 counts, or
float32 in [0, 1]) and declares the scaling into the network's [0, 1] units as preprocessing; the output is float32
scaled back into the data's units, so Fiji shows it beside the input on the same scale.
"""
import hashlib
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..conventions import __version__
from .onnx_model import ONNX_ATOL, ONNX_RTOL, run_onnx, write_onnx
from ..extras import require
from ..io import from_unit
from .package_tensors import PEAKS, declared_dtype, make_test_input, space_axes

_CITE = {"text": "Lehtinen et al. 2018, Noise2Noise: Learning Image Restoration without Clean Data, ICML",
         "doi": "10.48550/arXiv.1803.04189"}
_FILES = {"rdf": "rdf.yaml", "onnx": "weights.onnx", "state": "weights.pt", "test_in": "test_input.npy",
          "test_out": "test_output.npy", "sample_in": "sample_input.tif", "sample_out": "sample_output.tif",
          "cover": "cover.png", "card": "README.md"}


def _test_tensors(net, test_input, dtype, onnx_path):
    """The test output (float32, data units) of the eager network under the declared pre/postprocessing, after
    checking that onnxruntime's output agrees within float32 tolerance."""
    peak = np.float32(PEAKS[dtype])
    unit = test_input.astype(np.float32) * (np.float32(1) / peak)  # ensure_dtype float32, then scale_linear
    with torch.no_grad():
        output = net(torch.from_numpy(unit)).numpy() * peak
    from_onnx = run_onnx(onnx_path, unit) * peak
    if not np.all(np.abs(from_onnx - output) <= (ONNX_ATOL * peak + ONNX_RTOL * np.abs(output))):
        raise RuntimeError(f"export: onnxruntime's output on the test input differs from PyTorch's by up to "
                           f"{np.abs(from_onnx - output).max():.3g}")
    return output.astype(np.float32)


def _cover(test_input, test_output, peak):
    """A 2:1 image for the model zoo: the test input beside the output (a volume's middle z slice), as 8-bit grey
    (first channel) or RGB."""
    from PIL import Image

    def to8(array):
        if array.ndim == 5:
            array = array[:, :, array.shape[2] // 2]
        picture = array[0, :3] if array.shape[1] >= 3 else array[0, :1]
        return from_unit(picture / peak, np.uint8).transpose(1, 2, 0)

    both = np.concatenate([to8(test_input.astype(np.float32)), to8(test_output)], axis=1)
    height = both.shape[0]
    image = Image.fromarray(both[..., 0] if both.shape[2] == 1 else both)
    return image.resize((2 * height, height)) if both.shape[1] != 2 * height else image


def _training_rows(state):
    """Model-card table rows (label, value) from a checkpoint's training record."""
    if state is None:
        return [("training record", "none: exported from a model object, not from a checkpoint")]
    args, data = state["train_args"], state["train_args"].get("data") or {}
    crop, items = args.get("crop"), ("volume(s)" if args.get("dims") == 3 else "image(s)")
    crop = "x".join(map(str, crop)) if isinstance(crop, (list, tuple)) else f"{crop}²"
    mode = {"noisy": "Noise2Noise (noisy targets)", "clean": "Noise2Clean (clean targets)",
            "pairs": "Noise2Noise on real noisy pairs", "neighbor": "Neighbor2Neighbor (single noisy images)"}
    rows = [("method", mode.get(args.get("mode"), str(args.get("mode")))),
            ("noise model (training)", str(args.get("noise"))),
            ("loss", str(args.get("loss"))),
            ("steps", f"{state['step']} of {args.get('steps')}, batch {args.get('batch_size')} per rank x "
                      f"{args.get('world_size')} rank(s), {crop} crops, lr {args.get('lr')}"),
            ("training data", f"{data.get('count')} {items}, dtype {', '.join(data.get('dtypes') or [])}, "
                              f"shapes {(data.get('shapes') or [])[:4]}{' ...' if data.get('count', 0) > 4 else ''}"),
            ("seed, precision", f"{args.get('seed')}, {args.get('precision')}")]
    if state.get("best_psnr") is not None:
        rows.append(("best validation PSNR", f"{state['best_psnr']:.2f} dB"))
    return rows


def _sizes_text(net):
    """The model card's sentence on sizes, tiles and halo (from package_tensors.space_axes)."""
    axes = space_axes(net)
    y = axes[-1]
    if net.dims == 2:
        return (f"Any height and width work (the network mirror-pads to a multiple of {y.step} internally); tiles of\n"
                f"  {y.min} + k·{y.step} pixels with a halo of {y.halo} per side avoid the padding cost and tile "
                "seams.")
    z = axes[0]
    return (f"Any depth, height and width work (the network mirror-pads z to a multiple of {z.step} and y, x to a\n"
            f"  multiple of {y.step} internally); tiles of {z.min} + k·{z.step} slices by {y.min} + k·{y.step} "
            f"pixels, with a halo\n  of {z.halo} slice(s) and {y.halo} pixels per side, avoid the padding cost and "
            "tile seams.")


def _model_card(name, net, state, dtype):
    rows = "\n".join(f"| {label} | {value} |" for label, value in _training_rows(state))
    thing = "image" if net.dims == 2 else "volume"
    layout = "(batch, channel, y, x)" if net.dims == 2 else "(batch, channel, z, y, x)"
    sizes = "height and width" if net.dims == 2 else "depth, height and width"
    return f"""# {name}

A Noise2Noise denoiser: the U-Net of Lehtinen et al. (ICML 2018, Appendix Table 2; {net.features}-channel encoder)
trained and exported with n2n_fast {__version__}. It maps a noisy {net.in_channels}-channel {net.dims}-D {thing} to an
estimate of the clean {thing} of the same size.

## Training

| | |
| --- | --- |
{rows}

## Input and output

- Input `input`: {layout}, dtype {dtype}; preprocessing scales it by 1/{PEAKS[dtype]:g} into the
  network's [0, 1] units.
- Output `output`: float32, same shape, scaled back by {PEAKS[dtype]:g} into the input's units (not clipped).
- {_sizes_text(net)}
- Weights: ONNX (dynamic batch, {sizes}) and the PyTorch state dict of `n2n_fast.unet.UNet`.

## Validation

Checked when the package was written: bioimage.io format validation (bioimageio.spec, offline), and the test
input run through onnxruntime matched the PyTorch output (test_output.npy) within float32 tolerance
(relative {ONNX_RTOL:g}, absolute {ONNX_ATOL:g} in [0, 1] units).

## Limitations

The network removes the kind and level of noise it was trained on (see the noise model above). Other noise, other
levels or other image content can give artefacts; compare with the raw data before quantitative analysis.
"""


def _axes(net, output):
    """The axes of the input (sizes min + k·step) or of the output (the input's sizes, with the halo)."""
    channels = net.out_channels if output else net.in_channels
    names = ["red", "green", "blue"] if channels == 3 else [f"channel{i}" for i in range(channels)]
    if output:
        space = [{"type": "space", "id": axis.id, "size": {"tensor_id": "input", "axis_id": axis.id},
                  "halo": axis.halo} for axis in space_axes(net)]
    else:
        space = [{"type": "space", "id": axis.id, "size": {"min": axis.min, "step": axis.step}}
                 for axis in space_axes(net)]
    return [{"type": "batch"}, {"type": "channel", "channel_names": names}] + space


def _file(folder, key):
    """A file reference of the description: its name in the package and its SHA-256 (checked by the validator)."""
    return {"source": _FILES[key], "sha256": hashlib.sha256((folder / _FILES[key]).read_bytes()).hexdigest()}


def _description(folder, net, state, *, name, authors, license, dtype, opset):
    """The rdf.yaml content (a plain dict, bioimage.io model format 0.5) for the files in `folder`."""
    from bioimageio.spec.model.v0_5 import ModelDescr

    peak, args = PEAKS[dtype], (state or {}).get("train_args", {})
    # Format 0.5 reads `data` as the stored tensor's type and, unless preprocessing ends with an explicit
    # ensure_dtype, appends a cast back to that type: the model would get uint8. Hence float32 at both ends.
    to_float = {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}
    scale_in, scale_out = [to_float], [to_float]
    if peak != 1.0:
        scale_in += [{"id": "scale_linear", "kwargs": {"gain": 1.0 / peak, "offset": 0.0}}, to_float]
        scale_out.insert(0, {"id": "scale_linear", "kwargs": {"gain": peak, "offset": 0.0}})
    state_dict = {**_file(folder, "state"),
                  "architecture": {"callable": "UNet", "import_from": "n2n_fast.unet", "kwargs": net.arguments()},
                  "pytorch_version": torch.__version__.split("+")[0]}
    onnx = {**_file(folder, "onnx"), "opset_version": opset, "parent": "pytorch_state_dict"}
    trained_on = f" for {args['noise']} noise with an {args['loss']} loss" if args else ""
    return {
        "format_version": ModelDescr.implemented_format_version, "type": "model", "name": name,
        "description": f"Noise2Noise U-Net denoiser{trained_on} (n2n_fast {__version__}).",
        "authors": [author if isinstance(author, dict) else {"name": author} for author in authors],
        "cite": [_CITE], "license": license,
        "documentation": _file(folder, "card"), "covers": [_file(folder, "cover")],
        "tags": ["denoising", "noise2noise", "unet", f"{net.dims}d", "n2n_fast", "pytorch", "onnx"],
        "inputs": [{"id": "input", "axes": _axes(net, False), "data": {"type": dtype},
                    "test_tensor": _file(folder, "test_in"), "sample_tensor": _file(folder, "sample_in"),
                    "preprocessing": scale_in}],
        "outputs": [{"id": "output", "axes": _axes(net, True), "data": {"type": "float32"},
                     "test_tensor": _file(folder, "test_out"), "sample_tensor": _file(folder, "sample_out"),
                     "postprocessing": scale_out}],
        "weights": {"pytorch_state_dict": state_dict, "onnx": onnx},
        "config": {"n2n_fast": {"version": __version__,
                                **({"train_args": args, "step": state["step"]} if state else {})}},
    }


def validate(source):
    """Validate a bioimage.io description offline with bioimageio.spec: `source` is an rdf.yaml path or a package
    zip. Returns the loaded description; raises ValueError with the validator's report when it fails."""
    (spec,) = require("export", "validating a bioimage.io package", "bioimageio.spec")
    description = spec.load_description(Path(source), perform_io_checks=True)
    summary = description.validation_summary
    if summary.status == "failed" or not isinstance(description, spec.ModelDescr):
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in getattr(summary.details[-1], "errors", []))
        raise ValueError(f"bioimage.io validation failed for {source}: {errors or summary.format()}")
    return description


def _check_card(name, authors, license):
    """The model card's fields, checked before the ONNX export runs (the validator would refuse them after it)."""
    for field, value in (("name", name), ("license", license)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise TypeError(f"{field}: expected a non-empty string, got {value!r}")
    if authors is not None and (isinstance(authors, (str, dict)) or not isinstance(authors, (list, tuple))
                                or not all(isinstance(a, (str, dict)) for a in authors)):
        raise TypeError(f"authors: expected a list of names or of dicts with a 'name', got {authors!r}")


def write_package(net, state, path, *, name=None, authors=None, license="CC-BY-4.0", input_dtype=None,
                  test_image=None):
    """Write the bioimage.io package zip of `net` (a CPU UNet; `state` its checkpoint dict or None) to `path`.

    name: model name (default from the channel count); authors: list of names, or dicts that may add
      "github_user", "affiliation", "orcid" (default: the current user's login name); license: SPDX id of the
      weights' license; input_dtype: "uint8", "uint16" or "float32" (default: the training data's dtype);
      test_image: numpy (H, W) or (H, W, C) of that dtype, at least 96² (default: a synthetic noisy pattern); for
        a 3-D net (D, H, W) or (D, H, W, C), at least 3·2**z_pools x 96 x 96 (default: a noisy phantom of blobs);
        cropped to a declared size (package_tensors.space_axes).
    """
    _check_card(name, authors, license)
    require("export", "export(format='bioimageio')", "onnx", "onnxscript", "onnxruntime", "bioimageio.spec")
    dtype = declared_dtype(input_dtype, state)
    test_input = make_test_input(test_image, net, dtype)
    name = name or f"n2n_fast Noise2Noise {'RGB' if net.in_channels == 3 else f'{net.in_channels}-channel'} denoiser"
    authors = list(authors) if authors else [_user()]
    with tempfile.TemporaryDirectory(prefix="n2n_fast_bioimageio_") as scratch:
        folder = Path(scratch)
        opset = write_onnx(net, folder / _FILES["onnx"])
        torch.save(net.state_dict(), folder / _FILES["state"])
        test_output = _test_tensors(net, test_input, dtype, folder / _FILES["onnx"])
        np.save(folder / _FILES["test_in"], test_input)
        np.save(folder / _FILES["test_out"], test_output)
        _write_samples(folder, test_input, test_output)
        _cover(test_input, test_output, PEAKS[dtype]).save(folder / _FILES["cover"])
        (folder / _FILES["card"]).write_text(_model_card(name, net, state, dtype))
        content = _description(folder, net, state, name=name, authors=authors, license=license, dtype=dtype,
                               opset=opset)
        from bioimageio.spec import save_bioimageio_yaml_only

        save_bioimageio_yaml_only(content, folder / _FILES["rdf"])
        validate(folder / _FILES["rdf"])
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in _FILES.values():
                archive.write(folder / file, file)
    return path


def _write_samples(folder, test_input, test_output):
    """The test tensors as TIFF images for people browsing the package: (y, x) or (y, x, channel), a volume
    (z, y, x) or (z, y, x, channel), one page per slice."""
    import tifffile

    for key, tensor in (("sample_in", test_input), ("sample_out", test_output)):
        image = np.moveaxis(tensor[0], 0, -1)
        rgb = image.shape[-1] == 3
        tifffile.imwrite(folder / _FILES[key], image if rgb else tensor[0].squeeze(0),
                         photometric="rgb" if rgb else "minisblack")


def _user():
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "n2n_fast user"
