"""Tiling ops: extension (CPU kernels over the shared csrc/tiling.h) == plain PyTorch reference; geometry; CUDA build."""
import os
import re
import shutil
import subprocess

import pytest
import torch

from n2n_fast import _ext
from n2n_fast.padding import mirror_index
from n2n_fast.reference import tiling as ref
from n2n_fast.inference.plan import MODES, axis_origins, make_plan, stride_for
from tiling3d_cases import random_volume  # tests/tiling3d_cases.py
from tolerance import assert_close

IN_DTYPES = (torch.uint8, torch.uint16, torch.float16, torch.bfloat16, torch.float32, torch.float64)
OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# (N, C, H, W): one pixel, one row, one column, odd sizes, images smaller and larger than a tile
SHAPES = ((1, 1, 1, 1), (1, 3, 1, 17), (2, 1, 23, 1), (2, 3, 37, 53), (1, 2, 70, 45))


@pytest.fixture(scope="module")
def ext():
    if _ext.ops() is None or not _ext.has_op("tile_gather"):
        pytest.fail(f"the extension must be built for this test suite: {_ext.reason()}")
    from n2n_fast.ops import tiling

    return tiling


_image = random_volume  # any shape: integers over their whole range, floats in [0, 1)


def _all_tiles(plan, n_images):
    rows, cols = len(plan.row_origins), len(plan.col_origins)
    return torch.tensor([(n, r, c) for n in range(n_images) for r in range(rows) for c in range(cols)])


def test_mirror_rule_matches_padding_module():
    """tiling_plan's mirror (used for band bounds) and the reference's padding.mirror_index agree everywhere."""
    from n2n_fast.inference.plan import _mirror

    for size in (1, 2, 3, 7):
        positions = torch.arange(-5 * size - 3, 6 * size + 4)
        assert [_mirror(int(p), size) for p in positions] == mirror_index(positions, size).tolist()


def test_axis_origins_cover_aligned_and_bounded():
    for length in (1, 31, 32, 33, 255, 256, 257, 448, 449, 512, 600, 2047):
        for margin in (0, 32):
            origins, extent = axis_origins(length, 256, 192, 32, margin)
            assert all((o + margin) % 32 == 0 for o in origins) and extent % 32 == 0
            assert origins[0] == -margin and origins[-1] + extent >= length + margin
            assert origins[-1] + extent - (length + margin) < 32  # padding past the end stays below the alignment
            assert all(0 < b - a <= 192 for a, b in zip(origins, origins[1:]))
    assert make_plan(512, 512, 256, 64, 32, "cosine").count == 9  # astronaut: 3 x 3 tiles at the defaults


@pytest.mark.parametrize("tile,overlap,match", [(250, 64, "multiple"), (256, 128, "tile / 2"), (256, -1, ">= 0"),
                                                (16, 0, "multiple"), (32, 8, "stride of 0"), (256.0, 64, "int")])
def test_plan_rejects_bad_geometry(tile, overlap, match):
    with pytest.raises((ValueError, TypeError), match=match):
        stride_for(tile, overlap, 32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", IN_DTYPES)
def test_gather_matches_reference(ext, gen, shape, dtype):
    image = _image(gen, shape, dtype)
    height = shape[2]
    # every padding position: origins far before, inside and far past the image, periodic repeats included
    row_origins = torch.tensor([-3 * height - 5, -7, -1, 0, 2, height - 1, height + 3, 4 * height + 9])
    col_origins = torch.tensor([-2 * shape[3] - 3, -1, 0, shape[3] // 2, 3 * shape[3] + 1])
    index = torch.tensor([(n, r, c) for n in range(shape[0]) for r in range(len(row_origins))
                          for c in range(len(col_origins))])
    for out_dtype in OUT_DTYPES if dtype == torch.float32 else (torch.float32,):
        got = ext.tile_gather(image, index, row_origins, col_origins, 11, 9, height, 0, out_dtype)
        want = ref.tile_gather(image, index, row_origins, col_origins, 11, 9, height, 0, out_dtype)
        assert got.dtype == out_dtype and torch.equal(got, want)


def test_gather_strided_band(ext, gen):
    """An (H, W, C) layout viewed as (1, C, H, W), and a band of rows [row0, row0 + rows) of a taller image."""
    hwc = _image(gen, (41, 29, 3), torch.uint16)
    image = hwc.permute(2, 0, 1)[None]
    plan = make_plan(41, 29, 16, 4, 8, "cosine")
    index = _all_tiles(plan, 1)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
    whole = ref.tile_gather(image, index, rows, cols, plan.tile_h, plan.tile_w, 41, 0, torch.float32)
    assert torch.equal(ext.tile_gather(image, index, rows, cols, plan.tile_h, plan.tile_w, 41, 0, torch.float32),
                       whole)
    band_index = index[index[:, 1] == 1]
    top = plan.row_origins[1]
    band = image[:, :, top:top + plan.tile_h]
    got = ext.tile_gather(band, band_index, rows, cols, plan.tile_h, plan.tile_w, 41, top, torch.float32)
    assert torch.equal(got, whole[index[:, 1] == 1])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("blend", list(MODES))
@pytest.mark.parametrize("tile_dtype", OUT_DTYPES)
def test_blend_matches_reference(ext, gen, shape, blend, tile_dtype):
    n_images, channels, height, width = shape
    plan = make_plan(height, width, 16, 4, 8, blend)
    index = _all_tiles(plan, n_images)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
    tiles = torch.randn((index.shape[0], channels, plan.tile_h, plan.tile_w), generator=gen).to(tile_dtype)
    start = torch.randn(shape, generator=gen)  # blend adds onto what is there
    for batch in (index.shape[0], 3):  # the whole grid at once, or streamed in batches of 3 tiles
        got, want = start.clone(), start.clone()
        for first in range(0, index.shape[0], batch):
            part = slice(first, first + batch)
            ext.tile_blend(got, tiles[part], index[part], rows, cols, height, width, 0, plan.overlap, plan.mode)
            ref.tile_blend(want, tiles[part], index[part], rows, cols, height, width, 0, plan.overlap, plan.mode)
        assert_close(got, want, torch.float32)


def test_blend_band_writes_only_its_rows(ext, gen):
    """Blending into a band (rows [row0, row0 + rows)) writes exactly the band's part of the full result."""
    plan = make_plan(61, 50, 32, 8, 8, "cosine")
    index = _all_tiles(plan, 2)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
    tiles = torch.randn((index.shape[0], 3, plan.tile_h, plan.tile_w), generator=gen)
    full = torch.zeros(2, 3, 61, 50)
    ref.tile_blend(full, tiles, index, rows, cols, 61, 50, 0, plan.overlap, plan.mode)
    band = torch.zeros(2, 3, 20, 50)
    ext.tile_blend(band, tiles, index, rows, cols, 61, 50, 17, plan.overlap, plan.mode)
    assert_close(band, full[:, :, 17:37], torch.float32)


def test_blend_same_bits_at_any_thread_count(ext, gen):
    """The CPU blend splits the band by output rows: the per-pixel sum order, hence every bit, is fixed."""
    plan = make_plan(97, 130, 32, 8, 8, "cosine")
    index = _all_tiles(plan, 2)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
    tiles = torch.randn((index.shape[0], 3, plan.tile_h, plan.tile_w), generator=gen)
    start = torch.randn(2, 3, 97, 130, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            out = start.clone()
            ext.tile_blend(out, tiles, index, rows, cols, 97, 130, 0, plan.overlap, plan.mode)
            results.append(out)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], other) for other in results[1:])
    assert not torch.equal(results[0], start)


@pytest.mark.parametrize("blend", list(MODES))
def test_weights_partition_unity(blend):
    """Blending constant tiles reproduces the constant: the normalised weights sum to one at every pixel."""
    plan = make_plan(100, 77, 32, 8, 8, blend)
    index = _all_tiles(plan, 1)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
    out = torch.zeros(1, 1, 100, 77)
    ref.tile_blend(out, torch.ones(index.shape[0], 1, plan.tile_h, plan.tile_w), index, rows, cols, 100, 77, 0,
                   plan.overlap, plan.mode)
    assert_close(out, torch.ones_like(out), torch.float32)


def test_window_shapes():
    """Cosine: 1 in the middle, a ramp over `overlap` at each end, floor above zero; gaussian peaks at the centre."""
    cosine = ref.blend_window(64, 16, MODES["cosine"])
    assert torch.all(cosine[16:48] == 1) and 0 < cosine[0] < 0.01 and cosine.min() >= ref.WINDOW_FLOOR
    assert torch.allclose(cosine, cosine.flip(0))
    gauss = ref.blend_window(64, 16, MODES["gaussian"])
    assert gauss.argmax() in (31, 32) and gauss.min() == ref.WINDOW_FLOOR


def test_ops_pass_opcheck(ext, gen):
    image = _image(gen, (1, 2, 13, 10), torch.uint8)
    plan = make_plan(13, 10, 16, 4, 8, "cosine")
    index = _all_tiles(plan, 1)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
    torch.library.opcheck(torch.ops.n2n_fast.tile_gather.default,
                          (image, index, rows, cols, plan.tile_h, plan.tile_w, 13, 0, torch.float32))
    tiles = torch.randn(index.shape[0], 2, plan.tile_h, plan.tile_w, generator=gen)
    torch.library.opcheck(torch.ops.n2n_fast.tile_blend.default,
                          (torch.zeros(1, 2, 13, 10), tiles, index, rows, cols, 13, 10, 0, plan.overlap, 0))


def test_ops_run_under_torch_compile_fullgraph(ext, gen):
    image = _image(gen, (1, 3, 40, 50), torch.uint8)
    plan = make_plan(40, 50, 32, 8, 8, "gaussian")
    index = _all_tiles(plan, 1)
    rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)

    def gather_model_blend(image, out):
        tiles = torch.ops.n2n_fast.tile_gather(image, index, rows, cols, plan.tile_h, plan.tile_w, 40, 0,
                                               torch.float32)
        torch.ops.n2n_fast.tile_blend(out, tiles * 2, index, rows, cols, 40, 50, 0, plan.overlap, plan.mode)
        return out

    eager = gather_model_blend(image, torch.zeros(1, 3, 40, 50))
    compiled = torch.compile(gather_model_blend, fullgraph=True)(image, torch.zeros(1, 3, 40, 50))
    assert torch.equal(eager, compiled)
    assert_close(eager, ref.to_unit(image, torch.float32) * 2)


def test_cuda_kernels_compile_without_spills(tmp_path):
    """nvcc -Xptxas -v for sm_80 and sm_90: every kernel of csrc/cuda/tiling.cu compiles with 0 spill bytes."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("nvcc not found")
    from torch.utils import cpp_extension

    root = os.path.join(os.path.dirname(__file__), "..", "csrc")
    includes = [f"-I{path}" for path in cpp_extension.include_paths(device_type="cuda")] + [f"-I{root}"]
    for arch in (80, 90):
        # -cubin: device code only (the host side is the extension build's business), seconds instead of minutes
        command = [nvcc, "-cubin", os.path.join(root, "cuda", "tiling.cu"), "-o", str(tmp_path / f"t{arch}.cubin"),
                   f"-arch=sm_{arch}", "-std=c++20", "-O3", "--use_fast_math", "-Xptxas=-v",
                   "--expt-relaxed-constexpr", "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                   "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", *includes]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", result.stderr)
        assert len(spills) >= 10, result.stderr[-2000:]  # every kernel instantiation reported
        assert all(stores == "0" and loads == "0" for stores, loads in spills), result.stderr


@pytest.mark.gpu
def test_cuda_ops_match_reference(gen):
    from n2n_fast.ops import tiling as ext

    for shape in SHAPES:
        for dtype in IN_DTYPES:
            image = _image(gen, shape, dtype)
            plan = make_plan(shape[2], shape[3], 16, 4, 8, "cosine")
            index = _all_tiles(plan, shape[0])
            rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
            want = ref.tile_gather(image, index, rows, cols, plan.tile_h, plan.tile_w, shape[2], 0, torch.float32)
            got = ext.tile_gather(image.cuda(), index.cuda(), rows.cuda(), cols.cuda(), plan.tile_h, plan.tile_w,
                                  shape[2], 0, torch.float32)
            assert torch.equal(got.cpu(), want)
        for blend in MODES:
            plan = make_plan(shape[2], shape[3], 16, 4, 8, blend)
            index = _all_tiles(plan, shape[0])
            rows, cols = torch.tensor(plan.row_origins), torch.tensor(plan.col_origins)
            tiles = torch.randn((index.shape[0], shape[1], plan.tile_h, plan.tile_w), generator=gen)
            want = torch.zeros(shape)
            ref.tile_blend(want, tiles, index, rows, cols, shape[2], shape[3], 0, plan.overlap, plan.mode)
            got = torch.full(shape, 0.0, device="cuda")
            ext.tile_blend(got, tiles.cuda(), index.cuda(), rows.cuda(), cols.cuda(), shape[2], shape[3], 0,
                           plan.overlap, plan.mode)
            assert_close(got.cpu(), want, torch.float32)
