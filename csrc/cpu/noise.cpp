// The noisy pair on the CPU (what CPU training uses): at::parallel_for over (sample, pixel chunk) tiles; the
// per-element math is csrc/noise.h, shared with nothing else but mirrored by the Triton kernel and the reference.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "noise.h"

namespace n2n_fast {
namespace {

constexpr int64_t kPixelChunk = 512;  // pixels per task: the pixel decisions of a chunk stay in L1

template <typename In>
float load_scaled(const In* src, int64_t i, float scale) {
  if constexpr (std::is_same_v<In, uint8_t> || std::is_same_v<In, uint16_t>) {
    return static_cast<float>(src[i]) * scale;  // the same float32 multiply as the reference and Triton
  } else {
    return static_cast<float>(src[i]);
  }
}

// Gaussian copies of n consecutive elements starting at position pos0. The uniforms go through a small array
// first: that loop is plain integer arithmetic and vectorises (Philox about 10x faster than scalar); Box-Muller
// then reads them back.
template <typename In, typename Out>
void gaussian_run(const In* src, Out* dst0, Out* dst1, int64_t n, uint32_t pos0, uint64_t sample, uint64_t seed,
                  uint32_t step, const noise::Levels& lv, float scale) {
  constexpr int kLanes = 64;
  float u0[kLanes], u1[kLanes], sin_t[kLanes], cos_t[kLanes];
  for (int64_t start = 0; start < n; start += kLanes) {
    const int m = static_cast<int>(std::min<int64_t>(kLanes, n - start));
    const uint32_t first = pos0 + static_cast<uint32_t>(start);
    for (int i = 0; i < m; ++i) {  // GCC vectorises this with a 32-bit counter and float stores (not words)
      const Philox4 w = noise::draw(seed, first + static_cast<uint32_t>(i), sample, step, noise::kPurposeMain);
      u0[i] = noise::uniform(w.v[0]);
      u1[i] = noise::uniform(w.v[1]);
    }
    for (int i = 0; i < m; ++i) {  // vectorised too: branch-free log and sincos (box_muller_uniform's steps)
      u0[i] = -2.0f * noise::log_positive(1.0f - u0[i]);
      const noise::Pair sc = noise::sincos_small(u1[i] * noise::kTwoPi);
      sin_t[i] = sc.y0;
      cos_t[i] = sc.y1;
    }
    for (int i = 0; i < m; ++i) {  // scalar: sqrtf keeps its errno path without -fno-math-errno
      const float r = sqrtf(u0[i]);
      const float x = load_scaled(src, start + i, scale);
      dst0[start + i] = static_cast<Out>(x + lv.a0 * (r * cos_t[i]));
      dst1[start + i] = static_cast<Out>(x + lv.a1 * (r * sin_t[i]));
    }
  }
}

template <typename In, typename Out>
void noisy_pair_kernel(const at::Tensor& clean, at::Tensor& y0, at::Tensor& y1, bool* keep, int64_t model,
                       const noise::Params& params, uint64_t seed, uint32_t step, uint64_t index, float scale) {
  const int64_t batch = clean.size(0), channels = clean.size(1), pixels = clean.size(2) * clean.size(3);
  const int64_t numel = channels * pixels;
  const int64_t chunks = (pixels + kPixelChunk - 1) / kPixelChunk;
  const In* src = clean.data_ptr<In>();
  Out* dst0 = y0.data_ptr<Out>();
  Out* dst1 = y1.data_ptr<Out>();
  const bool pixel_draws = model == noise::kBernoulli || model == noise::kImpulse;
  at::parallel_for(0, batch * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> pixel_u0(kPixelChunk), pixel_u1(kPixelChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t row = task / chunks;
      const int64_t first = (task % chunks) * kPixelChunk;
      const int64_t count = std::min(kPixelChunk, pixels - first);
      const uint64_t sample = index + static_cast<uint64_t>(row);
      const noise::Levels lv = noise::levels(seed, step, sample, params);
      if (pixel_draws) {  // vectorised like gaussian_run's draws
        const int n = static_cast<int>(count);
        const uint32_t pos0 = static_cast<uint32_t>(first);
        float* pu0 = pixel_u0.data();
        float* pu1 = pixel_u1.data();
        for (int p = 0; p < n; ++p) {
          const Philox4 w = noise::draw(seed, pos0 + static_cast<uint32_t>(p), sample, step, noise::kPurposeMain);
          pu0[p] = noise::uniform(w.v[2]);
          pu1[p] = noise::uniform(w.v[3]);
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t base = row * numel + c * pixels + first;
        if (model == noise::kGaussian) {
          gaussian_run(src + base, dst0 + base, dst1 + base, count, static_cast<uint32_t>(c * pixels + first), sample,
                       seed, step, lv, scale);
          continue;
        }
        for (int64_t p = 0; p < count; ++p) {
          bool keep1 = true;
          const uint32_t pos = static_cast<uint32_t>(c * pixels + first + p);
          const noise::Pair y = noise::noisy_pair_value(model, load_scaled(src, base + p, scale), pos, sample, seed,
                                                        step, lv, pixel_u0[p], pixel_u1[p], &keep1);
          dst0[base + p] = static_cast<Out>(y.y0);
          dst1[base + p] = static_cast<Out>(y.y1);
          if (keep != nullptr && c == 0) keep[row * pixels + first + p] = keep1;
        }
      }
    }
  });
}

template <typename In>
void dispatch_out(const at::Tensor& clean, at::Tensor& y0, at::Tensor& y1, bool* keep, int64_t model,
                  const noise::Params& params, uint64_t seed, uint32_t step, uint64_t index, float scale) {
  switch (y0.scalar_type()) {
    case at::kFloat: return noisy_pair_kernel<In, float>(clean, y0, y1, keep, model, params, seed, step, index, scale);
    case at::kBFloat16:
      return noisy_pair_kernel<In, at::BFloat16>(clean, y0, y1, keep, model, params, seed, step, index, scale);
    case at::kHalf: return noisy_pair_kernel<In, at::Half>(clean, y0, y1, keep, model, params, seed, step, index, scale);
    default: TORCH_CHECK(false, "noisy_pair: out_dtype must be float32, bfloat16 or float16, got ", y0.scalar_type());
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> noisy_pair_cpu(const at::Tensor& clean, int64_t model,
                                                              at::ArrayRef<double> params, int64_t seed,
                                                              int64_t step, int64_t index, at::ScalarType out_dtype) {
  TORCH_CHECK(clean.dim() == 4, "noisy_pair: clean must be (B, C, H, W), got ", clean.sizes());
  TORCH_CHECK(model >= noise::kGaussian && model <= noise::kImpulse, "noisy_pair: unknown model code ", model);
  TORCH_CHECK(params.size() == 4, "noisy_pair: params must be (a_low, a_high, b_low, b_high)");
  TORCH_CHECK(step >= 0 && step < (int64_t{1} << 32), "noisy_pair: step must be in [0, 2^32), got ", step);
  TORCH_CHECK(index >= 0 && index + clean.size(0) <= (int64_t{1} << 56), "noisy_pair: index out of range");
  TORCH_CHECK(clean.numel() == 0 || clean[0].numel() < (int64_t{1} << 32), "noisy_pair: sample too large");
  const at::Tensor in = clean.contiguous();
  at::Tensor y0 = at::empty(in.sizes(), in.options().dtype(out_dtype));
  at::Tensor y1 = at::empty(in.sizes(), in.options().dtype(out_dtype));
  const bool bernoulli = model == noise::kBernoulli;
  at::Tensor keep = bernoulli ? at::empty({in.size(0), 1, in.size(2), in.size(3)}, in.options().dtype(at::kBool))
                              : at::empty({0}, in.options().dtype(at::kBool));
  if (in.numel() == 0) return {y0, y1, keep};
  const noise::Params p{static_cast<float>(params[0]), static_cast<float>(params[1]), static_cast<float>(params[2]),
                        static_cast<float>(params[3])};
  bool* keep_ptr = bernoulli ? keep.data_ptr<bool>() : nullptr;
  const auto useed = static_cast<uint64_t>(seed);
  const auto ustep = static_cast<uint32_t>(step);
  const auto uindex = static_cast<uint64_t>(index);
  switch (in.scalar_type()) {
    case at::kFloat: dispatch_out<float>(in, y0, y1, keep_ptr, model, p, useed, ustep, uindex, 1.0f); break;
    case at::kBFloat16: dispatch_out<at::BFloat16>(in, y0, y1, keep_ptr, model, p, useed, ustep, uindex, 1.0f); break;
    case at::kHalf: dispatch_out<at::Half>(in, y0, y1, keep_ptr, model, p, useed, ustep, uindex, 1.0f); break;
    case at::kByte:
      dispatch_out<uint8_t>(in, y0, y1, keep_ptr, model, p, useed, ustep, uindex, static_cast<float>(1.0 / 255.0));
      break;
    case at::kUInt16:
      dispatch_out<uint16_t>(in, y0, y1, keep_ptr, model, p, useed, ustep, uindex, static_cast<float>(1.0 / 65535.0));
      break;
    default: TORCH_CHECK(false, "noisy_pair: clean must be float32/bfloat16/float16/uint8/uint16, got ",
                         in.scalar_type());
  }
  return {y0, y1, keep};
}

TORCH_LIBRARY_IMPL(n2n_fast, CPU, m) { m.impl("noisy_pair", &noisy_pair_cpu); }

}  // namespace n2n_fast
