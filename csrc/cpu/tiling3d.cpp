// CPU kernels of tile_gather_3d / tile_blend_3d: at::parallel_for loops over the shared row functions of tiling3d.h
// (gather3_row, blend3_row). gather: parallel over tile rows (tile, channel, tile plane, tile row); blend: over
// output rows (volume, channel, slab plane, row), each written by one work item, so the result never depends on
// scheduling or the thread count. Threads: torch's intra-op pool, as cpu/tiling.cpp (docs/tiling.md §3).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "tiling3d.h"
#include "tiling3d_checks.h"

namespace n2n_fast {

namespace {

// at least ~32k elements per chunk: smaller chunks cost more in thread wake-ups than they save
int64_t rows_per_chunk(int64_t row_length) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_length)); }

template <typename InT, typename OutT>
void gather3_loop(const Gather3Args& a, const InT* in, OutT* out, int64_t K) {
  at::parallel_for(0, K * a.C * a.td * a.th, rows_per_chunk(a.tw), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ty = row % a.th, tz = (row / a.th) % a.td, c = (row / (a.th * a.td)) % a.C;
      const int64_t k = row / (a.th * a.td * a.C);
      gather3_row(a, in, out + row * a.tw, k, c, tz, ty);
    }
  });
}

// The output rows the tiles can reach: slab planes inside the volume, every row. Rows no tile touches cost a scan
// of the K corners.
template <typename TileT>
void blend3_loop(const Blend3Args& a, const TileT* tiles, float* out, int64_t volumes) {
  const int64_t first = std::max<int64_t>(a.plane0, 0), last = std::min(a.plane0 + a.planes, a.depth);
  if (last <= first) return;
  const int64_t planes = last - first;
  at::parallel_for(0, volumes * a.C * planes * a.height, rows_per_chunk(a.width), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t y = item % a.height, z = first + (item / a.height) % planes;
      const int64_t c = (item / (a.height * planes)) % a.C, n = item / (a.height * planes * a.C);
      blend3_row(a, tiles, out, n, c, z, y);
    }
  });
}

}  // namespace

at::Tensor tile_gather_3d_cpu(const at::Tensor& volume, const at::Tensor& index, const at::Tensor& z_origins,
                              const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t tile_d, int64_t tile_h,
                              int64_t tile_w, int64_t depth, int64_t plane0, at::ScalarType dtype) {
  return tile_gather_3d_host(volume, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth, plane0,
                             dtype, [](const Gather3Args& a, const auto* in, auto* out_ptr, const at::Tensor& out) {
                               gather3_loop(a, in, out_ptr, out.size(0));
                             });
}

void tile_blend_3d_cpu(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& z_origins,
                       const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t depth, int64_t height,
                       int64_t width, int64_t plane0, int64_t overlap_z, int64_t overlap_y, int64_t overlap_x,
                       int64_t blend_mode) {
  tile_blend_3d_host(out, tiles, index, z_origins, y_origins, x_origins, depth, height, width, plane0, overlap_z,
                     overlap_y, overlap_x, blend_mode, [&](const Blend3Args& a, const auto* tiles_ptr, float* out_ptr) {
                       blend3_loop(a, tiles_ptr, out_ptr, out.size(0));
                     });
}

TORCH_LIBRARY_IMPL(n2n_fast, CPU, m) {
  m.impl("tile_gather_3d", &tile_gather_3d_cpu);
  m.impl("tile_blend_3d", &tile_blend_3d_cpu);
}

}  // namespace n2n_fast
