"""denoise() of a volume by a 3-D network (UNet dims=3): the whole volume in one call (docs/volumes.md §4).

A numpy volume laid out as `axes` (ZYX, ZYXC, CZYX, ...) goes in; the result comes back in the same layout and
dtype: integers are scaled by their peak (uint8 / 255, uint16 / 65535) and back, floats are [0, 1] unless
value_range states their units, as in 2-D. Tiling and streaming volumes larger than memory are not done yet: the
network sees the volume whole, mirror-padded to its alignment (n2n_fast/padding.py) inside UNet.forward.
"""
import contextlib
import copy

import numpy as np
import torch

from ..axes import check_axes, from_stack, infer_axes, to_stack
from ..conventions import precision_name
from ..value_range import InUnits, check_unit_max, check_value_range, refuse_integers
from .dims import denoise_mode


def _volume_axes(model, image, axes):
    """The canonical axes of a volume `image`, or the error saying what to pass (inference/dims.py)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: a 3-D network (UNet dims=3) denoises numpy volumes given with axes= (e.g. "
                        f"'ZYX'), got {type(image).__name__}")
    if axes is None:
        try:
            axes = infer_axes(image.shape, name="image")
        except ValueError:
            raise ValueError(f"image: the model is a 3-D network (UNet dims=3); say how the array of shape "
                             f"{image.shape} is laid out with axes= (e.g. 'ZYX', 'ZYXC')") from None
    denoise_mode(model, axes, image.shape, "image")  # refuses a single image or a time series, saying why
    return check_axes(axes, image.shape)


def denoise_volume(model, image, axes=None, *, precision="float32", device=None, value_range=None):
    """The denoised volume, in `image`'s layout and dtype (see the module docstring)."""
    axes = _volume_axes(model, image, axes)
    value_range = check_value_range(value_range)
    stack = to_stack(image, axes)  # (D, H, W, C)
    if stack.dtype.kind in "ui":
        refuse_integers(value_range, stack.dtype, "image")
    elif value_range is None and getattr(model, "normalisation", None) is None:
        check_unit_max(stack, None, "image")
    channels = getattr(model, "in_channels", stack.shape[3])
    if channels != stack.shape[3]:
        raise ValueError(f"image: has {stack.shape[3]} channels, the model takes {channels}")
    from ..io import from_unit, to_unit

    pixels, dtype = to_unit(stack, "image")
    parameter = next(model.parameters(), None)
    model_device = parameter.device if parameter is not None else torch.device("cpu")
    device = model_device if device is None else torch.device(device)
    run_model = model if device == model_device else copy.deepcopy(model).to(device)
    if isinstance(value_range, tuple):  # the data's units: the model sees [0, 1], results go back
        run_model = InUnits(run_model, value_range)
    bf16 = precision_name(precision, accepted=("float32", "bfloat16")) == "bfloat16"
    pixels = np.require(pixels, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])  # a read-only memmap: copied once
    volume = torch.from_numpy(pixels).permute(3, 0, 1, 2)[None].to(device)
    was_training = run_model.training
    run_model.eval()
    try:
        with torch.inference_mode(), (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                                      else contextlib.nullcontext()):
            result = run_model(volume.to(parameter.dtype if parameter is not None else torch.float32))
    finally:
        run_model.train(was_training)
    result = result.float()[0].permute(1, 2, 3, 0).cpu().numpy()
    return np.ascontiguousarray(from_stack(from_unit(result, dtype), axes))


def denoise_volume_files(model, jobs, *, axes=None, value_range=None, precision="float32", device=None, log=print):
    """[(input, output)]: each (source, target) volume file denoised whole, written in the input's dtype (8/16-bit
    integers kept, else float32) and layout, with the input's voxel size and origin (MRC, io.read_voxel_grid)."""
    from ..io import read_stack, read_voxel_grid, write_stack

    written = []
    for source, target in jobs:
        try:
            stack, dtype, layout = read_stack(str(source), axes)
            denoise_mode(model, layout, from_stack(stack, layout).shape, f"input {source}")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"source: {source}: {exc}") from exc
        result = denoise_volume(model, stack, "ZYXC", precision=precision, device=device, value_range=value_range)
        kept = dtype if dtype in (np.uint8, np.uint16) else np.float32
        write_stack(str(target), result, kept, layout, voxel_grid=read_voxel_grid(str(source)))
        written.append((source, target))
        log(f"{source} -> {target} (a {layout} volume of {stack.shape[0]} slices, denoised whole)")
    return written


def refuse_volume_batch(image):
    """A 2-D network given a (N, C, D, H, W) tensor: say what to pass instead of a shape error."""
    if isinstance(image, torch.Tensor) and image.dim() == 5:
        raise ValueError(f"image: a tensor of shape {tuple(image.shape)} is a batch of volumes (N, C, D, H, W) but "
                         "the model is a 2-D network (UNet dims=2); denoise a numpy volume slice by slice with "
                         "axes='ZYX', or train a 3-D network (train(..., dims=3)) for volumes")
