// Launch conventions of the grid-stride element kernels (tiling.cu, tiling3d.cu): 256 threads a block, int64
// element indices, the grid capped so huge inputs loop instead of overflowing the grid.
#pragma once
#include <cstdint>

namespace n2n_fast {

constexpr int kThreads = 256;

inline int64_t blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return blocks < 65535 * 16 ? blocks : 65535 * 16;  // grid-stride loops cover the rest
}

// First element and step of a grid-stride loop: for (i = grid_first(); i < total; i += grid_step()).
__device__ __forceinline__ int64_t grid_first() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace n2n_fast
