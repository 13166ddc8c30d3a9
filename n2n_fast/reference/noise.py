"""Noisy pairs in pure PyTorch: the oracle of the Triton and C++ kernels and the CPU fallback.

Same counter layout (documented once, in n2n_fast/noise.py) and the same float32 operations in the same order as
n2n_fast/triton/noise_models.py and csrc/noise.h, so uniforms agree bit for bit and transcendentals to an ulp.
"""
import math

import torch

from .. import conventions as nz
from .philox import philox4x32

_U24 = 2.0**-24
_TWO_PI = 2.0 * math.pi  # rounded to float32 where it meets a float32 tensor, as in the kernels
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def uniform(word):
    """u(w) = (w >> 8) * 2**-24 in [0, 1): exact in float32 (int64 word tensor in, float32 out)."""
    return (word >> 8).to(torch.float32) * _U24


def sqrt_rn(x):
    """Correctly rounded float32 square root (as sqrtf, tl.sqrt_rn): torch.sqrt's float32 CPU kernel is not
    (off by an ulp on AVX-512 builds); the float64 root rounded to float32 is."""
    return torch.sqrt(x.double()).float()


def log_positive(x):
    """log of positive normal float32 values, in the exact float32 operations of csrc/noise.h (Cephes' minimax
    polynomial for log(1 + f), f in [sqrt(1/2) - 1, sqrt(2) - 1); within about one ulp of the true log)."""
    bits = x.view(torch.int32)
    e = (bits >> 23) - 126
    m = ((bits & 0x007FFFFF) | 0x3F000000).view(torch.float32)
    low = m < 0.707106769
    e = torch.where(low, e - 1, e)
    f = torch.where(low, m + m - 1.0, m - 1.0)
    z = f * f
    p = torch.full_like(f, 0.0703768358)
    for c in (-0.115146101, 0.116769984, -0.12420141, 0.142493233, -0.166680574, 0.200007141, -0.24999994,
              0.333333313):
        p = p * f + c
    fe = e.to(torch.float32)
    y = p * f * z + fe * -0.000212194442
    y = y - 0.5 * z
    return (f + y) + fe * 0.693359375


def sincos_small(t):
    """(sin t, cos t) for float32 0 <= t < 8 in the exact float32 operations of csrc/noise.h: reduction by
    multiples of pi/4 (pi/4 split in three parts), Cephes' minimax polynomials, quadrant by selects.
    A deliberate twin of triton/noise_models.py's sincos_small (and csrc/noise.h's): the same operations in each
    language are what makes every implementation draw the same Gaussian noise bit for bit."""
    j = (t * 1.27323949).to(torch.int32)
    j = j + (j & 1)
    jf = j.to(torch.float32)
    x = ((t - jf * 0.78515625) - jf * 0.000241875648) - jf * 3.77489506e-08
    z = x * x
    s = ((-0.000195152956 * z + 0.00833216123) * z - 0.166666552) * z * x + x
    c = ((2.44331568e-05 * z - 0.00138873165) * z + 0.0416666456) * z * z - 0.5 * z + 1.0
    q = (j >> 1) & 3
    sin_t = torch.where((q & 1) != 0, c, s)
    cos_t = torch.where((q & 1) != 0, s, c)
    return torch.where((q & 2) != 0, -sin_t, sin_t), torch.where(((q + 1) & 2) != 0, -cos_t, cos_t)


def box_muller(w0, w1):
    """(r cos(2 pi u1), r sin(2 pi u1)) with r = sqrt(-2 log(1 - u0)), float32."""
    r = sqrt_rn(-2.0 * log_positive(1.0 - uniform(w0)))
    sin, cos = sincos_small(uniform(w1) * _TWO_PI)
    return r * cos, r * sin


def counters(pos, sample, step, purpose):
    """Philox counter words (c0, c1, c2, c3) for int64 tensors pos, sample (broadcast) and ints step, purpose."""
    return pos, sample & 0xFFFFFFFF, torch.full_like(sample, step), purpose | ((sample >> 32) << 8)


def draw(seed, pos, sample, step, purpose):
    return philox4x32(seed, *counters(pos, sample, step, purpose))


def levels(noise, seed, step, sample):
    """Per-sample, per-copy parameters: (a0, a1, b0, b1), float32 tensors shaped like `sample`."""
    a_low, a_high, b_low, b_high = (torch.tensor(v, dtype=torch.float32, device=sample.device)
                                    for v in noise.parameter_ranges())
    w = draw(seed, torch.zeros_like(sample), sample, step, nz.PURPOSE_LEVEL)
    a = [a_low + (a_high - a_low) * uniform(w[j]) for j in (0, 1)]
    b = [b_low + (b_high - b_low) * uniform(w[j]) for j in (2, 3)]
    return a[0], a[1], b[0], b[1]


def log_pmf(k, lam):
    """log P(K = k) for K ~ Poisson(lam), float32 integer-valued k >= 0. Below k = 9 with log k! from the exact
    product; above, with Stirling's series for log k! (error < 1e-10) rearranged as
    (k + 1 - lam) + k log(lam / (k + 1)) - log(k + 1) / 2 - log(2 pi) / 2 - corr(k + 1), which avoids the
    cancellation of k log(lam) against log k! (both ~1e4 near lam = 1000, where a float32 ulp is 1e-3)."""
    fact = torch.ones_like(k)
    for i in range(2, 9):
        fact = torch.where(k >= i, fact * i, fact)
    small = -lam + k * torch.log(lam) - torch.log(fact)
    x = torch.clamp(k + 1.0, min=10.0)
    inv = 1.0 / x
    inv2 = inv * inv
    corr = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0)))
    big = (x - lam) + k * torch.log(lam / x) - 0.5 * torch.log(x) - _HALF_LOG_2PI - corr
    return torch.where(k < 9.0, small, big)


def ptrs_attempt(lam, u, v):
    """One attempt of Hoermann's PTRS for lam >= 10: (candidate k, accepted) from uniforms u, v."""
    slam = sqrt_rn(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    us_u = u - 0.5
    us = 0.5 - torch.abs(us_u)
    k = torch.floor((2.0 * a / us + b) * us_u + lam + 0.43)
    squeeze = (us >= 0.07) & (v <= v_r)
    reject = (k < 0.0) | (us == 0.0) | ((us < 0.013) & (v > us))
    kc = torch.clamp(k, min=0.0)
    lhs = torch.log(v * inv_alpha / (a / (us * us) + b))
    rhs = log_pmf(kc, lam)
    return kc, squeeze | (~reject & (lhs <= rhs))


def poisson_inversion(lam, u):
    """Sequential-search inversion for lam < 10: smallest k with u < F(k) (at most POISSON_MAX_TERMS terms)."""
    k = torch.zeros_like(lam)
    p = torch.exp(-lam)
    cdf = p
    for _ in range(nz.POISSON_MAX_TERMS):
        more = (u > cdf) & (k < nz.POISSON_MAX_TERMS)
        if not bool(more.any()):
            break
        k = torch.where(more, k + 1.0, k)
        p = torch.where(more, p * (lam / k), p)
        cdf = torch.where(more, cdf + p, cdf)
    return k


def poisson_pair(lam0, lam1, seed, pos, sample, step):
    """Poisson counts (float32) for both copies' means lam0, lam1 (same shape as pos/sample after broadcast)."""
    out = []
    words = draw(seed, pos, sample, step, nz.PURPOSE_POISSON)
    for copy, lam in enumerate((lam0, lam1)):
        w_u, w_v = words[2 * copy], words[2 * copy + 1]
        small = lam < nz.POISSON_SMALL
        normal = lam > nz.POISSON_NORMAL
        k = poisson_inversion(torch.where(small, lam, 0.0), uniform(w_u))
        z, _ = box_muller(w_u, w_v)
        k = torch.where(normal, torch.floor(lam + sqrt_rn(lam) * z + 0.5).clamp(min=0.0), k)
        pending = ~small & ~normal
        lam_p = torch.where(pending, lam, nz.POISSON_SMALL)  # keeps the PTRS constants finite off its range
        for attempt in range(nz.POISSON_MAX_ATTEMPTS):
            if attempt:
                if not bool(pending.any()):
                    break
                w = draw(seed, pos, sample, step, nz.PURPOSE_POISSON + attempt)
                w_u, w_v = w[2 * copy], w[2 * copy + 1]
            cand, ok = ptrs_attempt(lam_p, uniform(w_u), uniform(w_v))
            last = attempt == nz.POISSON_MAX_ATTEMPTS - 1
            take = pending & (ok | last)
            k = torch.where(take, cand, k)
            pending = pending & ~take
        out.append(k)
    return out


def noisy_values(x, pos, pixel, sample, noise, seed, step):
    """(y0, y1, keep1) float32 for float32 clean values x at positions pos (pixel = pos % (H W)) of samples
    `sample` (int64 tensors broadcast with x). keep1 is the target's Bernoulli keep decision (None otherwise)."""
    a0, a1, b0, b1 = levels(noise, seed, step, sample)
    code = noise.code
    if code in (nz.GAUSSIAN, nz.POISSON_GAUSSIAN):
        z0, z1 = box_muller(*draw(seed, pos, sample, step, nz.PURPOSE_MAIN)[:2])
    if code == nz.GAUSSIAN:
        return x + a0 * z0, x + a1 * z1, None
    if code in (nz.POISSON, nz.POISSON_GAUSSIAN):
        xp = torch.clamp(x, min=0.0)
        k0, k1 = poisson_pair(a0 * xp, a1 * xp, seed, pos, sample, step)
        y0, y1 = k0 / a0, k1 / a1
        if code == nz.POISSON_GAUSSIAN:
            y0, y1 = y0 + b0 * z0, y1 + b1 * z1
        return y0, y1, None
    w = draw(seed, pixel, sample, step, nz.PURPOSE_MAIN)
    u0, u1 = uniform(w[2]), uniform(w[3])
    if code == nz.BERNOULLI:
        keep0, keep1 = u0 >= a0, u1 >= a1
        return torch.where(keep0, x, 0.0), torch.where(keep1, x, 0.0), keep1
    colour = draw(seed, pos, sample, step, nz.PURPOSE_COLOUR)
    y0 = torch.where(u0 < a0, uniform(colour[0]), x)
    y1 = torch.where(u1 < a1, uniform(colour[1]), x)
    return y0, y1, None


def to_float(clean):
    """float32 values in [0, 1]: uint inputs multiplied by the float32 constant 1/255 or 1/65535."""
    if clean.dtype in nz.INPUT_SCALE:
        return clean.to(torch.float32) * nz.INPUT_SCALE[clean.dtype]
    return clean.to(torch.float32)


def noisy_pair(clean, noise, *, seed, step=0, index=0, out_dtype=torch.float32, stream=None):
    """(y0, y1, keep) for a validated (B, C, H, W) batch; keep is the target's kept-pixel mask (B, 1, H, W) bool
    for Bernoulli, else None. See n2n_fast.noise.noisy_pair for the arguments; `stream` (the one copy add_noise
    wants) changes nothing here: the oracle computes both."""
    batch, channels, height, width = clean.shape
    pixels = height * width
    x = to_float(clean).reshape(batch, channels * pixels)
    device = clean.device
    pos = torch.arange(channels * pixels, device=device, dtype=torch.int64)[None, :]
    sample = (index + torch.arange(batch, device=device, dtype=torch.int64))[:, None]
    step = int(step)  # a tensor step: the reference reads it on the host (a sync on a GPU; this is the oracle)
    y0, y1, keep = noisy_values(x, pos, pos % max(pixels, 1), sample, noise, seed, step)
    y0 = y0.to(out_dtype).reshape(clean.shape)
    y1 = y1.to(out_dtype).reshape(clean.shape)
    if keep is not None:
        keep = keep.expand(batch, channels * pixels)[:, :pixels].reshape(batch, 1, height, width)
    elif noise.code == nz.BERNOULLI:
        keep = torch.zeros(batch, 1, height, width, dtype=torch.bool, device=device)
    return y0, y1, keep
