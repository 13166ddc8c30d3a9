"""Noise models and the noisy pair: two independent noisy copies of a clean batch (docs/design.md §1, §2).

Models are frozen dataclasses. A scalar parameter is fixed; a `(low, high)` pair is drawn uniformly per sample and
per copy (the paper's blind setting). `noisy_pair` / `add_noise` validate their inputs and dispatch through
`n2n_fast._backend` (Triton for CUDA tensors, the C++ CPU kernel for CPU tensors, the pure-PyTorch reference).

Counter layout (docs/design.md §2) -- the one place it is written down; changing it changes every user's noise
-----------------------------------------------------------------------------------------------------
Every random number is a word of Philox4x32-10 (as `tl.philox`, csrc/philox.h, reference/philox.py) with
key = `seed` (64 bits: lo word, hi word) and the counter

    c0 = pos                    position inside the sample: c * H * W + h * W + w  (so a sample has < 2**32 elements);
                                for a volume (C, D, H, W): c * D * H * W + d * H * W + h * W + w, the image layout
                                of its (C, D * H, W) view (`volume_as_images`), so a voxel's noise depends on its
                                position in the sample alone
    c1 = sample & 0xffffffff    sample = index + b, the global index of the sample (0 <= sample < 2**56)
    c2 = step                   training step (0 <= step < 2**32)
    c3 = purpose | (sample >> 32) << 8

Nothing depends on the batch size, the block size or the grid: a sample gets the same noise alone or in any batch.
Purposes (words w0..w3 of one call):
    MAIN   (0)  at pos:           Box-Muller pair from (w0, w1): r cos(2 pi u1) -> copy 0, r sin(2 pi u1) -> copy 1
                at pixel h*W + w: w2 -> copy 0, w3 -> copy 1 Bernoulli drop / impulse hit decisions (whole pixel;
                                  the pixel position is the channel-0 element, so for C == 1 it is the same call)
    LEVEL  (1)  at pos 0:         per-sample levels of a (low, high) range: w0 / w1 -> first parameter of copy 0 / 1,
                                  w2 / w3 -> second parameter (PoissonGaussian sigma) of copy 0 / 1
    COLOUR (2)  at pos:           impulse colour: w0 -> copy 0, w1 -> copy 1
    POISSON + a (8 + a, a < 64):  Poisson attempt a: (w0, w1) for copy 0, (w2, w3) for copy 1
Uniforms are integer exact: u(w) = (w >> 8) * 2**-24 in [0, 1) (24 bits; identical in every implementation).
Box-Muller uses r = sqrt(-2 log(1 - u0)) (1 - u0 in (0, 1] exactly, so never log 0), theta = 2 pi u1, with log, sin
and cos evaluated by the same branch-free float32 polynomials everywhere (csrc/noise.h, reference/noise.py,
triton/noise_models.py): Gaussian copies agree bit for bit on the CPU, to an ulp (contracted multiply-adds) on a GPU.
Levels: low + (high - low) * u. Bernoulli keeps a pixel when u >= p; impulse replaces it when u < p.
Poisson(lam), lam = peak * max(x, 0): lam < 10: inversion with u(w0) of attempt 0 (sequential search, at most 64
terms); 10 <= lam <= 1000: Hoermann's PTRS (transformed rejection with squeeze), attempt a uses (u(w0), u(w1)) of
purpose 8 + a (at most 64 attempts; reaching that has probability below 1e-50); lam > 1000: normal approximation
floor(lam + sqrt(lam) z + 1/2) with z the Box-Muller cos of attempt 0's two words. Counts go through float32
(exact below 2**24).
"""
import math
import numbers
import struct
from dataclasses import dataclass, fields

import numpy as np
import torch

from .conventions import (BERNOULLI, GAUSSIAN, IMPULSE, INPUT_SCALE, MAX_SAMPLE, MAX_STEP,  # noqa: F401
                          NOISE_INPUTS, NOISE_OUTPUTS, POISSON, POISSON_GAUSSIAN, POISSON_MAX_ATTEMPTS,
                          POISSON_MAX_TERMS, POISSON_NORMAL, POISSON_SMALL, PURPOSE_COLOUR, PURPOSE_LEVEL,
                          PURPOSE_MAIN, PURPOSE_POISSON)


def _f32(name, value, given):
    """A Python number rounded to float32, as every kernel sees it; a value float32 cannot hold is refused (1e40
    would become inf, 1e-46 would become 0)."""
    try:
        rounded = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        rounded = math.inf
    if math.isinf(rounded):
        raise ValueError(f"{name}: {given!r} is out of float32's range (|value| <= 3.4e38)")
    if value != 0 and rounded == 0:
        raise ValueError(f"{name}: {given!r} underflows to 0 in float32 (smallest normal 1.2e-38)")
    return rounded


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _level(name, value, *, lower, upper=math.inf, open_lower=False):
    """Validated (low, high) float32 pair from a scalar or a (low, high) pair (numpy scalars accepted)."""
    if not (_is_number(value) or (isinstance(value, (tuple, list)) and len(value) == 2)):
        raise TypeError(f"{name}: expected a number or a (low, high) pair, got {value!r}")
    low, high = (value, value) if _is_number(value) else value
    for v in (low, high):
        if not _is_number(v):
            raise TypeError(f"{name}: expected numbers, got {value!r}")
        if math.isfinite(v):
            _f32(name, float(v), value)  # float32's range first: its message says why 1e40 cannot be
        if not math.isfinite(v) or v < lower or (open_lower and v == lower) or v > upper:
            bound = f"{'>' if open_lower else '>='} {lower:g}" + (f" and <= {upper:g}" if upper != math.inf else "")
            raise ValueError(f"{name}: every value must be finite and {bound}, got {value!r}")
    if low > high:
        raise ValueError(f"{name}: low must not exceed high, got (low, high) = {value!r}")
    return _f32(name, float(low), value), _f32(name, float(high), value)


_FIELD_NAMES = {}  # model class -> its dataclass field names


class _Model:
    """A noise model: frozen parameters, each validated by its BOUNDS entry (keyword arguments of _level)."""
    BOUNDS = {}

    def _check(self, name):
        return _level(name, getattr(self, name), **self.BOUNDS[name])

    def __post_init__(self):
        self.parameter_ranges()

    def parameter_ranges(self):
        """(a_low, a_high, b_low, b_high) float32 values of the model's parameters (b unused: 0). Validated once
        per set of parameter values and cached: the launchers call this on every step."""
        names = _FIELD_NAMES.get(type(self))
        if names is None:  # dataclasses.fields() costs microseconds; the names never change
            names = _FIELD_NAMES[type(self)] = tuple(spec.name for spec in fields(self))
        values = tuple(getattr(self, name) for name in names)
        cached = self.__dict__.get("_ranges")
        if cached is None or cached[0] != values:
            pairs = [self._check(name) for name in names]
            b = pairs[1] if len(pairs) > 1 else (0.0, 0.0)
            cached = (values, pairs[0] + b)
            object.__setattr__(self, "_ranges", cached)  # frozen dataclass: the cache is not a field
        return cached[1]


# The largest sigma accepted (images in [0, 1]): the Box-Muller draw has |z| <= 5.8 (u has 24 bits), so every
# noisy value stays finite even in float16 (max 65504); Gaussian(3.4e38) would turn every pixel into inf.
SIGMA_MAX = 1e4


@dataclass(frozen=True)
class Gaussian(_Model):
    """Additive white Gaussian noise, y = x + sigma * z. Zero-mean. Paper: train (0, 50/255), test 25/255.
    0 <= sigma <= SIGMA_MAX (1e4)."""
    sigma: object
    code = GAUSSIAN
    BOUNDS = {"sigma": dict(lower=0.0, upper=SIGMA_MAX)}


@dataclass(frozen=True)
class Poisson(_Model):
    """Shot noise, y = Poisson(peak * x) / peak (exact sampling). Zero-mean. Paper: train (0.001, 50), test 30."""
    peak: object
    code = POISSON
    BOUNDS = {"peak": dict(lower=0.0, open_lower=True)}


@dataclass(frozen=True)
class PoissonGaussian(_Model):
    """Shot plus read noise, y = Poisson(peak * x) / peak + sigma * z. Zero-mean."""
    peak: object
    sigma: object
    code = POISSON_GAUSSIAN
    BOUNDS = {"peak": dict(lower=0.0, open_lower=True), "sigma": dict(lower=0.0, upper=SIGMA_MAX)}


@dataclass(frozen=True)
class Bernoulli(_Model):
    """Drops whole pixels (all channels) with probability p: y = x * keep. The target's keep mask is returned."""
    p: object
    code = BERNOULLI
    BOUNDS = {"p": dict(lower=0.0, upper=1.0)}


@dataclass(frozen=True)
class Impulse(_Model):
    """Random-valued impulse: with probability p a whole pixel becomes a uniform random colour (each channel)."""
    p: object
    code = IMPULSE
    BOUNDS = {"p": dict(lower=0.0, upper=1.0)}


MODELS = (Gaussian, Poisson, PoissonGaussian, Bernoulli, Impulse)


def volume_as_images(x):
    """A (B, C, D, H, W) batch of volumes as the (B, C, D * H, W) batch of images every kernel takes: a view when
    `x` is contiguous; its flat positions are the counter layout's voxel positions (see above)."""
    return x.reshape(*x.shape[:2], x.shape[2] * x.shape[3], x.shape[4])


def _validate(clean, noise, seed, step, index, out_dtype, check_finite):
    """4-D clean batch after checking every argument (docs/design.md §5); volumes as images (volume_as_images)."""
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"clean: expected a torch.Tensor (B, C, H, W), (C, H, W) or (B, C, D, H, W), got "
                        f"{type(clean).__name__}")
    if clean.dim() not in (3, 4, 5):
        raise ValueError(f"clean: expected rank 4 (B, C, H, W), rank 3 (C, H, W) or rank 5 (B, C, D, H, W: "
                         f"volumes), got shape {tuple(clean.shape)}")
    if clean.dtype not in NOISE_INPUTS:
        raise TypeError(f"clean: dtype {clean.dtype} is not supported; accepted: "
                        + ", ".join(str(d) for d in NOISE_INPUTS))
    if clean.device.type not in ("cpu", "cuda"):
        raise ValueError(f"clean: device {clean.device} is not supported; accepted: cpu, cuda")
    if not isinstance(noise, MODELS):
        raise TypeError(f"noise: expected one of {', '.join(m.__name__ for m in MODELS)}, got {noise!r}")
    noise.parameter_ranges()  # re-validates (dataclasses can be built with object.__setattr__ tricks)
    if out_dtype not in NOISE_OUTPUTS:
        raise TypeError(f"out_dtype: expected one of {', '.join(str(d) for d in NOISE_OUTPUTS)}, got {out_dtype!r}")
    if isinstance(step, torch.Tensor):  # the device-step form: read by the kernels, never by the host (no sync)
        if step.dim() != 0 or step.dtype != torch.int64 or step.device != clean.device:
            raise TypeError(f"step: a tensor step must be a 0-d int64 tensor on {clean.device}, got "
                            f"{step.dtype} of shape {tuple(step.shape)} on {step.device}")
        step = 0  # its value is checked where it is advanced (train())
    for name, value, top in (("seed", seed, 2**64), ("step", step, MAX_STEP), ("index", index, MAX_SAMPLE)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an int, got {value!r}")
        low = -(2**63) if name == "seed" else 0
        if not low <= value < top:
            raise ValueError(f"{name}: expected an int in [{low}, {top}), got {value}")
    batch = clean.unsqueeze(0) if clean.dim() == 3 else volume_as_images(clean) if clean.dim() == 5 else clean
    if index + batch.shape[0] > MAX_SAMPLE:
        raise ValueError(f"index: index + batch size must be <= 2**56, got {index} + {batch.shape[0]}")
    sample_numel = math.prod(batch.shape[1:])  # not batch[0].numel(): indexing is an op of its own
    if sample_numel >= 2**32:
        raise ValueError(f"clean: a sample must have fewer than 2**32 elements, got {sample_numel}")
    if check_finite and clean.is_floating_point() and batch.numel() and not bool(torch.isfinite(batch).all()):
        raise ValueError("clean: contains NaN or Inf; expected finite values (images in [0, 1])")
    return batch


def noisy_pair(clean, noise, *, seed, step=0, index=0, out_dtype=torch.float32, backend=None, check_finite=True):
    """Two independent noisy copies of `clean`.

    clean: (B, C, H, W) or (C, H, W) images, or (B, C, D, H, W) volumes; float32/float16/bfloat16 in [0, 1] or
      uint8/uint16 (scaled to [0, 1]).
    noise: Gaussian | Poisson | PoissonGaussian | Bernoulli | Impulse.
    seed: Philox key; step: training step, an int or a 0-d int64 tensor on clean's device (read on the device:
      a replayed CUDA graph draws new noise at every step); index: global index of the batch's first sample.
    out_dtype: float32, bfloat16 or float16. Values are not clipped.
    backend: None (first that serves) or "triton" / "extension" / "reference" to force one.
    check_finite: reject NaN/Inf in float inputs (one extra read of the batch and a host sync).
    Returns (y0, y1) shaped like `clean`; for Bernoulli (y0, y1, keep) with keep the target's (y1's) kept-pixel
    mask, bool, (B, 1, H, W) (or (1, H, W) for a 3-D input, (B, 1, D, H, W) for volumes).
    """
    return _noisy_pair(clean, noise, seed, step, index, out_dtype, backend, check_finite, None)


def _noisy_pair(clean, noise, seed, step, index, out_dtype, backend, check_finite, stream):
    """noisy_pair; with `stream` set, a backend may compute only that copy (Triton does: the other is None)."""
    batch = _validate(clean, noise, seed, step, index, out_dtype, check_finite)
    from . import _backend

    _, fn = _backend.choose("noisy_pair", batch.device, backend, clean=batch, out_dtype=out_dtype)
    y0, y1, keep = fn(batch, noise, seed=seed, step=step, index=index, out_dtype=out_dtype, stream=stream)
    if clean.dim() == 3:
        y0, y1 = (None if y0 is None else y0[0]), (None if y1 is None else y1[0])
        keep = keep[0] if keep is not None else None
    elif clean.dim() == 5:
        y0, y1 = (None if y is None else y.reshape(clean.shape) for y in (y0, y1))
        keep = None if keep is None else keep.reshape(clean.shape[0], 1, *clean.shape[2:])
    return (y0, y1, keep) if noise.code == BERNOULLI else (y0, y1)


def add_noise(clean, noise, *, seed, step=0, index=0, stream=0, out_dtype=torch.float32, backend=None,
              check_finite=True):
    """One noisy copy, bitwise equal to `noisy_pair(...)[stream]` (stream 0 or 1). Same arguments as noisy_pair.
    On Triton only that copy is computed and written (half the writes; for Poisson half the sampler's work)."""
    if isinstance(stream, bool) or stream not in (0, 1):
        raise ValueError(f"stream: expected 0 or 1, got {stream!r}")
    return _noisy_pair(clean, noise, seed, step, index, out_dtype, backend, check_finite, stream)[stream]
