"""The stated value range of float images (`value_range=` on train/denoise, `--range` on the command line).

The networks work in [0, 1] units. uint8/uint16 pixels carry their own scale (their peak), but a float array does
not: 0-255 floats and [0, 1] floats look alike to the code, and 0-255 data taken as [0, 1] trains and denoises to
garbage. Floats above 1 are also legitimate (HDR, unclipped noisy data), so the range is stated, not guessed:
  None        the default: floats are in [0, 1] units. A maximum above UNIT_MAX is refused, naming the two ways out;
  (low, high) the data's units: x -> (x - low) / (high - low) on the way in, and denoise maps its results back, so
              the output is in the input's units (e.g. (0, 255) for 8-bit levels stored as floats);
  "hdr"       taken as is, values above 1 allowed, no check.
Integer images keep their fixed scaling (x / peak); a value_range given with them is refused rather than applied
on top, since (x / 255 - low) / (high - low) is never what was meant.
"""
import math
import numbers

import numpy as np
import torch

from .conventions import VALUE_RANGE_HDR, VALUE_RANGE_UNIT_MAX as UNIT_MAX


def check_value_range(value_range, name="value_range"):
    """None, "hdr" or a (low, high) tuple of finite floats with low < high; else a ValueError/TypeError naming
    `name`, what was given and what is accepted."""
    accepted = f"accepted: None ([0, 1] floats), {VALUE_RANGE_HDR!r}, or (low, high) with low < high, e.g. (0, 255)"
    if value_range is None or (isinstance(value_range, str) and value_range == VALUE_RANGE_HDR):
        return value_range
    if isinstance(value_range, str):
        raise ValueError(f"{name}: got {value_range!r}; {accepted}")
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise TypeError(f"{name}: got {value_range!r}; {accepted}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in value_range):
        raise TypeError(f"{name}: low and high must be numbers, got {value_range!r}; {accepted}")
    low, high = (float(v) for v in value_range)
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"{name}: got {value_range!r}; {accepted} (both finite)")
    return low, high


def scaling(value_range):
    """(low, scale) of a checked (low, high) range: unit = (x - low) / scale."""
    low, high = value_range
    return low, high - low


def refuse_integers(value_range, dtype, where):
    """A value_range applies to float images only: integer pixels are scaled by their own peak."""
    if value_range is not None:
        dtype = str(dtype).replace("torch.", "")
        raise ValueError(f"value_range: {value_range!r} was given but {where} holds {dtype} pixels, which are "
                         f"scaled by their own peak (uint8 / 255, uint16 / 65535); value_range applies to float "
                         f"images only: drop it for integer data")


def refuse_unstated(found_max, where):
    """The error for float data far above [0, 1] given without a value_range."""
    raise ValueError(
        f"{where}: float pixels reach {found_max:g}, far above the [0, 1] units float images are taken in (more "
        f"than {UNIT_MAX:g}, which unclipped noise on [0, 1] data does not reach); state the range: "
        f"value_range=(low, high) (e.g. (0, 255) for 8-bit levels as floats; --range 0,255 on the command line) "
        f"scales the data to [0, 1] and back, or value_range={VALUE_RANGE_HDR!r} (--range {VALUE_RANGE_HDR}) "
        f"takes values above 1 as they are")


def _is_float(dtype):
    return dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.dtype(dtype).kind == "f"


def denoise_limit(value_range, dtype, out_dtype=None):
    """The largest input value denoise accepts (UNIT_MAX without a stated range, else None: no check), after
    refusing a range with integer input, or a (low, high) range with an integer `out` (results in the data's
    units do not fit an integer type's [0, 1] scaling)."""
    if not _is_float(dtype):
        refuse_integers(value_range, dtype, "image")
        return None
    if isinstance(value_range, tuple) and out_dtype is not None and not _is_float(out_dtype):
        raise ValueError(f"out: value_range={value_range!r} gives results in the image's units, which a {out_dtype} "
                         f"out cannot hold; pass a float out (or none)")
    return UNIT_MAX if value_range is None else None


def check_unit_max(array, value_range, where):
    """Refuse float data whose maximum says it is not in [0, 1] units when no range was stated (the maximum, a
    pass over the data, is read only then)."""
    if value_range is None and array.size:
        found_max = float(array.max())
        if found_max > UNIT_MAX:
            refuse_unstated(found_max, where)


class InUnits(torch.nn.Module):
    """`model` seen from data in (low, high) units: tiles scaled to [0, 1] on the way in and results mapped back.
    Exact for denoise's tiling: padding is a pixel copy and the blend weights sum to one, so both commute with
    the affine map. The result is float32 (bf16 autocast outputs would lose the data's units' precision)."""

    def __init__(self, model, value_range):
        super().__init__()
        self.model = model
        self.low, self.scale = scaling(value_range)

    def forward(self, x):
        return self.model((x - self.low) / self.scale).float() * self.scale + self.low
