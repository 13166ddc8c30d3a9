// Per-element noise of the noisy pair as N2N_HD inline functions: the C++ twin of n2n_fast/triton/noise_models.py
// and n2n_fast/reference/noise.py, operation for operation in float32 (so uniforms agree bit for bit and
// transcendentals to an ulp). The counter layout and draw purposes are documented once, in n2n_fast/noise.py.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "philox.h"

// Hot per-element helpers are forced inline on the host: GCC otherwise keeps log/sincos as calls inside the CPU
// kernel's loops, which then do not vectorise.
#if defined(__CUDACC__) || !defined(__GNUC__)
#define N2N_HOT N2N_HD
#else
#define N2N_HOT inline __attribute__((always_inline))
#endif

namespace n2n_fast {
namespace noise {

enum Model : int64_t { kGaussian = 0, kPoisson = 1, kPoissonGaussian = 2, kBernoulli = 3, kImpulse = 4 };
constexpr uint32_t kPurposeMain = 0, kPurposeLevel = 1, kPurposeColour = 2, kPurposePoisson = 8;
constexpr int kPoissonMaxAttempts = 64, kPoissonMaxTerms = 64;
constexpr float kPoissonSmall = 10.0f, kPoissonNormal = 1000.0f;
constexpr float kU24 = 5.9604644775390625e-08f;  // 2^-24
constexpr float kTwoPi = 6.283185307179586f;
constexpr float kHalfLog2Pi = 0.9189385332046727f;

struct Params {  // float32 parameter ranges: a = sigma | peak | p, b = PoissonGaussian's sigma
  float a_low, a_high, b_low, b_high;
};
struct Levels {  // per-sample, per-copy parameters
  float a0, a1, b0, b1;
};
struct Pair {
  float y0, y1;
};

N2N_HOT Philox4 draw(uint64_t seed, uint32_t pos, uint64_t sample, uint32_t step, uint32_t purpose) {
  return philox4x32_10(seed, pos, static_cast<uint32_t>(sample), step,
                       purpose | static_cast<uint32_t>((sample >> 32) << 8));
}

N2N_HOT float uniform(uint32_t word) { return static_cast<float>(word >> 8) * kU24; }  // exact

N2N_HOT float as_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
N2N_HOT uint32_t as_bits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

// log of a positive normal float in branch-free arithmetic (so loops of it vectorise on the CPU), within about
// one ulp: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(1 + f) by Cephes' minimax polynomial (Moshier), e log 2 in
// two parts. The reference and the Triton helpers evaluate the same operations with the same float32 constants
// (written with 9 significant digits, which name one float32 exactly), so Box-Muller agrees bit for bit on the
// CPU (on a GPU up to the rounding of contracted multiply-adds).
N2N_HOT float log_positive(float x) {
  const uint32_t bits = as_bits(x);
  const float m = as_float((bits & 0x007fffffu) | 0x3f000000u);  // [0.5, 1)
  const bool low = m < 0.707106769f;
  const int e = static_cast<int>(bits >> 23) - 126 - static_cast<int>(low);
  const float f = (m + (low ? m : 0.0f)) - 1.0f;  // a select of values, not of sums: GCC vectorises it
  const float z = f * f;
  float p = 0.0703768358f;
  p = p * f - 0.115146101f;
  p = p * f + 0.116769984f;
  p = p * f - 0.12420141f;
  p = p * f + 0.142493233f;
  p = p * f - 0.166680574f;
  p = p * f + 0.200007141f;
  p = p * f - 0.24999994f;
  p = p * f + 0.333333313f;
  const float fe = static_cast<float>(e);
  float y = p * f * z + fe * -0.000212194442f;
  y = y - 0.5f * z;
  return (f + y) + fe * 0.693359375f;
}

// (sin t, cos t) for 0 <= t < 8, branch-free, within about one ulp: t - j pi/4 reduced with pi/4 split in three
// parts (exact products for small j), Cephes' minimax polynomials on [-pi/4, pi/4], quadrant by selects.
N2N_HOT Pair sincos_small(float t) {
  int j = static_cast<int>(t * 1.27323949f);  // 4 / pi
  j = j + (j & 1);
  const float jf = static_cast<float>(j);
  const float x = ((t - jf * 0.78515625f) - jf * 0.000241875648f) - jf * 3.77489506e-08f;
  const float z = x * x;
  const float s = ((-0.000195152956f * z + 0.00833216123f) * z - 0.166666552f) * z * x + x;
  const float c = ((2.44331568e-05f * z - 0.00138873165f) * z + 0.0416666456f) * z * z -
                  0.5f * z + 1.0f;
  const int q = (j >> 1) & 3;
  const float sin_t = (q & 1) ? c : s;
  const float cos_t = (q & 1) ? s : c;
  return {(q & 2) ? -sin_t : sin_t, ((q + 1) & 2) ? -cos_t : cos_t};
}

N2N_HOT Pair box_muller_uniform(float u0, float u1) {
  const float r = sqrtf(-2.0f * log_positive(1.0f - u0));
  const Pair sc = sincos_small(u1 * kTwoPi);
  return {r * sc.y1, r * sc.y0};
}

N2N_HD Pair box_muller(uint32_t w0, uint32_t w1) { return box_muller_uniform(uniform(w0), uniform(w1)); }

N2N_HD Levels levels(uint64_t seed, uint32_t step, uint64_t sample, const Params& p) {
  const Philox4 w = draw(seed, 0u, sample, step, kPurposeLevel);
  const float a_span = p.a_high - p.a_low, b_span = p.b_high - p.b_low;
  return {p.a_low + a_span * uniform(w.v[0]), p.a_low + a_span * uniform(w.v[1]),
          p.b_low + b_span * uniform(w.v[2]), p.b_low + b_span * uniform(w.v[3])};
}

// log P(K = k), K ~ Poisson(lam): exact log k! below 9; above, Stirling rearranged to avoid cancellation.
N2N_HD float log_pmf(float k, float lam) {
  if (k < 9.0f) {
    float fact = 1.0f;
    for (int i = 2; i < 9; ++i) fact = k >= static_cast<float>(i) ? fact * static_cast<float>(i) : fact;
    return -lam + k * logf(lam) - logf(fact);
  }
  const float x = k + 1.0f;
  const float inv = 1.0f / x;
  const float inv2 = inv * inv;
  const float corr = inv * (1.0f / 12.0f - inv2 * (1.0f / 360.0f - inv2 * (1.0f / 1260.0f)));
  return (x - lam) + k * logf(lam / x) - 0.5f * logf(x) - kHalfLog2Pi - corr;
}

// One attempt of Hoermann's PTRS (lam >= 10): returns the candidate (clamped at 0), sets *ok when accepted.
N2N_HD float ptrs_attempt(float lam, float u, float v, bool* ok) {
  const float slam = sqrtf(lam);
  const float b = 0.931f + 2.53f * slam;
  const float a = -0.059f + 0.02483f * b;
  const float inv_alpha = 1.1239f + 1.1328f / (b - 3.4f);
  const float v_r = 0.9277f - 3.6224f / (b - 2.0f);
  const float us_u = u - 0.5f;
  const float us = 0.5f - fabsf(us_u);
  const float k = floorf((2.0f * a / us + b) * us_u + lam + 0.43f);
  const bool squeeze = us >= 0.07f && v <= v_r;
  const bool reject = k < 0.0f || us == 0.0f || (us < 0.013f && v > us);
  const float kc = fmaxf(k, 0.0f);
  if (squeeze) {
    *ok = true;
  } else {
    const float lhs = logf(v * inv_alpha / (a / (us * us) + b));
    *ok = !reject && lhs <= log_pmf(kc, lam);
  }
  return kc;
}

// Poisson count for one copy: words (wu, wv) of attempt 0 are passed in, later attempts draw their own counter.
N2N_HD float poisson(float lam, uint32_t wu, uint32_t wv, int copy, uint64_t seed, uint32_t pos, uint64_t sample,
                     uint32_t step) {
  if (lam < kPoissonSmall) {  // sequential-search inversion
    const float u = uniform(wu);
    float k = 0.0f, p = expf(-lam), cdf = p;
    while (u > cdf && k < static_cast<float>(kPoissonMaxTerms)) {
      k = k + 1.0f;
      p = p * (lam / k);
      cdf = cdf + p;
    }
    return k;
  }
  if (lam > kPoissonNormal) return fmaxf(floorf(lam + sqrtf(lam) * box_muller(wu, wv).y0 + 0.5f), 0.0f);
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      const Philox4 w = draw(seed, pos, sample, step, kPurposePoisson + static_cast<uint32_t>(attempt));
      wu = w.v[2 * copy];
      wv = w.v[2 * copy + 1];
    }
    bool ok = false;
    const float k = ptrs_attempt(lam, uniform(wu), uniform(wv), &ok);
    if (ok || attempt == kPoissonMaxAttempts - 1) return k;
  }
}

// Both copies for clean value x at position pos of sample `sample`. (pu0, pu1): uniforms of words 2, 3 of the MAIN
// draw at the element's pixel (Bernoulli / Impulse decisions), computed once per pixel by the caller. *keep1: the
// target's Bernoulli keep decision.
N2N_HD Pair noisy_pair_value(int64_t model, float x, uint32_t pos, uint64_t sample, uint64_t seed, uint32_t step,
                             const Levels& lv, float pu0, float pu1, bool* keep1) {
  *keep1 = true;
  if (model == kGaussian || model == kPoissonGaussian) {
    const Philox4 w = draw(seed, pos, sample, step, kPurposeMain);
    const Pair z = box_muller(w.v[0], w.v[1]);
    if (model == kGaussian) return {x + lv.a0 * z.y0, x + lv.a1 * z.y1};
    const float xp = fmaxf(x, 0.0f);
    const Philox4 first = draw(seed, pos, sample, step, kPurposePoisson);
    const float k0 = poisson(lv.a0 * xp, first.v[0], first.v[1], 0, seed, pos, sample, step);
    const float k1 = poisson(lv.a1 * xp, first.v[2], first.v[3], 1, seed, pos, sample, step);
    return {k0 / lv.a0 + lv.b0 * z.y0, k1 / lv.a1 + lv.b1 * z.y1};
  }
  if (model == kPoisson) {
    const float xp = fmaxf(x, 0.0f);
    const Philox4 first = draw(seed, pos, sample, step, kPurposePoisson);
    const float k0 = poisson(lv.a0 * xp, first.v[0], first.v[1], 0, seed, pos, sample, step);
    const float k1 = poisson(lv.a1 * xp, first.v[2], first.v[3], 1, seed, pos, sample, step);
    return {k0 / lv.a0, k1 / lv.a1};
  }
  if (model == kBernoulli) {
    *keep1 = pu1 >= lv.a1;
    return {pu0 >= lv.a0 ? x : 0.0f, *keep1 ? x : 0.0f};
  }
  const Philox4 colour = draw(seed, pos, sample, step, kPurposeColour);  // kImpulse
  return {pu0 < lv.a0 ? uniform(colour.v[0]) : x, pu1 < lv.a1 ? uniform(colour.v[1]) : x};
}

}  // namespace noise
}  // namespace n2n_fast
