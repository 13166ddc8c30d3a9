// Host side of tile_gather / tile_blend shared by the CPU and CUDA entry points: argument checks (the Python
// wrappers in n2n_fast/ops/tiling.py validate users' arguments first; these guard direct torch.ops calls), the
// packing of tensors into the GatherArgs / BlendArgs the per-element code reads, and the dtype dispatch. Written
// once so the two devices cannot disagree on a stride or a field order.
#pragma once
#include <ATen/ATen.h>

#include "tiling.h"

namespace n2n_fast {

inline void check_index(const char* op, const at::Tensor& index, const at::Tensor& row_origins,
                        const at::Tensor& col_origins) {
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 2 && index.size(1) == 3, op,
              ": index must be int64 of shape (K, 3) = (image, row tile, column tile), got ", index.sizes(), " ",
              index.scalar_type());
  TORCH_CHECK(row_origins.scalar_type() == at::kLong && row_origins.dim() == 1 && col_origins.scalar_type() == at::kLong &&
                  col_origins.dim() == 1,
              op, ": row_origins and col_origins must be 1-D int64");
  TORCH_CHECK(index.device() == row_origins.device() && index.device() == col_origins.device(), op,
              ": index and origins must be on one device");
}

inline void check_gather(const at::Tensor& image, const at::Tensor& index, const at::Tensor& row_origins,
                         const at::Tensor& col_origins, int64_t tile_h, int64_t tile_w, int64_t height, int64_t row0) {
  TORCH_CHECK(image.dim() == 4, "tile_gather: image must be (N, C, rows, W), got ", image.sizes());
  check_index("tile_gather", index, row_origins, col_origins);
  TORCH_CHECK(index.device() == image.device(), "tile_gather: index must be on the image's device");
  TORCH_CHECK(tile_h > 0 && tile_w > 0, "tile_gather: tile sizes must be positive");
  TORCH_CHECK(height > 0 && image.size(3) > 0, "tile_gather: empty image");
  TORCH_CHECK(row0 >= 0 && row0 + image.size(2) <= height, "tile_gather: the band [row0, row0 + rows) must lie ",
              "inside the image height");
}

inline void check_blend(const at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index,
                        const at::Tensor& row_origins, const at::Tensor& col_origins, int64_t height, int64_t width,
                        int64_t row0, int64_t overlap, int64_t mode) {
  TORCH_CHECK(out.dim() == 4 && out.scalar_type() == at::kFloat, "tile_blend: out must be float32 (N, C, rows, W)");
  TORCH_CHECK(tiles.dim() == 4 && tiles.size(0) == index.size(0) && tiles.size(1) == out.size(1),
              "tile_blend: tiles must be (K, C, th, tw) with K = index rows and C = out channels, got ", tiles.sizes());
  check_index("tile_blend", index, row_origins, col_origins);
  TORCH_CHECK(out.device() == tiles.device() && out.device() == index.device(),
              "tile_blend: out, tiles and index must be on one device");
  TORCH_CHECK(out.size(3) == width && row0 >= 0 && height > 0, "tile_blend: out must hold full rows of the image");
  TORCH_CHECK(overlap >= 0 && mode >= 0 && mode <= 2, "tile_blend: overlap >= 0, mode in {0, 1, 2}");
}

// Contiguous copies of the tile index and origins; they must outlive the kernels reading them through an Args.
struct TileIndex {
  at::Tensor index, rows, cols;
};

inline TileIndex contiguous_index(const at::Tensor& index, const at::Tensor& row_origins,
                                  const at::Tensor& col_origins) {
  return {index.contiguous(), row_origins.contiguous(), col_origins.contiguous()};
}

inline GatherArgs gather_args(const TileIndex& t, const at::Tensor& image, int64_t tile_h, int64_t tile_w,
                              int64_t height, int64_t row0) {
  return GatherArgs{t.index.data_ptr<int64_t>(), t.rows.data_ptr<int64_t>(), t.cols.data_ptr<int64_t>(),
                    image.size(1), tile_h, tile_w, height, image.size(3), row0,
                    image.stride(0), image.stride(1), image.stride(2), image.stride(3)};
}

// tiles must be contiguous; weight_y (K, th) and weight_x (K, tw) float32, filled before the blend kernel runs.
inline BlendArgs blend_args(const TileIndex& t, const at::Tensor& tiles, const at::Tensor& weight_y,
                            const at::Tensor& weight_x, const at::Tensor& out, int64_t height, int64_t width,
                            int64_t row0) {
  return BlendArgs{t.index.data_ptr<int64_t>(), t.rows.data_ptr<int64_t>(), t.cols.data_ptr<int64_t>(),
                   weight_y.data_ptr<float>(), weight_x.data_ptr<float>(),
                   tiles.size(0), tiles.size(1), tiles.size(2), tiles.size(3), height, width, row0, out.size(2),
                   out.stride(0), out.stride(1), out.stride(2), out.stride(3)};
}

// Calls fn(T{}) with T the C++ type of an image dtype tile_gather reads (uint8, uint16, half, bf16, float, double);
// `what` names the op in the error.
template <typename Fn>
void dispatch_image_dtype(const char* what, at::ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case at::kByte: return fn(uint8_t{});
    case at::kUInt16: return fn(uint16_t{});
    case at::kHalf: return fn(c10::Half{});
    case at::kBFloat16: return fn(c10::BFloat16{});
    case at::kFloat: return fn(float{});
    case at::kDouble: return fn(double{});
    default: TORCH_CHECK(false, what, ": unsupported image dtype ", dtype);
  }
}

// Calls fn(T{}) with T the C++ type of a tile dtype the models produce (float, bf16, half).
template <typename Fn>
void dispatch_tile_dtype(const char* what, at::ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case at::kFloat: return fn(float{});
    case at::kBFloat16: return fn(c10::BFloat16{});
    case at::kHalf: return fn(c10::Half{});
    default: TORCH_CHECK(false, what, " must be float32, bfloat16 or float16, got ", dtype);
  }
}

// The host body of tile_blend, shared by the CPU and CUDA entry points: checks, contiguous index copies, the two
// axis weight tables, then the blend for the tiles' dtype. The device differs only in how the weights are filled
// and the blend runs: fill_weights(index, axis, origins, count, length, overlap, mode, weights, K) and
// blend(args, tiles_ptr, out_ptr, images).
template <typename FillWeights, typename Blend>
void tile_blend_host(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& row_origins,
                     const at::Tensor& col_origins, int64_t height, int64_t width, int64_t row0, int64_t overlap,
                     int64_t mode, FillWeights&& fill_weights, Blend&& blend) {
  check_blend(out, tiles, index, row_origins, col_origins, height, width, row0, overlap, mode);
  const TileIndex t = contiguous_index(index, row_origins, col_origins);
  const at::Tensor tc = tiles.contiguous();
  if (tc.numel() == 0 || out.numel() == 0) return;
  const int64_t K = tc.size(0), th = tc.size(2), tw = tc.size(3);
  at::Tensor wy = at::empty({K, th}, out.options()), wx = at::empty({K, tw}, out.options());
  fill_weights(t.index.data_ptr<int64_t>(), 1, t.rows.data_ptr<int64_t>(), t.rows.size(0), th, overlap, mode,
               wy.data_ptr<float>(), K);
  fill_weights(t.index.data_ptr<int64_t>(), 2, t.cols.data_ptr<int64_t>(), t.cols.size(0), tw, overlap, mode,
               wx.data_ptr<float>(), K);
  const BlendArgs a = blend_args(t, tc, wy, wx, out, height, width, row0);
  dispatch_tile_dtype("tile_blend: tiles", tc.scalar_type(), [&](auto tag) {
    blend(a, tc.data_ptr<decltype(tag)>(), out.data_ptr<float>(), out.size(0));
  });
}

}  // namespace n2n_fast
