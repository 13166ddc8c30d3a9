"""3-D tiling ops: extension (CPU kernels over the shared csrc/tiling3d.h) == plain PyTorch reference, bitwise on
the CPU; dispatch and refusals. The CUDA side: tests/test_ops_tiling3d_cuda.py."""
import pytest
import torch

from n2n_fast import _backend, _ext
from n2n_fast.conventions import BLEND_MODES
from n2n_fast.padding import mirror_index
from n2n_fast.reference import tiling as ref
from n2n_fast.tiling import tile_ops
from tiling3d_cases import IN_DTYPES, OUT_DTYPES, SHAPES, Grid, random_volume, extension_ops
from tolerance import assert_close


@pytest.fixture(scope="module")
def ext():
    return extension_ops()


def _padding_origins(length, tile):
    """Origins far before, inside and far past an axis of `length`: every mirror case, periodic repeats included."""
    return torch.tensor(sorted({-3 * length - 5, -tile + 1, -1, 0, length // 2, length - 1, 4 * length + 3}))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", IN_DTYPES)
def test_gather_matches_reference(ext, gen, shape, dtype):
    volume = random_volume(gen, shape, dtype)
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
    zyxc = random_volume(gen, (13, 37, 41, 3), torch.uint16).numpy()
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
    for volume in (torch.ones(shape), random_volume(gen, shape, torch.float32)):
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
    volume = random_volume(gen, shape, torch.bfloat16)
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
    volume = random_volume(gen, shape, torch.uint8)
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
