"""Per-element noise as Triton jit helpers: the noisy-pair kernel and the fused loss kernels call these.

Stable entry point for other kernels (keep the signature):

    y0, y1, keep1 = noisy_pair_values(x, pos, sample, pixels, seed, step, MODEL,
                                      a_low, a_high, b_low, b_high)

    x       float32 block: clean values already scaled to [0, 1]
    pos     int64 block (same shape as x): position of each element inside its sample, c * H * W + h * W + w
    sample  int64, scalar or block broadcastable with x: global sample index (index of the batch's first sample
            + sample's row in the batch). A scalar (one sample per program) costs the level draw once per program.
    pixels  H * W (int), used by Bernoulli / Impulse (whole-pixel decisions) only
    seed    64-bit Philox key (int); step: training step (int, < 2**32)
    MODEL   tl.constexpr model code from n2n_fast.noise (GAUSSIAN=0, POISSON=1, POISSON_GAUSSIAN=2, BERNOULLI=3,
            IMPULSE=4)
    a_low, a_high, b_low, b_high  float32 parameter ranges from `noise.parameter_ranges()` (scalar models:
                                  low == high).
            a = sigma | peak | peak | p | p; b = PoissonGaussian's sigma (else unused)
    LEAN    optional tl.constexpr (default False): Poisson models run the rejection loop one copy at a time,
            drawing attempt 0's words again (about half the live registers, more Philox calls): use it when the
            caller holds many values per thread and ptxas reports spills.
    returns y0 (input copy), y1 (target copy) float32 blocks, keep1: bool block, the target's Bernoulli keep
            decision of the element's pixel (all True for other models).

    y, keep = noisy_copy_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high, COPY)

    One copy (COPY 0 or 1, tl.constexpr), bit for bit the value noisy_pair_values gives that copy, computing only
    it: the fused loss needs only the target. For Poisson models this halves the rejection sampler's live state
    and work (one copy's attempts, not the slower of two); keep is that copy's Bernoulli decision.

Counter layout and draw purposes: n2n_fast/noise.py (documented there only). The arithmetic mirrors
n2n_fast/reference/noise.py operation for operation; divisions use div_rn so they round like PyTorch and C++.
"""
import triton
import triton.language as tl

from . import constants as K
from .constants import DIGEST  # read by name in draw(): keys Triton's cache on K's values (constants.py)

@triton.jit
def draw(seed, pos, sample, step, purpose):
    """Philox4x32-10 words (uint32 blocks shaped like pos) for counter (pos, sample lo, step, purpose | sample hi
    << 8); pos, sample int64 (scalar or block), purpose int."""
    tl.static_assert(DIGEST != "", "constants.DIGEST")  # no code: puts the constants' digest in every cache key
    zero = pos.to(tl.uint32) * 0
    c1 = zero + (sample & 0xFFFFFFFF).to(tl.uint32)
    c2 = (zero.to(tl.int64) + step).to(tl.uint32)  # via a tensor: step may arrive as a constexpr (1); no
    # tl.to_tensor, which triton 3.6 (still common on GPU machines) lacks
    c3 = zero + (((sample >> 32) << 8) | purpose).to(tl.uint32)  # tensor first: constexpr | tensor stays constexpr
    return tl.philox(seed, pos.to(tl.uint32), c1, c2, c3)


@triton.jit
def uniform(word):
    """u(w) = (w >> 8) * 2**-24 in [0, 1), exact in float32."""
    return (word >> 8).to(tl.float32) * K.U24


@triton.jit
def log_positive(x):
    """log of positive normal float32 values: the float32 operations of csrc/noise.h and the reference."""
    bits = x.to(tl.uint32, bitcast=True)
    e = (bits >> 23).to(tl.int32) - 126
    m = ((bits & 0x007FFFFF) | 0x3F000000).to(tl.float32, bitcast=True)
    low = m < 0.707106769
    e = tl.where(low, e - 1, e)
    f = tl.where(low, m + m - 1.0, m - 1.0)
    z = f * f
    p = 0.0703768358 * f - 0.115146101
    p = p * f + 0.116769984
    p = p * f - 0.12420141
    p = p * f + 0.142493233
    p = p * f - 0.166680574
    p = p * f + 0.200007141
    p = p * f - 0.24999994
    p = p * f + 0.333333313
    fe = e.to(tl.float32)
    y = p * f * z + fe * -0.000212194442
    y = y - 0.5 * z
    return (f + y) + fe * 0.693359375


@triton.jit
def sincos_small(t):
    """(sin t, cos t) for 0 <= t < 8: the float32 operations of csrc/noise.h (no libdevice slow path for huge
    arguments, whose local-memory table cost registers and a stack frame). A deliberate twin of the reference's
    sincos_small: the same operations everywhere give the same noise bit for bit."""
    j = (t * 1.27323949).to(tl.int32)
    j = j + (j & 1)
    jf = j.to(tl.float32)
    x = ((t - jf * 0.78515625) - jf * 0.000241875648) - jf * 3.77489506e-08
    z = x * x
    s = ((-0.000195152956 * z + 0.00833216123) * z - 0.166666552) * z * x + x
    c = ((2.44331568e-05 * z - 0.00138873165) * z + 0.0416666456) * z * z - 0.5 * z + 1.0
    q = (j >> 1) & 3
    sin_t = tl.where((q & 1) != 0, c, s)
    cos_t = tl.where((q & 1) != 0, s, c)
    return tl.where((q & 2) != 0, -sin_t, sin_t), tl.where(((q + 1) & 2) != 0, -cos_t, cos_t)


@triton.jit
def box_muller(w0, w1):
    """(r cos(2 pi u1), r sin(2 pi u1)), r = sqrt(-2 log(1 - u0))."""
    r = tl.sqrt_rn(-2.0 * log_positive(1.0 - uniform(w0)))
    sin, cos = sincos_small(uniform(w1) * K.TWO_PI)
    return r * cos, r * sin


@triton.jit
def levels(seed, step, sample, a_low, a_high, b_low, b_high):
    """Per-sample, per-copy parameters (a0, a1, b0, b1) drawn uniformly in [low, high], shaped like sample."""
    w0, w1, w2, w3 = draw(seed, sample * 0, sample, step, K.PURPOSE_LEVEL)
    a_span = a_high - a_low
    b_span = b_high - b_low
    return (a_low + a_span * uniform(w0), a_low + a_span * uniform(w1),
            b_low + b_span * uniform(w2), b_low + b_span * uniform(w3))


@triton.jit
def log_pmf(k, lam):
    """log P(K = k), K ~ Poisson(lam): exact log k! below 9, rearranged Stirling above (reference/noise.py)."""
    fact = tl.full(k.shape, 1.0, tl.float32)
    for i in tl.static_range(2, 9):
        fact = tl.where(k >= i, fact * i, fact)
    small = -lam + k * tl.log(lam) - tl.log(fact)
    x = tl.maximum(k + 1.0, 10.0)
    inv = tl.div_rn(tl.full(k.shape, 1.0, tl.float32), x)
    inv2 = inv * inv
    corr = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0)))
    big = (x - lam) + k * tl.log(tl.div_rn(lam, x)) - 0.5 * tl.log(x) - K.HALF_LOG_2PI - corr
    return tl.where(k < 9.0, small, big)


@triton.jit
def ptrs_attempt(lam, u, v):
    """One attempt of Hoermann's PTRS (lam >= 10): (candidate k clamped at 0, accepted)."""
    slam = tl.sqrt_rn(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + tl.div_rn(tl.full(lam.shape, 1.1328, tl.float32), b - 3.4)
    v_r = 0.9277 - tl.div_rn(tl.full(lam.shape, 3.6224, tl.float32), b - 2.0)
    us_u = u - 0.5
    us = 0.5 - tl.abs(us_u)
    k = tl.floor((tl.div_rn(2.0 * a, us) + b) * us_u + lam + 0.43)
    squeeze = (us >= 0.07) & (v <= v_r)
    reject = (k < 0.0) | (us == 0.0) | ((us < 0.013) & (v > us))
    kc = tl.maximum(k, 0.0)
    lhs = tl.log(tl.div_rn(v * inv_alpha, tl.div_rn(a, us * us) + b))
    rhs = log_pmf(kc, lam)
    return kc, squeeze | ((~reject) & (lhs <= rhs))


@triton.jit
def poisson_inversion(lam, u):
    """Smallest k with u < F(k) by sequential search (lam < 10; other lanes pass lam = 0 and return 0)."""
    k = tl.zeros(lam.shape, tl.float32)
    p = tl.exp(-lam)
    cdf = p
    more = (u > cdf) & (k < K.POISSON_MAX_TERMS)
    while tl.max(more.to(tl.int32)) > 0:
        k = tl.where(more, k + 1.0, k)
        p = tl.where(more, p * tl.div_rn(lam, tl.maximum(k, 1.0)), p)  # idle lanes (k = 0) would divide by 0
        cdf = tl.where(more, cdf + p, cdf)
        more = (u > cdf) & (k < K.POISSON_MAX_TERMS)
    return k


@triton.jit
def ptrs_loop(k, pending, lam, seed, pos, sample, step, COPY: tl.constexpr):
    """PTRS attempts for one copy's pending lanes (words 2 COPY, 2 COPY + 1 of each attempt's draw)."""
    attempt = 0
    while tl.max(pending.to(tl.int32)) > 0:
        r0, r1, r2, r3 = draw(seed, pos, sample, step, K.PURPOSE_POISSON + attempt)
        if COPY == 0:
            cand, ok = ptrs_attempt(lam, uniform(r0), uniform(r1))
        else:
            cand, ok = ptrs_attempt(lam, uniform(r2), uniform(r3))
        take = pending & (ok | (attempt == K.POISSON_MAX_ATTEMPTS - 1))
        k = tl.where(take, cand, k)
        pending = pending & (~take)
        lam = tl.where(pending, lam, K.POISSON_SMALL)  # loop-variant: see poisson_pair
        attempt += 1
    return k


@triton.jit
def poisson_pair(lam0, lam1, seed, pos, sample, step, LEAN: tl.constexpr):
    """Poisson counts (float32) for both copies: inversion / PTRS / normal approximation by mean (noise.py)."""
    r0, r1, r2, r3 = draw(seed, pos, sample, step, K.PURPOSE_POISSON)
    small0 = lam0 < K.POISSON_SMALL
    small1 = lam1 < K.POISSON_SMALL
    normal0 = lam0 > K.POISSON_NORMAL
    normal1 = lam1 > K.POISSON_NORMAL
    k0 = poisson_inversion(tl.where(small0, lam0, 0.0), uniform(r0))
    k1 = poisson_inversion(tl.where(small1, lam1, 0.0), uniform(r2))
    z0, _s0 = box_muller(r0, r1)
    z1, _s1 = box_muller(r2, r3)
    k0 = tl.where(normal0, tl.maximum(tl.floor(lam0 + tl.sqrt_rn(lam0) * z0 + 0.5), 0.0), k0)
    k1 = tl.where(normal1, tl.maximum(tl.floor(lam1 + tl.sqrt_rn(lam1) * z1 + 0.5), 0.0), k1)
    pending0 = (~small0) & (~normal0)
    pending1 = (~small1) & (~normal1)
    lam_p0 = tl.where(pending0, lam0, K.POISSON_SMALL)
    lam_p1 = tl.where(pending1, lam1, K.POISSON_SMALL)
    if LEAN:  # one copy at a time: half the live values, one more Philox call per attempt
        k0 = ptrs_loop(k0, pending0, lam_p0, seed, pos, sample, step, 0)
        k1 = ptrs_loop(k1, pending1, lam_p1, seed, pos, sample, step, 1)
    else:
        attempt = 0
        while tl.max((pending0 | pending1).to(tl.int32)) > 0:
            # Each attempt has its own counter, so every implementation replays the same attempts.
            if attempt > 0:
                r0, r1, r2, r3 = draw(seed, pos, sample, step, K.PURPOSE_POISSON + attempt)
            last = attempt == K.POISSON_MAX_ATTEMPTS - 1
            cand0, ok0 = ptrs_attempt(lam_p0, uniform(r0), uniform(r1))
            cand1, ok1 = ptrs_attempt(lam_p1, uniform(r2), uniform(r3))
            take0 = pending0 & (ok0 | last)
            take1 = pending1 & (ok1 | last)
            k0 = tl.where(take0, cand0, k0)
            k1 = tl.where(take1, cand1, k1)
            pending0 = pending0 & (~take0)
            pending1 = pending1 & (~take1)
            # Finished lanes park at lam = 10: lam becomes loop-variant, so the compiler recomputes the PTRS
            # constants per attempt instead of hoisting a dozen of them per element out of the loop (that spilled).
            lam_p0 = tl.where(pending0, lam_p0, K.POISSON_SMALL)
            lam_p1 = tl.where(pending1, lam_p1, K.POISSON_SMALL)
            attempt += 1
    return k0, k1


@triton.jit
def poisson_one(lam, seed, pos, sample, step, COPY: tl.constexpr):
    """Poisson counts (float32) for one copy: poisson_pair's values for that copy, from the same words and
    attempts (attempt 0's words are drawn again by ptrs_loop, as LEAN does)."""
    r0, r1, r2, r3 = draw(seed, pos, sample, step, K.PURPOSE_POISSON)
    if COPY == 0:
        w_a, w_b = r0, r1
    else:
        w_a, w_b = r2, r3
    small = lam < K.POISSON_SMALL
    normal = lam > K.POISSON_NORMAL
    k = poisson_inversion(tl.where(small, lam, 0.0), uniform(w_a))
    z, _s = box_muller(w_a, w_b)
    k = tl.where(normal, tl.maximum(tl.floor(lam + tl.sqrt_rn(lam) * z + 0.5), 0.0), k)
    pending = (~small) & (~normal)
    return ptrs_loop(k, pending, tl.where(pending, lam, K.POISSON_SMALL), seed, pos, sample, step, COPY)


@triton.jit
def noisy_copy_values(x, pos, sample, pixels, seed, step, MODEL: tl.constexpr, a_low, a_high, b_low, b_high,
                      COPY: tl.constexpr):
    """(y, keep) of copy COPY for clean float32 values x: noisy_pair_values' arithmetic for one copy (a
    deliberate twin of its per-model branches, each selecting that copy's words; tests compare them bit for bit)."""
    a0, a1, b0, b1 = levels(seed, step, sample, a_low, a_high, b_low, b_high)
    if COPY == 0:
        a, b = a0, b0
    else:
        a, b = a1, b1
    keep = x == x  # all True (inputs are finite)
    if MODEL == K.GAUSSIAN:
        w0, w1, _w2, _w3 = draw(seed, pos, sample, step, K.PURPOSE_MAIN)
        z0, z1 = box_muller(w0, w1)
        y = x + a * (z0 if COPY == 0 else z1)
    elif MODEL == K.POISSON or MODEL == K.POISSON_GAUSSIAN:
        k = poisson_one(a * tl.maximum(x, 0.0), seed, pos, sample, step, COPY)
        y = tl.div_rn(k, a + x * 0.0)
        if MODEL == K.POISSON_GAUSSIAN:
            w0, w1, _w2, _w3 = draw(seed, pos, sample, step, K.PURPOSE_MAIN)
            z0, z1 = box_muller(w0, w1)
            y = y + b * (z0 if COPY == 0 else z1)
    else:
        pixels_u32 = (pos * 0 + pixels).to(tl.uint32)  # block-shaped, as pixels may be a constexpr
        pixel = (pos.to(tl.uint32) % pixels_u32).to(tl.int64)
        _p0, _p1, d0, d1 = draw(seed, pixel, sample, step, K.PURPOSE_MAIN)
        u = uniform(d0 if COPY == 0 else d1)
        if MODEL == K.BERNOULLI:
            keep = u >= a
            y = tl.where(keep, x, 0.0)
        else:
            tl.static_assert(MODEL == K.IMPULSE, "unknown noise model code")
            c0, c1, _c2, _c3 = draw(seed, pos, sample, step, K.PURPOSE_COLOUR)
            y = tl.where(u < a, uniform(c0 if COPY == 0 else c1), x)
    return y, keep


@triton.jit
def noisy_pair_values(x, pos, sample, pixels, seed, step, MODEL: tl.constexpr, a_low, a_high, b_low, b_high,
                      LEAN: tl.constexpr = False):
    """(y0, y1, keep1) for clean float32 values x; see the module docstring for every argument."""
    a0, a1, b0, b1 = levels(seed, step, sample, a_low, a_high, b_low, b_high)
    keep1 = x == x  # all True (inputs are finite)
    if MODEL == K.GAUSSIAN:
        w0, w1, _w2, _w3 = draw(seed, pos, sample, step, K.PURPOSE_MAIN)
        z0, z1 = box_muller(w0, w1)
        y0 = x + a0 * z0
        y1 = x + a1 * z1
    elif MODEL == K.POISSON or MODEL == K.POISSON_GAUSSIAN:
        xp = tl.maximum(x, 0.0)
        k0, k1 = poisson_pair(a0 * xp, a1 * xp, seed, pos, sample, step, LEAN)
        y0 = tl.div_rn(k0, a0 + x * 0.0)
        y1 = tl.div_rn(k1, a1 + x * 0.0)
        if MODEL == K.POISSON_GAUSSIAN:
            w0, w1, _w2, _w3 = draw(seed, pos, sample, step, K.PURPOSE_MAIN)
            z0, z1 = box_muller(w0, w1)
            y0 = y0 + b0 * z0
            y1 = y1 + b1 * z1
    else:
        pixels_u32 = (pos * 0 + pixels).to(tl.uint32)  # block-shaped, as pixels may be a constexpr
        pixel = (pos.to(tl.uint32) % pixels_u32).to(tl.int64)  # 32-bit: a sample has < 2**32 elements
        _p0, _p1, d0, d1 = draw(seed, pixel, sample, step, K.PURPOSE_MAIN)
        u0 = uniform(d0)
        u1 = uniform(d1)
        if MODEL == K.BERNOULLI:
            keep0 = u0 >= a0
            keep1 = u1 >= a1
            y0 = tl.where(keep0, x, 0.0)
            y1 = tl.where(keep1, x, 0.0)
        else:
            tl.static_assert(MODEL == K.IMPULSE, "unknown noise model code")
            c0, c1, _c2, _c3 = draw(seed, pos, sample, step, K.PURPOSE_COLOUR)
            y0 = tl.where(u0 < a0, uniform(c0), x)
            y1 = tl.where(u1 < a1, uniform(c1), x)
    return y0, y1, keep1
