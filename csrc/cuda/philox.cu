#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>

#include "philox.h"

namespace n2n_fast {

__global__ void philox_kernel(const uint4* __restrict__ in, uint4* __restrict__ out, int64_t n, uint64_t seed) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint4 c = in[i];  // one 128-bit load per counter
  const Philox4 r = philox4x32_10(seed, c.x, c.y, c.z, c.w);
  out[i] = make_uint4(r.v[0], r.v[1], r.v[2], r.v[3]);
}

at::Tensor philox_cuda(const at::Tensor& counters, int64_t seed) {
  TORCH_CHECK(counters.scalar_type() == at::kInt, "philox: counters must be int32, got ", counters.scalar_type());
  TORCH_CHECK(counters.dim() >= 1 && counters.size(-1) == 4, "philox: counters must have last dimension 4");
  const c10::cuda::CUDAGuard guard(counters.device());
  at::Tensor in = counters.contiguous();
  // The kernel reads each counter as one uint4, which needs 16-byte alignment; a contiguous view with a storage
  // offset (a slice of a flat buffer) may not have it. A fresh copy does (the caching allocator aligns to 512 B).
  if (reinterpret_cast<std::uintptr_t>(in.data_ptr()) % alignof(uint4) != 0) in = in.clone();
  at::Tensor out = at::empty_like(in);
  const int64_t n = in.numel() / 4;
  if (n == 0) return out;
  constexpr int kThreads = 256;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  philox_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      reinterpret_cast<const uint4*>(in.data_ptr<int32_t>()), reinterpret_cast<uint4*>(out.data_ptr<int32_t>()), n,
      static_cast<uint64_t>(seed));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(n2n_fast, CUDA, m) { m.impl("philox", &philox_cuda); }

}  // namespace n2n_fast
