// Host side of tile_gather_3d / tile_blend_3d shared by the CPU and CUDA entry points (as tiling_checks.h for 2-D):
// argument checks, the index values checked on the host, the per-origin axis weight tables, the packing into
// Gather3Args / Blend3Args and the dtype dispatch. The device differs only in the loop it hands the Args to.
//
// The index and origins are read on the host (a copy of K x 4 + three short lists, a sync on CUDA): the checks
// need their values (index range, sorted origins, the slab holding every mirrored plane a tile reads: a read
// outside the slab would be outside the tensor), and the weight tables come from the origins alone.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "tiling3d.h"
#include "tiling_checks.h"

namespace n2n_fast {

// The index and origins twice: contiguous on the op's device (what the kernels read) and on the host (what the
// checks and weight tables read). Both must outlive the kernels reading them through an Args.
struct TileIndex3 {
  at::Tensor index, z, y, x;                      // on the device
  at::Tensor host_index, host_z, host_y, host_x;  // on the CPU
  Origins3 device_origins() const { return {z.data_ptr<int64_t>(), y.data_ptr<int64_t>(), x.data_ptr<int64_t>()}; }
};

inline void check_sorted(const char* op, const char* name, const at::Tensor& host_origins) {
  const int64_t* o = host_origins.data_ptr<int64_t>();
  for (int64_t i = 1; i < host_origins.size(0); ++i) {
    TORCH_CHECK(o[i - 1] <= o[i], op, ": ", name, " must be sorted ascending, got ", o[i - 1], " before ", o[i]);
  }
}

// Shapes, dtypes and devices of the index and origins; then, on host copies, every index row in range (volume
// below `volumes`, each tile position below its origin count) and the origins sorted.
inline TileIndex3 tile_index_3d(const char* op, const at::Tensor& index, const at::Tensor& z_origins,
                                const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t volumes,
                                const at::Device& device) {
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 2 && index.size(1) == 4, op,
              ": index must be int64 of shape (K, 4) = (volume, plane tile, row tile, column tile), got ",
              index.sizes(), " ", index.scalar_type());
  for (const at::Tensor* o : {&z_origins, &y_origins, &x_origins}) {
    TORCH_CHECK(o->scalar_type() == at::kLong && o->dim() == 1, op,
                ": z_origins, y_origins and x_origins must be 1-D int64, got ", o->sizes(), " ", o->scalar_type());
    TORCH_CHECK(o->device() == device, op, ": origins must be on the volume's device ", device, ", got ", o->device());
  }
  TORCH_CHECK(index.device() == device, op, ": index must be on the volume's device ", device, ", got ",
              index.device());
  TileIndex3 t{index.contiguous(), z_origins.contiguous(), y_origins.contiguous(), x_origins.contiguous(),
               {}, {}, {}, {}};
  t.host_index = t.index.cpu();
  t.host_z = t.z.cpu();
  t.host_y = t.y.cpu();
  t.host_x = t.x.cpu();
  check_sorted(op, "z_origins", t.host_z);
  check_sorted(op, "y_origins", t.host_y);
  check_sorted(op, "x_origins", t.host_x);
  const int64_t limits[4] = {volumes, t.host_z.size(0), t.host_y.size(0), t.host_x.size(0)};
  const int64_t* rows = t.host_index.data_ptr<int64_t>();
  for (int64_t k = 0; k < t.host_index.size(0); ++k) {
    for (int col = 0; col < 4; ++col) {
      const int64_t v = rows[4 * k + col];
      TORCH_CHECK(v >= 0 && v < limits[col], op, ": index row ", k, " = (", rows[4 * k], ", ", rows[4 * k + 1], ", ",
                  rows[4 * k + 2], ", ", rows[4 * k + 3], ") is out of range: ", limits[0], " volume(s), ", limits[1],
                  " z, ", limits[2], " y and ", limits[3], " x origins");
    }
  }
  return t;
}

// Every volume plane (mirrored) that a referenced plane tile reads must lie in the slab [plane0, plane0 + planes).
inline void check_slab_holds_tiles(const TileIndex3& t, int64_t tile_d, int64_t depth, int64_t plane0,
                                   int64_t planes) {
  const int64_t* rows = t.host_index.data_ptr<int64_t>();
  const int64_t* z = t.host_z.data_ptr<int64_t>();
  std::vector<char> checked(t.host_z.size(0), 0);
  for (int64_t k = 0; k < t.host_index.size(0); ++k) {
    const int64_t iz = rows[4 * k + 1];
    if (checked[iz]) continue;
    checked[iz] = 1;
    int64_t low = depth, high = -1;
    for (int64_t tz = 0; tz < tile_d; ++tz) {
      const int64_t p = mirror_index(z[iz] + tz, depth);
      low = p < low ? p : low;
      high = p > high ? p : high;
    }
    TORCH_CHECK(low >= plane0 && high < plane0 + planes, "tile_gather_3d: volume: tile ", k, " (plane origin ",
                z[iz], ") reads volume planes [", low, ", ", high, "] but the slab holds planes [", plane0, ", ",
                plane0 + planes, "): pass a slab holding them, or a smaller plane0");
  }
}

inline TileIndex3 check_gather_3d(const at::Tensor& volume, const at::Tensor& index, const at::Tensor& z_origins,
                                  const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t tile_d,
                                  int64_t tile_h, int64_t tile_w, int64_t depth, int64_t plane0) {
  TORCH_CHECK(volume.dim() == 5, "tile_gather_3d: volume must be (N, C, planes, H, W), got ", volume.sizes());
  TORCH_CHECK(tile_d > 0 && tile_h > 0 && tile_w > 0, "tile_gather_3d: tile sizes must be positive, got ", tile_d,
              " x ", tile_h, " x ", tile_w);
  TORCH_CHECK(volume.size(2) > 0 && volume.size(3) > 0 && volume.size(4) > 0, "tile_gather_3d: empty volume ",
              volume.sizes());
  TORCH_CHECK(plane0 >= 0 && plane0 + volume.size(2) <= depth, "tile_gather_3d: the slab [plane0, plane0 + planes) = [",
              plane0, ", ", plane0 + volume.size(2), ") must lie inside the volume's depth ", depth);
  TileIndex3 t = tile_index_3d("tile_gather_3d", index, z_origins, y_origins, x_origins, volume.size(0),
                               volume.device());
  check_slab_holds_tiles(t, tile_d, depth, plane0, volume.size(2));
  return t;
}

inline TileIndex3 check_blend_3d(const at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index,
                                 const at::Tensor& z_origins, const at::Tensor& y_origins, const at::Tensor& x_origins,
                                 int64_t depth, int64_t height, int64_t width, int64_t plane0, int64_t overlap_z,
                                 int64_t overlap_y, int64_t overlap_x, int64_t mode) {
  TORCH_CHECK(out.dim() == 5 && out.scalar_type() == at::kFloat,
              "tile_blend_3d: out must be float32 (N, C, planes, height, width), got ", out.sizes(), " ",
              out.scalar_type());
  TORCH_CHECK(out.size(3) == height && out.size(4) == width, "tile_blend_3d: out must hold whole planes of ", height,
              " x ", width, ", got ", out.sizes());
  TORCH_CHECK(depth > 0 && plane0 >= 0 && plane0 + out.size(2) <= depth,
              "tile_blend_3d: the slab [plane0, plane0 + planes) = [", plane0, ", ", plane0 + out.size(2),
              ") must lie inside the volume's depth ", depth);
  TORCH_CHECK(tiles.dim() == 5 && tiles.size(0) == index.size(0) && tiles.size(1) == out.size(1),
              "tile_blend_3d: tiles must be (K, C, tile_d, tile_h, tile_w) with K = index rows (", index.size(0),
              ") and C = out channels (", out.size(1), "), got ", tiles.sizes());
  TORCH_CHECK(tiles.device() == out.device(), "tile_blend_3d: tiles must be on out's device ", out.device(), ", got ",
              tiles.device());
  TORCH_CHECK(overlap_z >= 0 && overlap_y >= 0 && overlap_x >= 0, "tile_blend_3d: overlaps must be >= 0, got ",
              overlap_z, ", ", overlap_y, ", ", overlap_x);
  TORCH_CHECK(mode >= 0 && mode <= 2, "tile_blend_3d: blend_mode must be 0 (cosine), 1 (gaussian) or 2 (stitch), got ",
              mode);
  return tile_index_3d("tile_blend_3d", index, z_origins, y_origins, x_origins, out.size(0), out.device());
}

// (origins, length) float32 normalised weights along one axis, from the shared axis_weight, on `device`.
inline at::Tensor axis_weight_table(const at::Tensor& host_origins, int64_t length, int64_t ramp, int64_t mode,
                                    const at::Device& device) {
  const int64_t count = host_origins.size(0);
  const int64_t* o = host_origins.data_ptr<int64_t>();
  at::Tensor table = at::empty({count, length}, at::kFloat);
  float* w = table.data_ptr<float>();
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t t = 0; t < length; ++t) w[i * length + t] = axis_weight(o[i] + t, i, o, count, length, ramp, mode);
  }
  return table.to(device);
}

inline Gather3Args gather3_args(const TileIndex3& t, const at::Tensor& volume, int64_t tile_d, int64_t tile_h,
                                int64_t tile_w, int64_t depth, int64_t plane0) {
  return Gather3Args{t.index.data_ptr<int64_t>(), t.device_origins(), volume.size(1), tile_d, tile_h, tile_w,
                     depth, volume.size(3), volume.size(4), plane0, volume.stride(0), volume.stride(1),
                     volume.stride(2), volume.stride(3), volume.stride(4)};
}

// The host body of tile_gather_3d: checks, then gather(args, in_ptr, out_ptr, out) for the dtype pair.
template <typename Gather>
at::Tensor tile_gather_3d_host(const at::Tensor& volume, const at::Tensor& index, const at::Tensor& z_origins,
                               const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t tile_d,
                               int64_t tile_h, int64_t tile_w, int64_t depth, int64_t plane0, at::ScalarType dtype,
                               Gather&& gather) {
  const TileIndex3 t =
      check_gather_3d(volume, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth, plane0);
  at::Tensor out = at::empty({index.size(0), volume.size(1), tile_d, tile_h, tile_w}, volume.options().dtype(dtype));
  const Gather3Args a = gather3_args(t, volume, tile_d, tile_h, tile_w, depth, plane0);
  dispatch_image_dtype("tile_gather_3d", volume.scalar_type(), [&](auto in_tag) {
    dispatch_tile_dtype("tile_gather_3d: dtype", dtype, [&](auto out_tag) {
      if (out.numel() > 0) gather(a, volume.data_ptr<decltype(in_tag)>(), out.data_ptr<decltype(out_tag)>(), out);
    });
  });
  return out;
}

// The host body of tile_blend_3d: checks, the three weight tables, then blend(args, tiles_ptr, out_ptr).
template <typename Blend>
void tile_blend_3d_host(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& index, const at::Tensor& z_origins,
                        const at::Tensor& y_origins, const at::Tensor& x_origins, int64_t depth, int64_t height,
                        int64_t width, int64_t plane0, int64_t overlap_z, int64_t overlap_y, int64_t overlap_x,
                        int64_t mode, Blend&& blend) {
  const TileIndex3 t = check_blend_3d(out, tiles, index, z_origins, y_origins, x_origins, depth, height, width,
                                      plane0, overlap_z, overlap_y, overlap_x, mode);
  const at::Tensor tc = tiles.contiguous();
  dispatch_tile_dtype("tile_blend_3d: tiles", tc.scalar_type(), [&](auto tag) {
    if (tc.numel() == 0 || out.numel() == 0) return;
    const int64_t td = tc.size(2), th = tc.size(3), tw = tc.size(4);
    const at::Tensor wz = axis_weight_table(t.host_z, td, overlap_z, mode, out.device());
    const at::Tensor wy = axis_weight_table(t.host_y, th, overlap_y, mode, out.device());
    const at::Tensor wx = axis_weight_table(t.host_x, tw, overlap_x, mode, out.device());
    const Blend3Args a{t.index.data_ptr<int64_t>(), t.device_origins(), wz.data_ptr<float>(), wy.data_ptr<float>(),
                       wx.data_ptr<float>(), tc.size(0), tc.size(1), td, th, tw, depth, height, width, plane0,
                       out.size(2), out.stride(0), out.stride(1), out.stride(2), out.stride(3), out.stride(4)};
    blend(a, tc.data_ptr<decltype(tag)>(), out.data_ptr<float>());
  });
}

}  // namespace n2n_fast
