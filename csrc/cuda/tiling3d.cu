// CUDA kernels of tile_gather_3d / tile_blend_3d: one thread per tile element (grid-stride, int64 indices, 256
// threads a block: launch.cuh), calling the shared element functions of tiling3d.h. Current stream, launch checks;
// no atomics (see blend3_element: each output voxel is summed by one thread, in tile-index order).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <type_traits>

#include "launch.cuh"
#include "tiling3d.h"
#include "tiling3d_checks.h"

namespace n2n_fast {

namespace {

template <typename InT, typename OutT>
__global__ void gather3_kernel(Gather3Args a, const InT* __restrict__ in, OutT* __restrict__ out, int64_t total) {
  for (int64_t i = grid_first(); i < total; i += grid_step()) {
    const int64_t tx = i % a.tw, ty = (i / a.tw) % a.th, tz = (i / (a.tw * a.th)) % a.td;
    const int64_t c = (i / (a.tw * a.th * a.td)) % a.C, k = i / (a.tw * a.th * a.td * a.C);
    out[i] = gather3_element<InT, OutT>(a, in, k, c, tz, ty, tx);
  }
}

template <typename TileT>
__global__ void blend3_kernel(Blend3Args a, const TileT* __restrict__ tiles, float* out, int64_t total) {
  for (int64_t i = grid_first(); i < total; i += grid_step()) {
    const int64_t tx = i % a.tw, ty = (i / a.tw) % a.th, tz = (i / (a.tw * a.th)) % a.td;
    const int64_t c = (i / (a.tw * a.th * a.td)) % a.C, k = i / (a.tw * a.th * a.td * a.C);
    blend3_element(a, tiles, out, k, c, tz, ty, tx);
  }
}

}  // namespace

at::Tensor tile_gather_3d_cuda(const at::Tensor& volume, const at::Tensor& index, const at::Tensor& z_origins,
                               const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t tile_d,
                               int64_t tile_h, int64_t tile_w, int64_t depth, int64_t plane0, at::ScalarType dtype) {
  const c10::cuda::CUDAGuard guard(volume.device());
  return tile_gather_3d_host(
      volume, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth, plane0, dtype,
      [](const Gather3Args& a, const auto* in, auto* out_ptr, const at::Tensor& out) {
        using InT = std::remove_cv_t<std::remove_pointer_t<decltype(in)>>;
        using OutT = std::remove_pointer_t<decltype(out_ptr)>;
        const int64_t total = out.numel();
        gather3_kernel<InT, OutT><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            a, in, out_ptr, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

void tile_blend_3d_cuda(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& z_origins,
                        const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t depth, int64_t height,
                        int64_t width, int64_t plane0, int64_t overlap_z, int64_t overlap_y, int64_t overlap_x,
                        int64_t blend_mode) {
  const c10::cuda::CUDAGuard guard(out.device());
  tile_blend_3d_host(out, tiles, index, z_origins, y_origins, x_origins, depth, height, width, plane0, overlap_z,
                     overlap_y, overlap_x, blend_mode, [](const Blend3Args& a, const auto* tiles_ptr, float* out_ptr) {
                       using TileT = std::remove_cv_t<std::remove_pointer_t<decltype(tiles_ptr)>>;
                       const int64_t total = a.K * a.C * a.td * a.th * a.tw;
                       blend3_kernel<TileT><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                           a, tiles_ptr, out_ptr, total);
                       C10_CUDA_KERNEL_LAUNCH_CHECK();
                     });
}

TORCH_LIBRARY_IMPL(n2n_fast, CUDA, m) {
  m.impl("tile_gather_3d", &tile_gather_3d_cuda);
  m.impl("tile_blend_3d", &tile_blend_3d_cuda);
}

}  // namespace n2n_fast
