"""3-D tiling ops: extension (CPU kernels over the shared csrc/tiling3d.h) == plain PyTorch reference, bitwise on
the CPU; dispatch and refusals; CUDA build and kernels."""
import ctypes
import os
import re
import shutil
import subprocess

import pytest
import torch

from n2n_fast import _backend, _ext
from n2n_fast.conventions import BLEND_MODES
from n2n_fast.inference.plan import axis_origins
from n2n_fast.padding import mirror_index
from n2n_fast.reference import tiling as ref
from n2n_fast.tiling import tile_ops
from tolerance import assert_close

IN_DTYPES = _backend.TILE_IMAGES
OUT_DTYPES = _backend.KERNEL_FLOATS  # the tile dtypes the models produce (csrc dispatch_tile_dtype)
# (N, C, D, H, W): one voxel, one plane, odd sizes, a volume smaller than a tile along some axes
SHAPES = ((1, 1, 1, 1, 1), (1, 2, 1, 5, 19), (2, 1, 7, 13, 37), (1, 3, 13, 37, 41))


@pytest.fixture(scope="module")
def ext():
    if _ext.ops() is None or not _ext.has_op("tile_gather_3d"):
        pytest.fail(f"the extension with the 3-D tiling ops must be built for this test suite: {_ext.reason()}")
    from n2n_fast.ops import tiling

    return tiling


def _volume(gen, shape, dtype):
    values = torch.rand(shape, generator=gen)
    if dtype == torch.uint8:
        return (values * 255).round().to(dtype)
    if dtype == torch.uint16:
        return (values * 65535).round().to(torch.int32).to(dtype)
    return values.to(dtype)


class Grid:
    """A tile grid over a volume: per-axis origins (from inference.plan.axis_origins), tile sizes, overlaps."""

    def __init__(self, shape, tile, overlap, alignment=4, mode="cosine"):
        self.shape = shape
        origins, self.tile, self.overlap = [], [], []
        for length, t, o in zip(shape[2:], tile, overlap):
            axis, extent = axis_origins(length, t, t - o, alignment, o // 2 if mode == "stitch" else 0)
            origins.append(torch.tensor(axis))
            self.tile.append(extent)
            self.overlap.append(o)
        self.z, self.y, self.x = origins
        self.mode = BLEND_MODES[mode]
        self.index = torch.tensor([(n, a, b, c) for n in range(shape[0]) for a in range(len(self.z))
                                   for b in range(len(self.y)) for c in range(len(self.x))])

    def gather(self, impl, volume, dtype, plane0=0, index=None):
        index = self.index if index is None else index
        return impl.tile_gather_3d(volume, index, self.z, self.y, self.x, *self.tile, self.shape[2], plane0, dtype)

    def blend(self, impl, out, tiles, plane0=0, index=None):
        index = self.index if index is None else index
        impl.tile_blend_3d(out, tiles, index, self.z, self.y, self.x, *self.shape[2:], plane0, *self.overlap,
                           self.mode)


def _padding_origins(length, tile):
    """Origins far before, inside and far past an axis of `length`: every mirror case, periodic repeats included."""
    return torch.tensor(sorted({-3 * length - 5, -tile + 1, -1, 0, length // 2, length - 1, 4 * length + 3}))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", IN_DTYPES)
def test_gather_matches_reference(ext, gen, shape, dtype):
    volume = _volume(gen, shape, dtype)
    tile = (4, 16, 9)
    z, y, x = (_padding_origins(length, t) for length, t in zip(shape[2:], tile))
    index = torch.tensor([(n, a, b, c) for n in range(shape[0]) for a in range(len(z)) for b in range(len(y))
                          for c in range(len(x))])
    for out_dtype in OUT_DTYPES:
        got = ext.tile_gather_3d(volume, index, z, y, x, *tile, shape[2], 0, out_dtype)
        want = ref.tile_gather_3d(volume, index, z, y, x, *tile, shape[2], 0, out_dtype)
        assert got.dtype == out_dtype and got.shape == (index.shape[0], shape[1], *tile)
        assert torch.equal(got, want)


def test_gather_slab_and_zyxc_view(ext, gen):
    """A ZYXC numpy volume viewed as (1, C, D, H, W) (no copy), and slabs of planes [plane0, plane0 + planes)."""
    zyxc = _volume(gen, (13, 37, 41, 3), torch.uint16).numpy()
    volume = torch.from_numpy(zyxc).permute(3, 0, 1, 2)[None]
    assert not volume.is_contiguous()
    grid = Grid(volume.shape, (4, 16, 16), (2, 8, 8))
    whole = grid.gather(ref, volume, torch.float32)
    assert torch.equal(grid.gather(ext, volume, torch.float32), whole)
    for iz in range(len(grid.z)):
        front = int(grid.z[iz])
        planes = mirror_index(torch.arange(front, front + grid.tile[0]), 13)
        plane0, end = int(planes.min()), int(planes.max()) + 1
        rows = grid.index[:, 1] == iz
        for impl in (ext, ref):
            got = grid.gather(impl, volume[:, :, plane0:end], torch.float32, plane0, grid.index[rows])
            assert torch.equal(got, whole[rows])


@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize("blend", list(BLEND_MODES))
@pytest.mark.parametrize("tile_dtype", OUT_DTYPES)
def test_blend_matches_reference(ext, gen, shape, blend, tile_dtype):
    grid = Grid(shape, (4, 16, 16), (2, 8, 4), mode=blend)
    tiles = torch.randn((grid.index.shape[0], shape[1], *grid.tile), generator=gen).to(tile_dtype)
    start = torch.randn(shape, generator=gen)  # blend adds onto what is there
    for batch in (grid.index.shape[0], 5):  # the whole grid at once, or streamed in batches of 5 tiles
        got, want = start.clone(), start.clone()
        for first in range(0, grid.index.shape[0], batch):
            part = slice(first, first + batch)
            grid.blend(ext, got, tiles[part], index=grid.index[part])
            grid.blend(ref, want, tiles[part], index=grid.index[part])
        assert torch.equal(got, want)


def test_blend_negative_and_overrunning_origins(ext, gen):
    """Origins before and past the volume along every axis (hand-made, not from a plan): only voxels inside count."""
    shape = (2, 2, 7, 13, 11)
    z, y, x = torch.tensor([-3, 1, 5]), torch.tensor([-6, 2, 9]), torch.tensor([-2, 4, 8])
    index = torch.tensor([(n, a, b, c) for n in range(2) for a in range(3) for b in range(3) for c in range(3)])
    tiles = torch.randn((index.shape[0], 2, 5, 9, 7), generator=gen)
    for mode in BLEND_MODES.values():
        got, want = torch.zeros(shape), torch.zeros(shape)
        ext.tile_blend_3d(got, tiles, index, z, y, x, 7, 13, 11, 0, 2, 4, 3, mode)
        ref.tile_blend_3d(want, tiles, index, z, y, x, 7, 13, 11, 0, 2, 4, 3, mode)
        assert torch.equal(got, want)


def test_blend_slab_writes_only_its_planes(ext, gen):
    """Blending into a slab (planes [plane0, plane0 + planes)) writes exactly the slab's part of the full result."""
    shape = (1, 2, 13, 21, 19)
    grid = Grid(shape, (4, 16, 16), (2, 8, 8))
    tiles = torch.randn((grid.index.shape[0], 2, *grid.tile), generator=gen)
    full = torch.zeros(shape)
    grid.blend(ref, full, tiles)
    for impl in (ext, ref):
        slab = torch.zeros(1, 2, 5, 21, 19)
        grid.blend(impl, slab, tiles, plane0=6)
        assert torch.equal(slab, full[:, :, 6:11])


def test_blend_into_strided_out(ext, gen):
    """out may be any strided view (a ZYXC buffer seen as (1, C, D, H, W))."""
    shape = (1, 3, 7, 13, 37)
    grid = Grid(shape, (4, 16, 16), (2, 8, 8), mode="gaussian")
    tiles = torch.randn((grid.index.shape[0], 3, *grid.tile), generator=gen)
    want = torch.zeros(shape)
    grid.blend(ref, want, tiles)
    buffer = torch.zeros(7, 13, 37, 3)
    grid.blend(ext, buffer.permute(3, 0, 1, 2)[None], tiles)
    assert torch.equal(buffer.permute(3, 0, 1, 2)[None], want)


@pytest.mark.parametrize("blend", list(BLEND_MODES))
def test_identity_network_returns_the_volume(ext, gen, blend):
    """Gather, an identity 'network', blend: the volume comes back (the weights of all tiles sum to 1 everywhere);
    an all-ones volume to float32 rounding, a random one likewise."""
    shape = (1, 2, 13, 37, 41)
    grid = Grid(shape, (8, 16, 16), (4, 8, 8), mode=blend)
    for volume in (torch.ones(shape), _volume(gen, shape, torch.float32)):
        for impl in (ext, ref):
            out = torch.zeros(shape)
            grid.blend(impl, out, grid.gather(impl, volume, torch.float32))
            assert_close(out, volume, torch.float32)


def test_zero_weight_does_not_leak_nan(ext, gen):
    """Stitch mode gives most tile voxels weight 0: NaN there must not reach the output (0 * NaN)."""
    shape = (1, 1, 13, 37, 41)
    grid = Grid(shape, (8, 16, 16), (4, 8, 8), mode="stitch")
    tiles = torch.rand((grid.index.shape[0], 1, *grid.tile), generator=gen)
    weights = [ref.axis_weights(o.tolist(), t, ov, grid.mode) for o, t, ov in zip((grid.z, grid.y, grid.x),
                                                                                  grid.tile, grid.overlap)]
    dropped = torch.stack([(weights[0][a, :, None, None] * weights[1][b, None, :, None] * weights[2][c]) == 0
                           for _, a, b, c in grid.index.tolist()])[:, None]
    assert dropped.any()
    out = torch.zeros(shape)
    grid.blend(ext, out, torch.where(dropped, torch.nan, tiles))
    assert not out.isnan().any()


def test_same_bits_at_any_thread_count(ext, gen):
    """The CPU blend splits the slab by output rows and the gather by tile rows: every bit is fixed."""
    shape = (2, 2, 13, 37, 41)
    grid = Grid(shape, (4, 16, 16), (2, 8, 8))
    volume = _volume(gen, shape, torch.bfloat16)
    tiles = torch.randn((grid.index.shape[0], 2, *grid.tile), generator=gen)
    start = torch.randn(shape, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3, 3):
            torch.set_num_threads(count)
            out = start.clone()
            grid.blend(ext, out, tiles)
            results.append((grid.gather(ext, volume, torch.float16), out))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0][0], g) and torch.equal(results[0][1], o) for g, o in results[1:])
    assert not torch.equal(results[0][1], start)


def test_ops_pass_opcheck(ext, gen):
    shape = (1, 2, 7, 13, 10)
    grid = Grid(shape, (4, 8, 8), (0, 0, 0))
    volume = _volume(gen, shape, torch.uint8)
    torch.library.opcheck(torch.ops.n2n_fast.tile_gather_3d.default,
                          (volume, grid.index, grid.z, grid.y, grid.x, *grid.tile, 7, 0, torch.float32))
    tiles = torch.randn(grid.index.shape[0], 2, *grid.tile, generator=gen)
    torch.library.opcheck(torch.ops.n2n_fast.tile_blend_3d.default,
                          (torch.zeros(shape), tiles, grid.index, grid.z, grid.y, grid.x, 7, 13, 10, 0, 2, 4, 4, 0))


def _bad_cases():
    """(description, gather or blend, changes to the good arguments, error match)."""
    return [
        ("volume rank", "gather", {"volume": torch.rand(1, 7, 13, 11)}, r"\(N, C, planes, H, W\)"),
        ("volume dtype", "gather", {"volume": torch.zeros(1, 1, 7, 13, 11, dtype=torch.int32)}, "image dtype"),
        ("tile dtype", "gather", {"dtype": torch.float64}, "dtype must be float32, bfloat16 or float16"),
        ("index shape", "gather", {"index": torch.zeros(2, 3, dtype=torch.long)}, r"\(K, 4\)"),
        ("index dtype", "blend", {"index": torch.zeros(1, 4, dtype=torch.int32)}, r"int64 of shape \(K, 4\)"),
        ("index volume", "gather", {"index": torch.tensor([[1, 0, 0, 0]])}, "out of range: 1 volume"),
        ("index tile", "blend", {"index": torch.tensor([[0, 0, 5, 0]])}, "out of range"),
        ("negative index", "gather", {"index": torch.tensor([[0, -1, 0, 0]])}, "out of range"),
        ("origins dtype", "gather", {"y": torch.tensor([0.0])}, "1-D int64"),
        ("unsorted", "blend", {"x": torch.tensor([4, 0])}, "x_origins must be sorted"),
        ("slab misses planes", "gather", {"volume": torch.rand(1, 1, 3, 13, 11), "plane0": 2},
         r"reads volume planes \[0, 2\] but the slab holds planes \[2, 5\)"),
        ("slab past depth", "gather", {"plane0": 1}, "inside the volume's depth"),
        ("tile size", "gather", {"tile_d": 0}, "tile sizes must be positive"),
        ("out dtype", "blend", {"out": torch.zeros(1, 1, 7, 13, 11, dtype=torch.float64)}, "out must be float32"),
        ("out width", "blend", {"width": 12}, "whole planes of 13 x 12"),
        ("tiles count", "blend", {"tiles": torch.zeros(2, 1, 4, 8, 8)}, "K = index rows"),
        ("tiles dtype", "blend", {"tiles": torch.zeros(1, 1, 4, 8, 8, dtype=torch.float64)}, "tiles must be float32"),
        ("overlap", "blend", {"overlap_y": -1}, "overlaps must be >= 0"),
        ("mode", "blend", {"blend_mode": 3}, "blend_mode must be 0"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda case: case[0])
def test_bad_input_errors(ext, case):
    _, op, changes, match = case
    good = dict(volume=torch.rand(1, 1, 7, 13, 11), out=torch.zeros(1, 1, 7, 13, 11),
                tiles=torch.zeros(1, 1, 4, 8, 8), index=torch.tensor([[0, 0, 0, 0]]), z=torch.tensor([-2]),
                y=torch.tensor([0, 4]), x=torch.tensor([0, 4]), tile_d=4, depth=7, height=13, width=11, plane0=0,
                dtype=torch.float32, overlap_y=0, blend_mode=0)
    a = {**good, **changes}
    with pytest.raises(RuntimeError, match=match):
        if op == "gather":
            ext.tile_gather_3d(a["volume"], a["index"], a["z"], a["y"], a["x"], a["tile_d"], 8, 8, a["depth"],
                               a["plane0"], a["dtype"])
        else:
            ext.tile_blend_3d(a["out"], a["tiles"], a["index"], a["z"], a["y"], a["x"], a["depth"], a["height"],
                              a["width"], a["plane0"], 0, a["overlap_y"], 0, a["blend_mode"])


def test_reference_refuses_a_slab_missing_planes():
    with pytest.raises(ValueError, match=r"volume: a tile at plane -2 reads volume planes \[0, 2\]"):
        ref.tile_gather_3d(torch.rand(1, 1, 3, 5, 5), torch.tensor([[0, 0, 0, 0]]), torch.tensor([-2]),
                           torch.tensor([0]), torch.tensor([0]), 3, 5, 5, 7, 1, torch.float32)


def test_tile_ops_dims(ext):
    assert tile_ops("cpu", "extension", dims=3) == (ext.tile_gather_3d, ext.tile_blend_3d)
    assert tile_ops("cpu", "reference", dims=3) == (ref.tile_gather_3d, ref.tile_blend_3d)
    assert tile_ops("cpu", "reference") == (ref.tile_gather, ref.tile_blend)
    with pytest.raises(ValueError, match="dims: expected 2"):
        tile_ops("cpu", dims=4)


def test_old_build_without_3d_ops_falls_back_to_reference(monkeypatch):
    """A binary built before the 3-D ops: the extension refuses with the reason, the reference serves."""
    monkeypatch.setattr(_ext, "has_op", lambda name: not name.endswith("_3d"))
    monkeypatch.setattr(_backend, "_CHOICES", {})
    impl = _backend.OPS["tile_blend_3d"][0]
    assert impl.refusal(torch.device("cpu")) == "the built extension has no op n2n_fast::tile_blend_3d (rebuild it)"
    assert tile_ops("cpu", dims=3) == (ref.tile_gather_3d, ref.tile_blend_3d)


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


def test_cuda_kernels_compile_without_spills(tmp_path):
    """nvcc -Xptxas -v for sm_80 and sm_90: every kernel of csrc/cuda/tiling3d.cu compiles with 0 spill bytes."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("nvcc not found")
    from torch.utils import cpp_extension

    root = os.path.join(os.path.dirname(__file__), "..", "csrc")
    includes = [f"-I{path}" for path in cpp_extension.include_paths(device_type="cuda")] + [f"-I{root}"]
    for arch in (80, 90):
        # -cubin: device code only (the host side is the extension build's business)
        command = [nvcc, "-cubin", os.path.join(root, "cuda", "tiling3d.cu"), "-o", str(tmp_path / f"t{arch}.cubin"),
                   f"-arch=sm_{arch}", "-std=c++20", "-O3", "--use_fast_math", "-Xptxas=-v",
                   "--expt-relaxed-constexpr", "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                   "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", *includes]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", result.stderr)
        # 6 image x 3 tile dtypes of gather, 3 tile dtypes of blend
        assert len(spills) == len(IN_DTYPES) * len(OUT_DTYPES) + len(OUT_DTYPES), result.stderr[-2000:]
        assert all(stores == "0" and loads == "0" for stores, loads in spills), result.stderr


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
            volume = _volume(gen, shape, dtype)
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
