"""Noise given in the data's own units (docs/usage.md): text such as "gaussian:25" or "poisson:0.5-50" read as a
noise model of n2n_fast.noise, whose levels are in [0, 1] units.

People measure noise in their data's units: 25 8-bit levels, 100 16-bit counts, a camera gain in counts per
photon. `noise_from_text` takes the text in those units, `noise_units` says which units that is for the data at
hand ("data": 8-bit levels for uint8 images, 16-bit counts for uint16, LOW..HIGH for floats with a stated
value_range, [0, 1] for other floats), so the same conversion serves Python users and `n2n-fast train --noise`.

    >>> noise_from_text("gaussian:0-50", data=np.uint8)
    Gaussian(sigma=(0.0, 0.19607843137254902))
    >>> noise_from_text("poisson", data="counts/", gain=2.0)  # 16-bit counts: a peak of 65535 / 2
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .conventions import UINT_PEAKS, uint_peak

# units=: a sigma of s in these units is s / scale in [0, 1] units ("data" picks one from the data's dtype)
UNIT_SCALES = {"8bit": float(UINT_PEAKS["uint8"]), "16bit": float(UINT_PEAKS["uint16"]), "unit": 1.0}
NOISE_UNITS = ("data",) + tuple(UNIT_SCALES)
# text name -> (model in n2n_fast.noise, its parameters in order); sigmas are in the units, peaks and p as given
MODELS = {"gaussian": ("Gaussian", ("sigma",)), "poisson": ("Poisson", ("peak",)),
          "poissongaussian": ("PoissonGaussian", ("peak", "sigma")), "bernoulli": ("Bernoulli", ("p",)),
          "impulse": ("Impulse", ("p",))}
NOISE_TEXT_HELP = ("gaussian:SIGMA, poisson:PEAK, poissongaussian:PEAK,SIGMA, bernoulli:P, impulse:P; each value may "
                   "be a LOW-HIGH range drawn per sample")


@dataclass(frozen=True)
class NoiseUnits:
    """The units noise text is read in: a sigma of s means s / scale in [0, 1] units; peak is the Poisson peak a
    camera gain gives (full_scale / gain), or None. str() says it in words ("16bit units; peak 32767.5 = ...")."""
    name: str  # "8bit", "16bit", "unit", or "value_range=LOW,HIGH" for floats in a stated range
    scale: float
    peak: float | None = None
    full_scale: float | None = None
    gain: float | None = None

    def __str__(self):
        gain = (f"; peak {self.peak:g} = full scale {self.full_scale:g} / gain {self.gain:g}"
                if self.peak is not None else "")
        return f"{self.name} units{gain}"


def data_full_scale(data, axes=None):
    """255.0, 65535.0 or 1.0: the full scale of the data's dtype. `data`: a dtype (numpy or torch), an array or
    tensor, or images as train() takes them (a folder, an image path, a list of paths or arrays; the first image
    decides, and only it is read)."""
    from .io import SUPPORTED, read_stack

    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("data: an empty list has no dtype; give images, an array or a dtype")
        return data_full_scale(data[0], axes)
    if isinstance(data, (str, os.PathLike)):
        first = Path(data)
        if first.is_dir():
            files = sorted(p for p in first.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED)
            first = files[0] if files else first
        if not first.is_file():
            raise ValueError(f"data: no image found at {first}")
        dtype = read_stack(str(first), axes, keep_integers=True)[1]
    else:
        dtype = data if isinstance(data, (type, np.dtype, torch.dtype)) else getattr(data, "dtype", data)
    try:
        name = str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"data: expected a dtype, an array or images (a folder, path or list), got "
                        f"{type(data).__name__} {data!r}") from None
    return float(uint_peak(name) or 1.0)


def noise_units(units="data", *, data=None, axes=None, value_range=None, gain=None):
    """The NoiseUnits that noise text is read in.

    units: "data" (from the data's dtype: 8bit for uint8, 16bit for uint16; for floats LOW..HIGH of a stated
      value_range=(low, high), else [0, 1]), "8bit" (a sigma of 25 is 25/255), "16bit" (counts of 65535) or "unit"
      ([0, 1]).
    data: what the noise is for (see data_full_scale): needed for units="data" and for gain; only the first image
      is read. axes: its layout, when a 3-D file could be a stack or channels (n2n_fast/axes.py).
    value_range: the stated range of float data, as train() takes it (n2n_fast/value_range.py).
    gain: camera gain in counts per photon, for uint8/uint16 data: a Poisson peak of full scale / gain."""
    from .value_range import check_value_range

    if units not in NOISE_UNITS:
        raise ValueError(f"units: expected one of {', '.join(NOISE_UNITS)}, got {units!r}")
    if gain is not None and (isinstance(gain, bool) or not isinstance(gain, (int, float))
                             or not math.isfinite(gain) or gain <= 0):
        raise ValueError(f"gain: expected a number > 0 (counts per photon), got {gain!r}")
    value_range = check_value_range(value_range)
    full_scale = None
    if units == "data" or gain is not None:
        if data is None:
            raise ValueError(f"data: units={units!r}{' and gain' if gain is not None else ''} read the data's "
                             "dtype; give the data (a dtype, an array, or images as train() takes them)")
        full_scale = data_full_scale(data, axes)
    if gain is not None and full_scale == 1.0:
        raise ValueError(f"gain: a peak of full scale / gain needs uint8/uint16 data; got gain {gain:g} on float "
                         "data")
    peak = full_scale / gain if gain is not None else None
    if units == "data":
        units = {UNIT_SCALES["8bit"]: "8bit", UNIT_SCALES["16bit"]: "16bit"}.get(full_scale, "unit")
        if units == "unit" and isinstance(value_range, tuple):  # floats in LOW..HIGH: sigmas in those units
            low, high = value_range
            return NoiseUnits(f"value_range={low:g},{high:g}", high - low, peak, full_scale, gain)
    return NoiseUnits(units, UNIT_SCALES[units], peak, full_scale, None if gain is None else float(gain))


def _values(part, text):
    try:
        bounds = [float(v) for v in part.split("-")]  # ranges are LOW-HIGH (values are >= 0)
    except ValueError:
        bounds = []
    if len(bounds) not in (1, 2):
        raise ValueError(f"noise: {part!r} is not a number or a LOW-HIGH range (in {text!r})")
    return bounds


def noise_from_text(noise, *, units="data", data=None, axes=None, value_range=None, gain=None):
    """A noise model (n2n_fast.noise, [0, 1] units) from text in the data's units: NAME:VALUE[,VALUE] with NAME in
    gaussian:SIGMA, poisson:PEAK, poissongaussian:PEAK,SIGMA, bernoulli:P, impulse:P; each value may be a LOW-HIGH
    range (drawn per sample and per copy, as a (low, high) pair).

    Sigmas are read in `units` (see noise_units; a NoiseUnits from it is accepted too); PEAK is in photons at full
    scale and P a probability, as they are. With `gain` a Poisson PEAK may be left out (poisson,
    poissongaussian:SIGMA): it is full scale / gain. Examples: noise_from_text("gaussian:25", data=np.uint8) is
    Gaussian(25 / 255); noise_from_text("gaussian:100", units="16bit") is Gaussian(100 / 65535)."""
    from . import noise as models

    if not isinstance(noise, str):
        raise TypeError(f"noise: expected text such as 'gaussian:25', got {type(noise).__name__} {noise!r}")
    name, _, spec = noise.partition(":")
    name = name.strip().lower()
    if name not in MODELS:
        raise ValueError(f"noise: expected NAME:VALUE with NAME in {sorted(MODELS)}, got {noise!r}")
    model, names = MODELS[name]
    if (gain is not None or getattr(units, "peak", None) is not None) and names[0] != "peak":
        raise ValueError(f"gain: sets a Poisson peak; noise {noise!r} has none (use poisson or poissongaussian)")
    if not isinstance(units, NoiseUnits):
        if not spec and gain is None:
            raise ValueError(f"noise: expected NAME:VALUE with NAME in {sorted(MODELS)}, got {noise!r}")
        units = noise_units(units, data=data, axes=axes, value_range=value_range, gain=gain)
    elif (data, axes, value_range, gain) != (None, None, None, None):
        raise TypeError("units: a NoiseUnits already holds the data's units and gain; give it alone")
    parts = spec.split(",") if spec else []
    if units.peak is not None and names[0] == "peak" and len(parts) == len(names) - 1:
        parts = [repr(units.peak)] + parts  # the gain gave the peak
    if len(parts) != len(names):
        raise ValueError(f"noise: {name} takes {len(names)} comma-separated value(s) ({', '.join(names)}), "
                         f"got {spec!r}")
    values = []
    for part, what in zip(parts, names):
        bounds = [v / units.scale if what == "sigma" else v for v in _values(part, noise)]
        values.append(bounds[0] if len(bounds) == 1 else tuple(bounds))
    return getattr(models, model)(*values)
