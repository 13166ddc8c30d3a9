#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "philox.h"

namespace n2n_fast {

at::Tensor philox_cpu(const at::Tensor& counters, int64_t seed) {
  TORCH_CHECK(counters.scalar_type() == at::kInt, "philox: counters must be int32, got ", counters.scalar_type());
  TORCH_CHECK(counters.dim() >= 1 && counters.size(-1) == 4, "philox: counters must have last dimension 4");
  const at::Tensor in = counters.contiguous();
  at::Tensor out = at::empty_like(in);
  const auto* src = reinterpret_cast<const uint32_t*>(in.data_ptr<int32_t>());
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  const int64_t n = in.numel() / 4;
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Philox4 r = philox4x32_10(static_cast<uint64_t>(seed), src[4 * i], src[4 * i + 1], src[4 * i + 2],
                                      src[4 * i + 3]);
      for (int k = 0; k < 4; ++k) dst[4 * i + k] = r.v[k];
    }
  });
  return out;
}

TORCH_LIBRARY_IMPL(n2n_fast, CPU, m) { m.impl("philox", &philox_cpu); }

}  // namespace n2n_fast
