// CPU kernels of tile_gather / tile_blend: loops calling the shared functions of tiling.h (gather_offset,
// axis_weight, blend_row). gather: parallel over (tile, channel, tile row); blend: over output rows (image,
// channel, band row). No two work items write the same output element.
// Threads: at::parallel_for runs on torch's intra-op pool (OpenMP in torch's builds, this file is compiled with
// -fopenmp against the same libgomp), so torch.set_num_threads(n) sets the threads of the network and of these
// kernels alike; denoise calls them between model calls, never inside one, so the two never compete for cores.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "tiling.h"
#include "tiling_checks.h"

namespace n2n_fast {

namespace {

template <typename InT, typename OutT>
void gather_loop(const GatherArgs& a, const InT* in, OutT* out, int64_t K) {
  const float scale = UnitScale<InT>::value;
  at::parallel_for(0, K * a.C * a.th, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ty = row % a.th, c = (row / a.th) % a.C, k = row / (a.th * a.C);
      OutT* dst = out + row * a.tw;
      for (int64_t tx = 0; tx < a.tw; ++tx) {
        dst[tx] = static_cast<OutT>(static_cast<float>(in[gather_offset(a, k, c, ty, tx)]) * scale);
      }
    }
  });
}

// Per-tile normalised axis weights (K, length) from the shared axis_weight.
void axis_weights(const int64_t* index, int64_t column, const int64_t* origins, int64_t count, int64_t length,
                  int64_t ramp, int64_t mode, float* dst, int64_t K) {
  at::parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t i = index[3 * k + column];
      for (int64_t t = 0; t < length; ++t)
        dst[k * length + t] = axis_weight(origins[i] + t, i, origins, count, length, ramp, mode);
    }
  });
}

// One work item per output row (image, channel, band row): each output element is written by one item, so the
// result never depends on scheduling. Rows no tile touches cost a scan of the K corners.
template <typename TileT>
void blend_loop(const BlendArgs& a, const TileT* tiles, float* out, int64_t n_out) {
  const int64_t first = a.row0 > 0 ? a.row0 : 0;
  const int64_t last = a.row0 + a.band_rows < a.height ? a.row0 + a.band_rows : a.height;
  if (last <= first) return;
  const int64_t rows = last - first;
  // at least ~32k output elements per chunk: smaller chunks cost more in thread wake-ups than they save
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, a.width));
  at::parallel_for(0, n_out * a.C * rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t y = first + item % rows, c = (item / rows) % a.C, n = item / (rows * a.C);
      blend_row(a, tiles, out, n, c, y);
    }
  });
}

}  // namespace

at::Tensor tile_gather_cpu(const at::Tensor& image, const at::Tensor& index, const at::Tensor& row_origins,
                           const at::Tensor& col_origins, int64_t tile_h, int64_t tile_w, int64_t height,
                           int64_t row0, at::ScalarType dtype) {
  check_gather(image, index, row_origins, col_origins, tile_h, tile_w, height, row0);
  const TileIndex t = contiguous_index(index, row_origins, col_origins);
  const int64_t K = t.index.size(0);
  at::Tensor out = at::empty({K, image.size(1), tile_h, tile_w}, image.options().dtype(dtype));
  if (out.numel() == 0) return out;
  const GatherArgs a = gather_args(t, image, tile_h, tile_w, height, row0);
  dispatch_image_dtype("tile_gather", image.scalar_type(), [&](auto in_tag) {
    using InT = decltype(in_tag);
    dispatch_tile_dtype("tile_gather: dtype", dtype, [&](auto out_tag) {
      using OutT = decltype(out_tag);
      gather_loop(a, image.data_ptr<InT>(), out.data_ptr<OutT>(), K);
    });
  });
  return out;
}

void tile_blend_cpu(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& row_origins,
                    const at::Tensor& col_origins, int64_t height, int64_t width, int64_t row0, int64_t overlap,
                    int64_t mode) {
  tile_blend_host(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, mode,
                  [](auto... weight_args) { axis_weights(weight_args...); },
                  [](const BlendArgs& a, const auto* tiles_ptr, float* out_ptr, int64_t images) {
                    blend_loop(a, tiles_ptr, out_ptr, images);
                  });
}

TORCH_LIBRARY_IMPL(n2n_fast, CPU, m) {
  m.impl("tile_gather", &tile_gather_cpu);
  m.impl("tile_blend", &tile_blend_cpu);
}

}  // namespace n2n_fast
