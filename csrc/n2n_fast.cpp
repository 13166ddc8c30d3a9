// Every schema of the extension, in one place. Kernels register per device in cpu/ and cuda/ with
// TORCH_LIBRARY_IMPL; Python-side fake (meta) implementations live in n2n_fast/ops/.
#include <Python.h>
#include <torch/library.h>

// Importing n2n_fast._C from Python runs the static TORCH_LIBRARY registrations below.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(n2n_fast, m) {
  // Philox4x32-10 words for a tensor of counters (int32, last dim 4). The first op: proves the CPU + CUDA build
  // and the shared __host__ __device__ header end to end; the noise kernels build on the same header.
  m.def("philox(Tensor counters, int seed) -> Tensor");

  // --- noise synthesis (csrc/noise.h, cpu/noise.cpp; Python side n2n_fast/ops/noise.py) ---
  // Both noisy copies of a contiguous (B, C, H, W) clean batch (float32/bfloat16/float16/uint8/uint16), model code
  // and float32 params (a_low, a_high, b_low, b_high) as in n2n_fast/noise.py, 64-bit seed, step, global index of
  // the first sample. Returns (y0, y1, keep): keep is the target's kept-pixel mask (B, 1, H, W) for Bernoulli,
  // else empty. Counter layout: n2n_fast/noise.py.
  m.def("noisy_pair(Tensor clean, int model, float[] params, int seed, int step, int index, ScalarType out_dtype) "
        "-> (Tensor, Tensor, Tensor)");

  // --- tiled inference (csrc/tiling.h, cpu/tiling.cpp, cuda/tiling.cu; Python side n2n_fast/ops/tiling.py) ---
  // A batch of tiles (K, C, tile_h, tile_w) of `dtype` from `image` (N, C, rows, W): image rows [row0, row0 + rows)
  // of an image `height` x W, any strides, uint8/uint16/float16/bfloat16/float32/float64 (integers scaled to
  // [0, 1]). Tile k is image index[k, 0] at (row_origins[index[k, 1]], col_origins[index[k, 2]]); positions outside
  // the image are mirror padding.
  m.def("tile_gather(Tensor image, Tensor index, Tensor row_origins, Tensor col_origins, int tile_h, int tile_w, "
        "int height, int row0, ScalarType dtype) -> Tensor");
  // Adds the weighted tiles into `out` (float32 (N, C, rows, width): image rows [row0, row0 + rows)), weights
  // normalised over the whole tile grid; blend_mode 0 cosine, 1 gaussian, 2 stitch (keeps each tile's centre, dropping
  // overlap / 2 on every side). Deterministic: no atomics, the per-pixel sum runs in tile order.
  m.def("tile_blend(Tensor(a!) out, Tensor tiles, Tensor index, Tensor row_origins, Tensor col_origins, int height, "
        "int width, int row0, int overlap, int blend_mode) -> ()");

  // --- tiled inference over volumes (csrc/tiling3d.h, cpu/tiling3d.cpp, cuda/tiling3d.cu) ---
  // Tiles (K, C, tile_d, tile_h, tile_w) of `dtype` from `volume` (N, C, planes, H, W): volume planes
  // [plane0, plane0 + planes) of a volume `depth` planes deep, any strides, the image dtypes of tile_gather. Tile k
  // is volume index[k, 0] at (z_origins[index[k, 1]], y_origins[index[k, 2]], x_origins[index[k, 3]]); positions
  // outside the volume are mirror padding (per axis), whose planes must lie in the slab.
  m.def("tile_gather_3d(Tensor volume, Tensor index, Tensor z_origins, Tensor y_origins, Tensor x_origins, "
        "int tile_d, int tile_h, int tile_w, int depth, int plane0, ScalarType dtype) -> Tensor");
  // Adds the weighted tiles into `out` (float32 (N, C, planes, height, width): volume planes [plane0, plane0 +
  // planes)); weight w_z * w_y * w_x, each the 2-D axis rule with that axis's overlap. Deterministic as tile_blend.
  m.def("tile_blend_3d(Tensor(a!) out, Tensor tiles, Tensor index, Tensor z_origins, Tensor y_origins, "
        "Tensor x_origins, int depth, int height, int width, int plane0, int overlap_z, int overlap_y, "
        "int overlap_x, int blend_mode) -> ()");
}
