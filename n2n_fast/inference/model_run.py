"""What the 2-D and 3-D tiled passes (inference/denoise.py, inference/volume.py) share around the network: the
model's device and dtype checks, the device spelling, the progress switch and the float32 band (slab) that moves
along rows (planes) as tile rows finish."""
import sys

import torch

PROGRESS_MIN_TILES = 64  # progress=None shows a bar from this many tiles on, when stderr is a terminal
_MODEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_model(model):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    parameter = next(model.parameters(), None)
    if parameter is None:
        return torch.device("cpu"), torch.float32
    if parameter.dtype not in _MODEL_DTYPES:  # the tiles are gathered in the model's dtype
        raise TypeError(f"model: its parameters are {parameter.dtype}; denoise runs float32, float16 or bfloat16 "
                        "models (model.float(); precision='bfloat16' for bf16 autocast)")
    return parameter.device, parameter.dtype


def canonical(device):
    """cuda -> cuda:<current>, so that the model's cuda:0 and a requested "cuda" compare equal."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def show_progress(progress, count):
    if progress is None:
        return count >= PROGRESS_MIN_TILES and sys.stderr.isatty()
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected None, True or False, got {progress!r}")
    return progress


def move_band(band, band_top, first, last, outer, inner, device):
    """A zeroed float32 band (*outer, last - first, *inner) for image rows (volume planes) [first, last) along
    dim 2, carrying over those it shares with `band` (whose first row is band_top)."""
    new = torch.zeros((*outer, last - first, *inner), dtype=torch.float32, device=device)
    keep = 0 if band is None else band_top + band.shape[2] - first
    if keep > 0:
        new[:, :, :keep] = band[:, :, band.shape[2] - keep:]
    return new


def checked_output(result, tiles, kind):
    """The model's output for a batch of tiles, refused unless it has the tiles' shape (`kind`: "an image-to-image"
    or "a volume-to-volume")."""
    if not isinstance(result, torch.Tensor) or result.shape != tiles.shape:
        raise ValueError(f"model: output shape {tuple(getattr(result, 'shape', ()))} differs from its input "
                         f"{tuple(tiles.shape)}; denoise needs {kind} model")
    return result
