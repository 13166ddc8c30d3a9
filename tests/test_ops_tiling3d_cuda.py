"""3-D tiling ops, the CUDA side: the kernels' element forms built for the host == the CPU ops (runs everywhere);
the CUDA ops against the reference on a GPU (`gpu`). Every CUDA kernel's 0 spill bytes for sm_80 and sm_90 is
checked on the whole build log by .ci/run."""
import ctypes
import os
import shutil
import subprocess

import pytest
import torch

from n2n_fast.conventions import BLEND_MODES
from n2n_fast.reference import tiling as ref
from tiling3d_cases import IN_DTYPES, OUT_DTYPES, SHAPES, Grid, random_volume, extension_ops
from tolerance import assert_close


@pytest.fixture(scope="module")
def ext():
    return extension_ops()


# The CUDA kernels' element forms (gather3_element, blend3_element), built for the host with the system compiler
# against csrc/tiling3d.h alone (no torch headers: a second), so a machine without a GPU checks the index, leader
# and summation-order arithmetic the GPU runs against the CPU row forms. float32 volume and tiles.
_ELEMENT_HARNESS = r"""
#include "tiling3d.h"
using namespace n2n_fast;
extern "C" void gather_elements(const float* in, float* out, const int64_t* index, const int64_t* z,
                                const int64_t* y, const int64_t* x, const int64_t* d) {
  const Gather3Args a{index, {z, y, x}, d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12],
                      d[13]};
  for (int64_t i = 0; i < d[0] * a.C * a.td * a.th * a.tw; ++i) {
    const int64_t tx = i % a.tw, ty = (i / a.tw) % a.th, tz = (i / (a.tw * a.th)) % a.td;
    const int64_t c = (i / (a.tw * a.th * a.td)) % a.C, k = i / (a.tw * a.th * a.td * a.C);
    out[i] = gather3_element<float, float>(a, in, k, c, tz, ty, tx);
  }
}
extern "C" void blend_elements(const float* tiles, float* out, const int64_t* index, const int64_t* z,
                               const int64_t* y, const int64_t* x, const float* wz, const float* wy, const float* wx,
                               const int64_t* d) {
  const Blend3Args a{index, {z, y, x}, wz, wy, wx, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                     d[10], d[11], d[12], d[13], d[14]};
  for (int64_t i = 0; i < a.K * a.C * a.td * a.th * a.tw; ++i) {
    const int64_t tx = i % a.tw, ty = (i / a.tw) % a.th, tz = (i / (a.tw * a.th)) % a.td;
    const int64_t c = (i / (a.tw * a.th * a.td)) % a.C, k = i / (a.tw * a.th * a.td * a.C);
    blend3_element(a, tiles, out, k, c, tz, ty, tx);
  }
}
"""


@pytest.fixture(scope="module")
def element_forms(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    folder = tmp_path_factory.mktemp("element_forms")
    (folder / "harness.cpp").write_text(_ELEMENT_HARNESS)
    root = os.path.join(os.path.dirname(__file__), "..", "csrc")
    subprocess.run([compiler, "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{root}", str(folder / "harness.cpp"),
                    "-o", str(folder / "harness.so")], check=True, capture_output=True, timeout=300)
    return ctypes.CDLL(str(folder / "harness.so"))


def _pointer(tensor):
    """The address of `tensor`'s data: the caller keeps `tensor` alive while C reads it."""
    return ctypes.c_void_p(tensor.data_ptr())


def _dims(*values):
    return torch.tensor([int(v) for v in values], dtype=torch.int64)


@pytest.mark.parametrize("blend", list(BLEND_MODES))
def test_cuda_element_forms_equal_cpu_row_forms(ext, gen, element_forms, blend):
    """gather3_element / blend3_element (what the CUDA kernels run per thread) == the CPU op, bitwise, on a slab with
    overrunning tiles, a strided volume and a strided out."""
    shape = (2, 2, 13, 21, 19)
    grid = Grid(shape, (4, 16, 16), (2, 8, 8), mode=blend)
    plane0, planes = 3, 7
    index = grid.index[(grid.z[grid.index[:, 1]] >= 2) & (grid.z[grid.index[:, 1]] + grid.tile[0] <= 12)]
    volume = torch.rand(shape[0], *shape[2:], shape[1], generator=gen).permute(0, 4, 1, 2, 3)[:, :, 2:12]
    got = torch.empty((index.shape[0], shape[1], *grid.tile))
    sizes = _dims(index.shape[0], shape[1], *grid.tile, 13, 21, 19, 2, *volume.stride())  # alive during the call
    element_forms.gather_elements(_pointer(volume), _pointer(got), _pointer(index), _pointer(grid.z),
                                  _pointer(grid.y), _pointer(grid.x), _pointer(sizes))
    assert torch.equal(got, grid.gather(ext, volume, torch.float32, 2, index))
    tiles = torch.randn(got.shape, generator=gen)
    weights = [ref.axis_weights(o.tolist(), t, ov, grid.mode) for o, t, ov in zip((grid.z, grid.y, grid.x),
                                                                                  grid.tile, grid.overlap)]
    start = torch.randn(shape[0], planes, *shape[3:], shape[1], generator=gen).permute(0, 4, 1, 2, 3)
    want, out = start.clone(), start.clone()
    grid.blend(ext, want, tiles, plane0, index)
    sizes = _dims(index.shape[0], shape[1], *grid.tile, 13, 21, 19, plane0, planes, *out.stride())
    element_forms.blend_elements(_pointer(tiles), _pointer(out), _pointer(index), _pointer(grid.z), _pointer(grid.y),
                                 _pointer(grid.x), *(_pointer(w) for w in weights), _pointer(sizes))
    assert torch.equal(out, want) and not torch.equal(out, start)


@pytest.mark.gpu
def test_cuda_ops_match_reference(gen):
    """CUDA against the reference: gather bitwise; blend within float32 tolerance (nvcc contracts the blend's
    multiply-add into an FMA, the CPU and PyTorch round twice); both bitwise repeatable."""
    from n2n_fast.ops import tiling as ext

    cuda = torch.device("cuda")
    for shape in SHAPES:
        grid = Grid(shape, (4, 16, 16), (2, 8, 8))
        on_gpu = {name: getattr(grid, name).to(cuda) for name in ("index", "z", "y", "x")}
        for dtype in IN_DTYPES:
            volume = random_volume(gen, shape, dtype)
            for out_dtype in OUT_DTYPES:
                want = grid.gather(ref, volume, out_dtype)
                got = ext.tile_gather_3d(volume.to(cuda), on_gpu["index"], on_gpu["z"], on_gpu["y"], on_gpu["x"],
                                         *grid.tile, shape[2], 0, out_dtype)
                assert torch.equal(got.cpu(), want)
        for blend in BLEND_MODES:
            grid = Grid(shape, (4, 16, 16), (2, 8, 8), mode=blend)
            on_gpu = {name: getattr(grid, name).to(cuda) for name in ("index", "z", "y", "x")}
            for tile_dtype in OUT_DTYPES:
                tiles = torch.randn((grid.index.shape[0], shape[1], *grid.tile), generator=gen).to(tile_dtype)
                want = torch.zeros(shape)
                grid.blend(ref, want, tiles)
                runs = []
                for _ in range(2):
                    got = torch.zeros(shape, device=cuda)
                    ext.tile_blend_3d(got, tiles.to(cuda), on_gpu["index"], on_gpu["z"], on_gpu["y"], on_gpu["x"],
                                      *shape[2:], 0, *grid.overlap, grid.mode)
                    runs.append(got.cpu())
                assert torch.equal(runs[0], runs[1])
                assert_close(runs[0], want, torch.float32)


@pytest.mark.gpu
def test_cuda_device_mismatch_is_refused():
    from n2n_fast.ops import tiling as ext

    with pytest.raises(RuntimeError, match="index must be on the volume's device"):
        ext.tile_gather_3d(torch.rand(1, 1, 4, 8, 8, device="cuda"), torch.tensor([[0, 0, 0, 0]]),
                           torch.tensor([0], device="cuda"), torch.tensor([0], device="cuda"),
                           torch.tensor([0], device="cuda"), 4, 8, 8, 4, 0, torch.float32)
