// CUDA kernels of tile_gather / tile_blend: one thread per tile element (grid-stride, int64 indices), calling the
// shared per-element functions of tiling.h. Current stream, launch checks; no atomics (see blend_element).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "launch.cuh"
#include "tiling.h"
#include "tiling_checks.h"

namespace n2n_fast {

namespace {

template <typename InT, typename OutT>
__global__ void gather_kernel(GatherArgs a, const InT* __restrict__ in, OutT* __restrict__ out, int64_t total) {
  const float scale = UnitScale<InT>::value;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tx = i % a.tw, ty = (i / a.tw) % a.th, c = (i / (a.tw * a.th)) % a.C, k = i / (a.tw * a.th * a.C);
    out[i] = static_cast<OutT>(static_cast<float>(in[gather_offset(a, k, c, ty, tx)]) * scale);
  }
}

__global__ void axis_weight_kernel(const int64_t* __restrict__ index, int64_t column, const int64_t* __restrict__ origins,
                                   int64_t count, int64_t length, int64_t ramp, int64_t mode, float* __restrict__ dst,
                                   int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i % length, k = i / length;
    const int64_t tile = index[3 * k + column];
    dst[i] = axis_weight(origins[tile] + t, tile, origins, count, length, ramp, mode);
  }
}

template <typename TileT>
__global__ void blend_kernel(BlendArgs a, const TileT* __restrict__ tiles, float* out, int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tx = i % a.tw, ty = (i / a.tw) % a.th, c = (i / (a.tw * a.th)) % a.C, k = i / (a.tw * a.th * a.C);
    blend_element(a, tiles, out, k, c, ty, tx);
  }
}

template <typename InT, typename OutT>
void launch_gather(const GatherArgs& a, const InT* in, OutT* out, int64_t total) {
  gather_kernel<InT, OutT><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(a, in, out, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename TileT>
void launch_blend(const BlendArgs& a, const TileT* tiles, float* out) {
  const int64_t total = a.K * a.C * a.th * a.tw;
  blend_kernel<TileT><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(a, tiles, out, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void launch_axis_weights(const int64_t* index, int64_t column, const int64_t* origins, int64_t count, int64_t length,
                         int64_t ramp, int64_t mode, float* dst, int64_t K) {
  const int64_t total = K * length;
  axis_weight_kernel<<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      index, column, origins, count, length, ramp, mode, dst, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor tile_gather_cuda(const at::Tensor& image, const at::Tensor& index, const at::Tensor& row_origins,
                            const at::Tensor& col_origins, int64_t tile_h, int64_t tile_w, int64_t height,
                            int64_t row0, at::ScalarType dtype) {
  check_gather(image, index, row_origins, col_origins, tile_h, tile_w, height, row0);
  const c10::cuda::CUDAGuard guard(image.device());
  const TileIndex t = contiguous_index(index, row_origins, col_origins);
  at::Tensor out = at::empty({t.index.size(0), image.size(1), tile_h, tile_w}, image.options().dtype(dtype));
  if (out.numel() == 0) return out;
  const GatherArgs a = gather_args(t, image, tile_h, tile_w, height, row0);
  dispatch_image_dtype("tile_gather", image.scalar_type(), [&](auto in_tag) {
    using InT = decltype(in_tag);
    dispatch_tile_dtype("tile_gather: dtype", dtype, [&](auto out_tag) {
      using OutT = decltype(out_tag);
      launch_gather(a, image.data_ptr<InT>(), out.data_ptr<OutT>(), out.numel());
    });
  });
  return out;
}

void tile_blend_cuda(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& row_origins,
                     const at::Tensor& col_origins, int64_t height, int64_t width, int64_t row0, int64_t overlap,
                     int64_t mode) {
  const c10::cuda::CUDAGuard guard(out.device());
  tile_blend_host(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, mode,
                  [](auto... weight_args) { launch_axis_weights(weight_args...); },
                  [](const BlendArgs& a, const auto* tiles_ptr, float* out_ptr, int64_t) {
                    launch_blend(a, tiles_ptr, out_ptr);
                  });
}

TORCH_LIBRARY_IMPL(n2n_fast, CUDA, m) {
  m.impl("tile_gather", &tile_gather_cuda);
  m.impl("tile_blend", &tile_blend_cuda);
}

}  // namespace n2n_fast
