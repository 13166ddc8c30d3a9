"""Facts every implementation shares: the reference, the Triton kernels, the extension's Python face, the dispatch
and the concept modules import them from here, and this module imports nothing from n2n_fast (a leaf), so the
layering holds (tests/test_layering.py). Changing a value here changes it everywhere at once; changing a noise
code, purpose or scale changes every user's noise (docs/design.md §2).
"""
import torch

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)

# ---- noise models: codes shared by the Triton constexpr, the C++ switch (csrc/noise.h) and the reference branch
GAUSSIAN, POISSON, POISSON_GAUSSIAN, BERNOULLI, IMPULSE = 0, 1, 2, 3, 4
# draw purposes: the counter word c3's low 8 bits (the layout is in n2n_fast/noise.py's docstring)
PURPOSE_MAIN, PURPOSE_LEVEL, PURPOSE_COLOUR, PURPOSE_POISSON = 0, 1, 2, 8
POISSON_MAX_ATTEMPTS = 64  # PTRS attempts (acceptance > 0.9 per attempt for lam >= 10)
POISSON_MAX_TERMS = 64  # inversion terms for lam < 10 (P(k >= 64) < 1e-40; only float saturation reaches it)
POISSON_SMALL, POISSON_NORMAL = 10.0, 1000.0  # inversion below, PTRS up to, normal approximation above
MAX_SAMPLE = 2**56  # sample indices live in c1 (low 32 bits) and c3 (24 bits above the purpose byte)
MAX_STEP = 2**32

# ---- dtypes of the noisy pair
NOISE_INPUTS = (torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.uint16)
NOISE_OUTPUTS = (torch.float32, torch.bfloat16, torch.float16)

# ---- integer images: full scale of each type. Images enter as [0, 1] floats; the noise paths multiply by the
# float32 constant 1/peak (INPUT_SCALE, the same rounding in every implementation: a division rounds differently).
UINT_PEAKS = {"uint8": 255, "uint16": 65535}
INPUT_SCALE = {getattr(torch, name): 1.0 / peak for name, peak in UINT_PEAKS.items()}


def uint_peak(dtype):
    """Full scale of an integer image dtype (torch or numpy), or None for other dtypes."""
    return UINT_PEAKS.get(str(dtype).replace("torch.", ""))


# ---- stated value range of float images (n2n_fast/value_range.py): value_range= in Python, --range on the CLI
VALUE_RANGE_HDR = "hdr"  # floats taken as they are, values above 1 allowed
# Without a stated range floats are [0, 1] units; a maximum above this is refused. Unclipped noisy [0, 1] data
# legitimately exceeds 1 (sigma 50/255 Gaussian noise reaches about 1.8 at 4 sigma, a Poisson count at a low peak
# a few times the signal), but not 4, while 0-255 or 0-65535 floats do at once.
VALUE_RANGE_UNIT_MAX = 4.0
VALUE_RANGE_HELP = (f"range of float images: LOW,HIGH in the data's units (e.g. 0,255: scaled to [0, 1] on the way "
                    f"in, and denoise writes results back in those units) or {VALUE_RANGE_HDR} (taken as they are, "
                    f"values above 1 allowed); default: floats in [0, 1], a maximum above "
                    f"{VALUE_RANGE_UNIT_MAX:g} refused. Integer images are scaled by their peak and take no --range. A "
                    f"negative LOW needs the = form: --range=-1,1")

# ---- training
TRAIN_TARGETS = ("noisy", "clean", "neighbor")  # synthetic N2N, N2C, Neighbor2Neighbor (pairs= is its own mode)

# ---- losses
LOSS_KINDS = ("l2", "l1", "l0", "hdr")
KIND_CODE = {kind: code for code, kind in enumerate(LOSS_KINDS)}  # the Triton kernels' KIND constexpr
REDUCTIONS = ("mean", "sum", "none")

# ---- tiled inference blend modes (csrc/tiling.h uses the same numbers)
BLEND_MODES = {"cosine": 0, "gaussian": 1, "stitch": 2}

# ---- precision: one spelling everywhere ("bf16" is accepted on the way in and normalised by precision_name)
PRECISIONS = ("auto", "float32", "bfloat16")


def precision_name(value, name="precision", accepted=PRECISIONS):
    """The canonical spelling of a precision argument, or a ValueError naming it."""
    canonical = "bfloat16" if value == "bf16" else value
    if canonical not in accepted:
        raise ValueError(f"{name}: expected one of {', '.join(accepted)} (or 'bf16'), got {value!r}")
    return canonical


def keep_mask_shape(shape, model):
    """Shape of the third output of every noisy-pair op: the target's kept-pixel mask (B, 1, H, W) for Bernoulli,
    an empty (0,) placeholder otherwise (op schemas need a fixed number of tensor outputs)."""
    batch, _, height, width = shape
    return (batch, 1, height, width) if model == BERNOULLI else (0,)


def empty_pair_like(clean, model, out_dtype):
    """Uninitialised (y0, y1, keep) as the noisy-pair ops return them: what their fake (meta) kernels give."""
    return (clean.new_empty(clean.shape, dtype=out_dtype), clean.new_empty(clean.shape, dtype=out_dtype),
            clean.new_empty(keep_mask_shape(clean.shape, model), dtype=torch.bool))


def signed_seed(seed):
    """The 64-bit key as a signed int64 (what op schemas' `int` carries); same bits."""
    seed &= 2**64 - 1
    return seed - 2**64 if seed >= 2**63 else seed


def psnr(mse, peak=1.0):
    """Peak signal-to-noise ratio in dB of a mean squared error (floored at 1e-12: a perfect match is 120 dB)."""
    import math

    return 10 * math.log10(peak * peak / max(float(mse), 1e-12))
