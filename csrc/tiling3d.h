// Tiled inference over volumes (N, C, planes, H, W): the rules of tiling.h (mirror_index, axis_weight, blend_step,
// UnitScale) applied along z, y and x, as __host__ __device__ inline functions. The CPU kernels (cpu/tiling3d.cpp)
// and the CUDA kernels (cuda/tiling3d.cu) call exactly these; n2n_fast/reference/tiling.py (tile_gather_3d,
// tile_blend_3d) is their plain PyTorch twin.
//
// Conventions (docs/tiling.md §7):
//  - tile k is index[k] = (volume n, plane tile iz, row tile iy, column tile ix); its corner in volume coordinates
//    is (z_origins[iz], y_origins[iy], x_origins[ix]); origins are sorted per axis and may be negative or run past
//    the volume (mirror padding there, each axis against its own length);
//  - the volume / output tensors hold a slab: volume planes [plane0, plane0 + planes), full height and width;
//  - the blend weight is (w_z * w_y) * w_x in float32, each factor the 2-D axis_weight along that axis with that
//    axis's overlap; the axis weights are tabulated per origin (count, length), not per tile.
#pragma once
#include <cstdint>

#include "tiling.h"

namespace n2n_fast {

struct Origins3 {
  const int64_t* z;
  const int64_t* y;
  const int64_t* x;
};

// Tile k of a batch: its volume, its place in each origin list (which row of each weight table), its corner.
struct Tile3 {
  int64_t n, iz, iy, ix;
  int64_t z, y, x;
};

N2N_HD Tile3 tile3(const int64_t* index, const Origins3& o, int64_t k) {
  const int64_t* row = index + 4 * k;
  return Tile3{row[0], row[1], row[2], row[3], o.z[row[1]], o.y[row[2]], o.x[row[3]]};
}

// A pixel value in [0, 1] (integers by their peak, floats unchanged) converted to the tile dtype.
template <typename OutT, typename InT>
N2N_HD OutT unit_value(InT v) {
  return static_cast<OutT>(static_cast<float>(v) * UnitScale<InT>::value);
}

// ---- gather

struct Gather3Args {
  const int64_t* index;  // (K, 4)
  Origins3 origins;
  int64_t C, td, th, tw;
  int64_t depth, height, width, plane0;     // the whole volume's size; the slab's first plane
  int64_t in_sn, in_sc, in_sz, in_sy, in_sx;  // volume strides (elements): any layout, e.g. a ZYXC numpy view
};

// Offset of volume row (n, c, mirrored plane, mirrored row) that tile row (t, c, tz, ty) reads, at column 0.
N2N_HD int64_t gather3_row_offset(const Gather3Args& a, const Tile3& t, int64_t c, int64_t tz, int64_t ty) {
  const int64_t sz = mirror_index(t.z + tz, a.depth) - a.plane0;
  const int64_t sy = mirror_index(t.y + ty, a.height);
  return t.n * a.in_sn + c * a.in_sc + sz * a.in_sz + sy * a.in_sy;
}

// One element of the gathered tiles (K, C, td, th, tw), element order (the CUDA form).
template <typename InT, typename OutT>
N2N_HD OutT gather3_element(const Gather3Args& a, const InT* in, int64_t k, int64_t c, int64_t tz, int64_t ty,
                            int64_t tx) {
  const Tile3 t = tile3(a.index, a.origins, k);
  const int64_t offset = gather3_row_offset(a, t, c, tz, ty) + mirror_index(t.x + tx, a.width) * a.in_sx;
  return unit_value<OutT>(in[offset]);
}

// One tile row (k, c, tz, ty) of tw elements, row order (the CPU form): the same values as gather3_element.
template <typename InT, typename OutT>
N2N_HD void gather3_row(const Gather3Args& a, const InT* in, OutT* dst, int64_t k, int64_t c, int64_t tz,
                        int64_t ty) {
  const Tile3 t = tile3(a.index, a.origins, k);
  const InT* src = in + gather3_row_offset(a, t, c, tz, ty);
  for (int64_t tx = 0; tx < a.tw; ++tx) dst[tx] = unit_value<OutT>(src[mirror_index(t.x + tx, a.width) * a.in_sx]);
}

// ---- blend

struct Blend3Args {
  const int64_t* index;  // (K, 4)
  Origins3 origins;
  const float* weight_z;  // (z origins, td): normalised plane weights of each plane-tile position
  const float* weight_y;  // (y origins, th)
  const float* weight_x;  // (x origins, tw)
  int64_t K, C, td, th, tw;
  int64_t depth, height, width;  // the whole volume
  int64_t plane0, planes;        // the output slab holds volume planes [plane0, plane0 + planes)
  int64_t out_sn, out_sc, out_sz, out_sy, out_sx;  // output strides (elements)
};

N2N_HD bool tile3_covers(const Blend3Args& a, const Tile3& t, int64_t n, int64_t z, int64_t y, int64_t x) {
  return t.n == n && z >= t.z && z < t.z + a.td && y >= t.y && y < t.y + a.th && x >= t.x && x < t.x + a.tw;
}

// Output-centric blend of one tile element without atomics, as the 2-D blend_element: the element of the
// lowest-index tile covering an output voxel leads it, sums every covering tile in index order onto the voxel's
// value and writes it once; every other element returns false (as do voxels outside the volume or the slab).
template <typename TileT>
N2N_HD bool blend3_element(const Blend3Args& a, const TileT* tiles, float* out, int64_t k, int64_t c, int64_t tz,
                           int64_t ty, int64_t tx) {
  const Tile3 me = tile3(a.index, a.origins, k);
  const int64_t z = me.z + tz, y = me.y + ty, x = me.x + tx;
  if (z < 0 || z >= a.depth || z < a.plane0 || z >= a.plane0 + a.planes) return false;
  if (y < 0 || y >= a.height || x < 0 || x >= a.width) return false;
  for (int64_t j = 0; j < k; ++j) {  // an earlier tile covering this voxel leads it
    if (tile3_covers(a, tile3(a.index, a.origins, j), me.n, z, y, x)) return false;
  }
  float* dst = out + me.n * a.out_sn + c * a.out_sc + (z - a.plane0) * a.out_sz + y * a.out_sy + x * a.out_sx;
  float acc = *dst;
  for (int64_t j = k; j < a.K; ++j) {
    const Tile3 o = tile3(a.index, a.origins, j);
    if (!tile3_covers(a, o, me.n, z, y, x)) continue;
    const int64_t oz = z - o.z, oy = y - o.y, ox = x - o.x;
    const float w = (a.weight_z[o.iz * a.td + oz] * a.weight_y[o.iy * a.th + oy]) * a.weight_x[o.ix * a.tw + ox];
    acc = blend_step(acc, static_cast<float>(tiles[(((j * a.C + c) * a.td + oz) * a.th + oy) * a.tw + ox]), w);
  }
  *dst = acc;
  return true;
}

// Row order of the same blend (the CPU form, as the 2-D blend_row): output row (n, c, z, y) receives the row of
// every covering tile in index order through the shared blend_span, so each voxel gets exactly blend3_element's
// additions in the same order (bitwise equal). z must lie inside the slab and the volume, y inside the volume.
template <typename TileT>
N2N_HD void blend3_row(const Blend3Args& a, const TileT* tiles, float* out, int64_t n, int64_t c, int64_t z,
                       int64_t y) {
  float* dst = out + n * a.out_sn + c * a.out_sc + (z - a.plane0) * a.out_sz + y * a.out_sy;
  for (int64_t j = 0; j < a.K; ++j) {
    const Tile3 t = tile3(a.index, a.origins, j);
    if (t.n != n || z < t.z || z >= t.z + a.td || y < t.y || y >= t.y + a.th) continue;
    const int64_t x0 = t.x > 0 ? t.x : 0, x1 = t.x + a.tw < a.width ? t.x + a.tw : a.width;
    const float wzy = a.weight_z[t.iz * a.td + (z - t.z)] * a.weight_y[t.iy * a.th + (y - t.y)];
    const float* wx = a.weight_x + t.ix * a.tw - t.x;  // indexed by volume column
    const TileT* src = tiles + (((j * a.C + c) * a.td + (z - t.z)) * a.th + (y - t.y)) * a.tw - t.x;
    blend_span(dst, a.out_sx, src, wx, wzy, x0, x1);
  }
}

}  // namespace n2n_fast
