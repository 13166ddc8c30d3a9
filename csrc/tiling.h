// Tiled inference: tile geometry, mirror padding, blend weights and dtype conversion as __host__ __device__
// inline functions. The CPU kernels (cpu/tiling.cpp) and the CUDA kernels (cuda/tiling.cu) call exactly these, so
// the CPU tests exercise the index and weight arithmetic the GPU runs. n2n_fast/reference/tiling.py is the plain
// PyTorch twin of every function here.
//
// Conventions shared with Python (n2n_fast/tiling_plan.py):
//  - a tile k is named by index[k] = (image n, row-tile iy, column-tile ix); its top-left corner in image
//    coordinates is (row_origins[iy], col_origins[ix]); origins may be negative or run past the image (the pixels
//    there are mirror padding);
//  - along one axis the origins are sorted, so the tiles covering a position are neighbours in that list;
//  - the blend weight of tile k at an image position is separable: w_y * w_x, each normalised along its axis so
//    the weights of all tiles covering a position sum to one (a grid of separable windows normalises per axis).
#pragma once
#include <cmath>
#include <cstdint>

#include "philox.h"  // N2N_HD

namespace n2n_fast {

enum BlendMode : int64_t { kBlendCosine = 0, kBlendGaussian = 1, kBlendStitch = 2 };

// Windows never fall below this, so a pixel covered only by a tile's edge (image borders) keeps a weight to
// normalise by; small enough that tile edges, where the network sees truncated context, barely count elsewhere.
constexpr double kWindowFloor = 1e-3;
// Gaussian window: sigma = tile length / 8 (the window is ~1 over the centre half, ~0 at the edges).
constexpr double kGaussianSigmaFraction = 0.125;
constexpr double kPi = 3.14159265358979323846;

// docs/design.md §5 padding: reflection about the edge pixel (no repeat), periodic with period 2*(size-1) when the pad
// exceeds the image, replication for a side of one pixel. Same rule as n2n_fast/padding.py:mirror_index.
N2N_HD int64_t mirror_index(int64_t i, int64_t size) {
  if (i >= 0 && i < size) return i;  // the common case: inside the image
  if (size == 1) return 0;
  const int64_t period = 2 * (size - 1);
  int64_t r = i % period;
  if (r < 0) r += period;
  return r < size ? r : period - r;
}

// Un-normalised window of a tile of `length` pixels at offset t in [0, length), evaluated at pixel centres.
// cosine: a raised-cosine (Hann) ramp over the `ramp` pixels at each end, 1 in between;
// gaussian: exp(-d^2 / 2 sigma^2) about the tile centre. Both are floored at kWindowFloor.
N2N_HD double blend_window(int64_t t, int64_t length, int64_t ramp, int64_t mode) {
  const double centre = t + 0.5;
  double w = 1.0;
  if (mode == kBlendGaussian) {
    const double d = centre - 0.5 * length;
    const double sigma = kGaussianSigmaFraction * length;
    w = exp(-d * d / (2.0 * sigma * sigma));
  } else if (ramp > 0) {
    const double edge = centre < 0.5 * length ? centre : length - centre;  // distance from the nearer end
    if (edge < ramp) w = 0.5 - 0.5 * cos(kPi * edge / ramp);
  }
  return w > kWindowFloor ? w : kWindowFloor;
}

// Stitch mode keeps [origin + margin, origin + length - margin) of every tile; where kept ranges overlap (the
// last tile is shifted back to stay aligned) the earlier tile owns the pixel. Returns the owning tile's index.
N2N_HD int64_t stitch_owner(int64_t pos, const int64_t* origins, int64_t count, int64_t length, int64_t margin) {
  for (int64_t j = 0; j < count; ++j) {
    if (pos >= origins[j] + margin && pos < origins[j] + length - margin) return j;
  }
  return -1;
}

// Normalised weight of tile k (origin origins[k]) at absolute position pos along one axis: its window divided
// by the sum of the windows of every tile covering pos. Stitch mode: 1 for the owning tile, else 0.
N2N_HD float axis_weight(int64_t pos, int64_t k, const int64_t* origins, int64_t count, int64_t length,
                         int64_t ramp, int64_t mode) {
  if (mode == kBlendStitch) return stitch_owner(pos, origins, count, length, ramp / 2) == k ? 1.0f : 0.0f;
  const double own = blend_window(pos - origins[k], length, ramp, mode);
  double total = 0.0;
  for (int64_t j = k; j >= 0 && pos < origins[j] + length; --j) total += blend_window(pos - origins[j], length, ramp, mode);
  for (int64_t j = k + 1; j < count && pos >= origins[j]; ++j) total += blend_window(pos - origins[j], length, ramp, mode);
  return static_cast<float>(own / total);
}

// Integer pixels become [0, 1] by their peak; floats pass unchanged. Multiplying by the float reciprocal (not
// dividing) makes the result the same correctly rounded product on CPU, CUDA and in the PyTorch reference.
template <typename T>
struct UnitScale {
  static constexpr float value = 1.0f;
};
template <>
struct UnitScale<uint8_t> {
  static constexpr float value = 1.0f / 255.0f;
};
template <>
struct UnitScale<uint16_t> {
  static constexpr float value = 1.0f / 65535.0f;
};

// Does tile j (image n_j, corner (y_j, x_j), size th x tw) contain pixel (n, y, x)?
N2N_HD bool tile_covers(int64_t n_j, int64_t y_j, int64_t x_j, int64_t th, int64_t tw, int64_t n, int64_t y,
                        int64_t x) {
  return n_j == n && y >= y_j && y < y_j + th && x >= x_j && x < x_j + tw;
}

// Everything a kernel needs to place tile k: its image and corner.
struct TileCorner {
  int64_t n, y, x;
};

N2N_HD TileCorner tile_corner(const int64_t* index, const int64_t* row_origins, const int64_t* col_origins,
                              int64_t k) {
  return TileCorner{index[3 * k], row_origins[index[3 * k + 1]], col_origins[index[3 * k + 2]]};
}

// Output-centric blend of one tile element without atomics. The batch's tiles are visited in index order; the
// element of the lowest-index tile covering an output pixel (the pixel's "leader") sums the contributions of all
// covering tiles in index order onto the pixel's current value and writes it once. Every other element returns.
// Hence each output pixel is written by exactly one thread, and the sum order (the batch order) never depends on
// scheduling. Returns false when this element is not the leader (or its pixel is outside the output band).
struct BlendArgs {
  const int64_t* index;        // (K, 3)
  const int64_t* row_origins;  // per row-tile
  const int64_t* col_origins;  // per column-tile
  const float* weight_y;       // (K, th) normalised row weights of each tile
  const float* weight_x;       // (K, tw)
  int64_t K, C, th, tw;
  int64_t height, width;  // the whole image
  int64_t row0, band_rows;  // the output band holds image rows [row0, row0 + band_rows)
  int64_t out_sn, out_sc, out_sy, out_sx;  // output strides (elements)
};

// One accumulation step of the blend, shared by both loop orders below: a zero weight adds nothing (stitch mode:
// not this tile's pixel; and 0 * NaN must not leak in). The weight is the product w_y * w_x, formed first.
N2N_HD float blend_step(float acc, float value, float weight) { return weight == 0.0f ? acc : acc + value * weight; }

template <typename TileT>
N2N_HD bool blend_element(const BlendArgs& a, const TileT* tiles, float* out, int64_t k, int64_t c, int64_t ty,
                          int64_t tx) {
  const TileCorner me = tile_corner(a.index, a.row_origins, a.col_origins, k);
  const int64_t y = me.y + ty, x = me.x + tx;
  if (y < 0 || y >= a.height || x < 0 || x >= a.width || y < a.row0 || y >= a.row0 + a.band_rows) return false;
  for (int64_t j = 0; j < k; ++j) {  // an earlier tile covering this pixel leads it
    const TileCorner o = tile_corner(a.index, a.row_origins, a.col_origins, j);
    if (tile_covers(o.n, o.y, o.x, a.th, a.tw, me.n, y, x)) return false;
  }
  float* dst = out + me.n * a.out_sn + c * a.out_sc + (y - a.row0) * a.out_sy + x * a.out_sx;
  float acc = *dst;
  for (int64_t j = k; j < a.K; ++j) {
    const TileCorner o = tile_corner(a.index, a.row_origins, a.col_origins, j);
    if (!tile_covers(o.n, o.y, o.x, a.th, a.tw, me.n, y, x)) continue;
    const int64_t oy = y - o.y, ox = x - o.x;
    const float w = a.weight_y[j * a.th + oy] * a.weight_x[j * a.tw + ox];
    acc = blend_step(acc, static_cast<float>(tiles[((j * a.C + c) * a.th + oy) * a.tw + ox]), w);
  }
  *dst = acc;
  return true;
}

// Row order of the same blend, for processors with a few wide cores (the CPU): output row (n, c, y) of the band
// receives the row of every tile covering it, tile by tile in index order, so each pixel gets exactly the
// additions of blend_element in the same order (bitwise equal results), while the inner loop walks contiguous
// memory with no per-pixel search over the other tiles (blend_element's O(K) leader test per element is what
// made the element order 4x slower than the reference on the CPU). y must lie inside the band and the image.
// The inner loop of the row orders (2-D blend_row, 3-D blend_row_3d): output columns [x0, x1) of one row receive
// one tile row. src and wx are indexed by image column; w_outer is the product of the other axes' weights, so each
// element's weight is w_outer * wx[x], formed as the element orders form it.
template <typename TileT>
N2N_HD void blend_span(float* dst, int64_t out_sx, const TileT* src, const float* wx, float w_outer, int64_t x0,
                       int64_t x1) {
  for (int64_t x = x0; x < x1; ++x) {
    dst[x * out_sx] = blend_step(dst[x * out_sx], static_cast<float>(src[x]), w_outer * wx[x]);
  }
}

template <typename TileT>
N2N_HD void blend_row(const BlendArgs& a, const TileT* tiles, float* out, int64_t n, int64_t c, int64_t y) {
  float* dst = out + n * a.out_sn + c * a.out_sc + (y - a.row0) * a.out_sy;
  for (int64_t j = 0; j < a.K; ++j) {
    const TileCorner t = tile_corner(a.index, a.row_origins, a.col_origins, j);
    if (t.n != n || y < t.y || y >= t.y + a.th) continue;
    const int64_t x0 = t.x > 0 ? t.x : 0, x1 = t.x + a.tw < a.width ? t.x + a.tw : a.width;
    const float wy = a.weight_y[j * a.th + (y - t.y)];
    const float* wx = a.weight_x + j * a.tw - t.x;  // indexed by image column
    const TileT* src = tiles + ((j * a.C + c) * a.th + (y - t.y)) * a.tw - t.x;
    blend_span(dst, a.out_sx, src, wx, wy, x0, x1);
  }
}

// Source element of gathered tile element (k, c, ty, tx): the image holds rows [row0, row0 + rows) of an image
// `height` x `width`; positions outside the image are mirrored into it (docs/design.md §5).
struct GatherArgs {
  const int64_t* index;
  const int64_t* row_origins;
  const int64_t* col_origins;
  int64_t C, th, tw;
  int64_t height, width, row0;
  int64_t in_sn, in_sc, in_sy, in_sx;  // image strides (elements): any layout, e.g. an (H, W, C) numpy view
};

N2N_HD int64_t gather_offset(const GatherArgs& a, int64_t k, int64_t c, int64_t ty, int64_t tx) {
  const TileCorner t = tile_corner(a.index, a.row_origins, a.col_origins, k);
  const int64_t sy = mirror_index(t.y + ty, a.height) - a.row0;
  const int64_t sx = mirror_index(t.x + tx, a.width);
  return t.n * a.in_sn + c * a.in_sc + sy * a.in_sy + sx * a.in_sx;
}

}  // namespace n2n_fast
