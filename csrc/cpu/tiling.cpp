// CPU kernels of tile_gather / tile_blend: loops over tile elements calling the shared per-element functions of
// tiling.h. Parallel over (tile, channel, tile row); no two work items write the same output element.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

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

template <typename InT>
void gather_dispatch_out(const GatherArgs& a, const InT* in, at::Tensor& out, int64_t K) {
  switch (out.scalar_type()) {
    case at::kFloat: return gather_loop(a, in, out.data_ptr<float>(), K);
    case at::kBFloat16: return gather_loop(a, in, out.data_ptr<c10::BFloat16>(), K);
    case at::kHalf: return gather_loop(a, in, out.data_ptr<c10::Half>(), K);
    default: TORCH_CHECK(false, "tile_gather: dtype must be float32, bfloat16 or float16, got ", out.scalar_type());
  }
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

template <typename TileT>
void blend_loop(const BlendArgs& a, const TileT* tiles, float* out) {
  at::parallel_for(0, a.K * a.C * a.th, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ty = row % a.th, c = (row / a.th) % a.C, k = row / (a.th * a.C);
      for (int64_t tx = 0; tx < a.tw; ++tx) blend_element(a, tiles, out, k, c, ty, tx);
    }
  });
}

}  // namespace

at::Tensor tile_gather_cpu(const at::Tensor& image, const at::Tensor& index, const at::Tensor& row_origins,
                           const at::Tensor& col_origins, int64_t tile_h, int64_t tile_w, int64_t height,
                           int64_t row0, at::ScalarType dtype) {
  check_gather(image, index, row_origins, col_origins, tile_h, tile_w, height, row0);
  const at::Tensor idx = index.contiguous(), ro = row_origins.contiguous(), co = col_origins.contiguous();
  const int64_t K = idx.size(0), C = image.size(1);
  at::Tensor out = at::empty({K, C, tile_h, tile_w}, image.options().dtype(dtype));
  if (out.numel() == 0) return out;
  const GatherArgs a{idx.data_ptr<int64_t>(), ro.data_ptr<int64_t>(), co.data_ptr<int64_t>(), C, tile_h, tile_w,
                     height, image.size(3), row0, image.stride(0), image.stride(1), image.stride(2),
                     image.stride(3)};
  switch (image.scalar_type()) {
    case at::kByte: gather_dispatch_out(a, image.data_ptr<uint8_t>(), out, K); break;
    case at::kUInt16: gather_dispatch_out(a, image.data_ptr<uint16_t>(), out, K); break;
    case at::kHalf: gather_dispatch_out(a, image.data_ptr<c10::Half>(), out, K); break;
    case at::kBFloat16: gather_dispatch_out(a, image.data_ptr<c10::BFloat16>(), out, K); break;
    case at::kFloat: gather_dispatch_out(a, image.data_ptr<float>(), out, K); break;
    case at::kDouble: gather_dispatch_out(a, image.data_ptr<double>(), out, K); break;
    default: TORCH_CHECK(false, "tile_gather: unsupported image dtype ", image.scalar_type());
  }
  return out;
}

void tile_blend_cpu(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& row_origins,
                    const at::Tensor& col_origins, int64_t height, int64_t width, int64_t row0, int64_t overlap,
                    int64_t mode) {
  check_blend(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, mode);
  const at::Tensor idx = index.contiguous(), ro = row_origins.contiguous(), co = col_origins.contiguous();
  const at::Tensor t = tiles.contiguous();
  const int64_t K = t.size(0), C = t.size(1), th = t.size(2), tw = t.size(3);
  if (t.numel() == 0 || out.numel() == 0) return;
  at::Tensor wy = at::empty({K, th}, out.options()), wx = at::empty({K, tw}, out.options());
  axis_weights(idx.data_ptr<int64_t>(), 1, ro.data_ptr<int64_t>(), ro.size(0), th, overlap, mode,
               wy.data_ptr<float>(), K);
  axis_weights(idx.data_ptr<int64_t>(), 2, co.data_ptr<int64_t>(), co.size(0), tw, overlap, mode,
               wx.data_ptr<float>(), K);
  const BlendArgs a{idx.data_ptr<int64_t>(), ro.data_ptr<int64_t>(), co.data_ptr<int64_t>(), wy.data_ptr<float>(),
                    wx.data_ptr<float>(), K, C, th, tw, height, width, row0, out.size(2), out.stride(0),
                    out.stride(1), out.stride(2), out.stride(3)};
  switch (t.scalar_type()) {
    case at::kFloat: blend_loop(a, t.data_ptr<float>(), out.data_ptr<float>()); break;
    case at::kBFloat16: blend_loop(a, t.data_ptr<c10::BFloat16>(), out.data_ptr<float>()); break;
    case at::kHalf: blend_loop(a, t.data_ptr<c10::Half>(), out.data_ptr<float>()); break;
    default: TORCH_CHECK(false, "tile_blend: tiles must be float32, bfloat16 or float16, got ", t.scalar_type());
  }
}

TORCH_LIBRARY_IMPL(n2n_fast, CPU, m) {
  m.impl("tile_gather", &tile_gather_cpu);
  m.impl("tile_blend", &tile_blend_cpu);
}

}  // namespace n2n_fast
