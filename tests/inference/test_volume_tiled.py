"""Tiled 3-D denoise (n2n_fast/inference/volume.py, volume_plan.py, volume_stream.py): tiled against whole-volume
inference, the slab stream against one pass over the volume, the plan against its budget, every dtype and layout,
out= memmaps, the two tiling backends, and the refusals."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import n2n_fast
from n2n_fast import _backend
from n2n_fast.conventions import INPUT_SCALE
from n2n_fast.inference.denoise import denoise_plan
from n2n_fast.padding import mirror_index
from n2n_fast.reference.tiling import tile_blend_3d, tile_gather_3d
from tolerance import assert_close

ODD = (13, 37, 41)  # every axis odd, straddling the tiles below


class ConvNet3d(nn.Module):
    """Two 3x3x3 convolutions: a receptive-field radius of 2 voxels, so stitch tiling with margins >= 2 is exact."""
    dims = 3

    def __init__(self, channels=1):
        super().__init__()
        self.in_channels, self.alignment, self.spatial_alignment = channels, 4, (2, 4, 4)
        self.a, self.b = nn.Conv3d(channels, 4, 3, padding=1), nn.Conv3d(4, channels, 3, padding=1)

    def forward(self, x):
        return self.b(F.leaky_relu(self.a(x), 0.1))


@pytest.fixture
def conv3d():
    torch.manual_seed(0)
    return ConvNet3d().eval()


def _volume(shape=ODD, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _run(net, volume):
    with torch.inference_mode():
        return net(torch.from_numpy(np.ascontiguousarray(volume))[None, None])[0, 0].numpy()


def _padded_whole(net, volume, margins):
    """The network on the whole volume mirror-padded by `margins` (z, y, x) on both sides, cropped back."""
    x = torch.from_numpy(volume)[None, None]
    for dim, margin in zip((2, 3, 4), margins):
        size = x.shape[dim]
        x = x.index_select(dim, mirror_index(torch.arange(-margin, size + margin), size))
    with torch.inference_mode():
        y = net(x)[0, 0].numpy()
    return y[tuple(slice(m, m + s) for m, s in zip(margins, volume.shape))]


def test_stitch_is_whole_volume_inference_where_the_receptive_field_fits(conv3d):
    volume = _volume()
    options = dict(tile=(10, 12, 16), overlap=4, blend="stitch")
    plan = denoise_plan(conv3d, volume, axes="ZYX", **options).plan
    assert plan.count >= 8 and plan.grid[0] >= 3  # several z tile rows: slabs carried over
    tiled = n2n_fast.denoise(conv3d, volume, axes="ZYX", **options)
    expected = _padded_whole(conv3d, volume, [o // 2 for o in plan.overlap])
    assert_close(torch.from_numpy(tiled), torch.from_numpy(expected))


@pytest.mark.parametrize("blend", ["cosine", "gaussian", "stitch"])
def test_slab_stream_equals_one_pass_over_the_volume(conv3d, blend):
    """The z slabs (source planes read per tile row, output planes carried over and written once) add exactly
    what gathering and blending every tile over the whole volume at once adds, bit for bit."""
    volume = _volume(seed=1)
    options = dict(tile=(6, 12, 16), overlap=(2, 4, 4), blend=blend, batch_size=5)
    plan = denoise_plan(conv3d, volume, axes="ZYX", **options).plan
    assert plan.grid[0] >= 3 and plan.count >= 8
    tiled = n2n_fast.denoise(conv3d, volume, axes="ZYX", backend="reference", **options)
    whole = torch.from_numpy(volume)[None, None]
    origins = [torch.tensor(o) for o in plan.origins]
    index = torch.tensor(plan.index())
    tiles = tile_gather_3d(whole, index, *origins, *plan.tile, ODD[0], 0, torch.float32)
    with torch.inference_mode():
        result = conv3d(tiles)
    out = torch.zeros((1, 1) + ODD)
    tile_blend_3d(out, result, index, *origins, *ODD, 0, *plan.overlap, plan.mode)
    np.testing.assert_array_equal(tiled, out[0, 0].numpy())


def test_one_tile_is_the_network_on_the_whole_volume():
    torch.manual_seed(1)
    net = n2n_fast.UNet(1, features=4, dims=3, z_pools=2).eval()
    volume = _volume((5, 30, 33), seed=2)
    assert denoise_plan(net, volume, axes="ZYX").plan.count == 1
    np.testing.assert_array_equal(n2n_fast.denoise(net, volume, axes="ZYX"), _run(net, volume))


@pytest.fixture(scope="module")
def trained3d(tmp_path_factory):
    """A tiny 3-D U-Net trained briefly (N2N on a smooth phantom, ~10 s): an untrained network's response to tile
    borders says little about a trained one's (docs/tiling.md §8)."""
    from scipy.ndimage import gaussian_filter

    torch.set_num_threads(1)
    clean = gaussian_filter(np.random.default_rng(3).random((16, 64, 64)), 2.0).astype(np.float32)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    result = n2n_fast.train(data=clean, axes="ZYX", noise=n2n_fast.Gaussian(0.1), steps=60, batch_size=2,
                            crop=(8, 32, 32), lr=1e-3, seed=0, out_dir=str(tmp_path_factory.mktemp("run3d")),
                            features=4, dims=3, precision="auto", progress=False, plot=False, log_every=60,
                            checkpoint_every=60)
    return result.model.eval()


def _psnr(a, b):
    return 10 * np.log10(1 / float(np.mean((a.astype(np.float64) - b) ** 2)))


def test_trained_network_tiled_at_the_auto_overlap_matches_whole(trained3d):
    """8 tiles (2 x 2 x 2 of 16 x 64 x 64: every voxel near a seam in some axis) at the auto overlap: >= 50 dB against
    whole-volume inference, the goal the overlap rule is measured for; without overlap the seams show (measured
    62 and 45 dB)."""
    from scipy.ndimage import gaussian_filter

    volume = gaussian_filter(_volume((24, 96, 96), seed=4) * 0.8 + 0.1, 1.0).astype(np.float32)
    whole = _run(trained3d, volume)
    chosen = denoise_plan(trained3d, volume, axes="ZYX", tile=(16, 64, 64))
    assert chosen.plan.count >= 8 and chosen.auto_overlap and chosen.plan.overlap == (8, 32, 32)
    tiled = n2n_fast.denoise(trained3d, volume, axes="ZYX", tile=(16, 64, 64))
    seams = n2n_fast.denoise(trained3d, volume, axes="ZYX", tile=(16, 64, 64), overlap=0)
    assert _psnr(tiled, whole) >= 50 > _psnr(seams, whole) + 3, chosen.describe()


def test_plan_is_deterministic_within_budget_and_aligned():
    net = n2n_fast.UNet(1, features=8, dims=3, z_pools=3)
    volume = np.zeros((40, 200, 150), np.uint16)
    for budget in (100 << 20, 256 << 20, 1 << 30, 4 << 30):
        chosen = denoise_plan(net, volume, axes="ZYX", memory_budget=budget)
        assert chosen == denoise_plan(net, volume, axes="ZYX", memory_budget=budget)
        assert chosen.estimated_bytes <= budget and chosen.auto_tile and chosen.auto_overlap
        plan = chosen.plan
        for side, align, origins, length, overlap in zip(plan.tile, net.spatial_alignment, plan.origins,
                                                         volume.shape, plan.overlap):
            assert side % align == 0 and all(o % align == 0 for o in origins) and 2 * overlap <= side
            assert origins[0] <= 0 and origins[-1] + side >= length  # the tiles cover the axis
    small = denoise_plan(net, volume, axes="ZYX", memory_budget=100 << 20)
    assert small.plan.count > 8 and "tiles of" in small.describe() and "budget" in small.describe()
    pinned = denoise_plan(net, volume, axes="ZYX", memory_budget=256 << 20).plan  # the same on any machine
    assert (pinned.grid, pinned.tile, pinned.overlap) == ((5, 2, 2), (8, 160, 96), (0, 64, 32))
    assert pinned.origins == ((0, 8, 16, 24, 32), (0, 64), (0, 64))
    assert denoise_plan(net, volume, axes="ZYX", memory_budget=4 << 30).plan.count == 1


def _numpy_dtypes():
    """The tiling ops' image dtypes (n2n_fast/_backend.py TILE_IMAGES) that numpy has: bfloat16 has no numpy twin."""
    names = [str(d).replace("torch.", "") for d in _backend.TILE_IMAGES]
    return [np.dtype(name) for name in names if hasattr(np, name)]


@pytest.mark.parametrize("dtype", _numpy_dtypes(), ids=str)
def test_every_dtype_comes_back_as_it_went_in(conv3d, dtype):
    volume = _volume(seed=5)
    peak = {np.uint8: 255, np.uint16: 65535}.get(dtype.type)
    raw = np.rint(volume * peak).astype(dtype) if peak else volume.astype(dtype)
    options = dict(tile=(6, 12, 16), overlap=(2, 4, 4))
    out = n2n_fast.denoise(conv3d, raw, axes="ZYX", **options)
    assert out.dtype == dtype and out.shape == raw.shape
    # what the gather hands the network: integers times the float32 reciprocal of their peak, floats to float32
    unit = raw.astype(np.float32) * np.float32(INPUT_SCALE[torch.from_numpy(raw).dtype]) if peak else \
        raw.astype(np.float32)
    expected = n2n_fast.denoise(conv3d, unit, axes="ZYX", **options)
    from n2n_fast.io import from_unit

    np.testing.assert_array_equal(out, from_unit(expected, dtype))


def test_layouts_give_the_same_volume():
    torch.manual_seed(2)
    net = ConvNet3d(channels=2).eval()
    zyxc = np.random.default_rng(6).random(ODD + (2,)).astype(np.float32)
    options = dict(tile=(6, 12, 16), overlap=(2, 4, 4))
    a = n2n_fast.denoise(net, zyxc, axes="ZYXC", **options)
    b = n2n_fast.denoise(net, np.ascontiguousarray(np.moveaxis(zyxc, 3, 0)), axes="CZYX", **options)
    assert a.shape == zyxc.shape and b.shape == (2,) + ODD
    np.testing.assert_array_equal(np.moveaxis(b, 0, 3), a)
    torch.manual_seed(3)
    single = ConvNet3d().eval()
    zyx = n2n_fast.denoise(single, zyxc[..., 0], axes="ZYX", **options)
    np.testing.assert_array_equal(n2n_fast.denoise(single, zyxc[..., :1], axes="ZYXC", **options)[..., 0], zyx)


def test_memmaps_in_and_out(conv3d, tmp_path):
    volume = _volume(seed=7)
    source = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=np.float32, shape=ODD)
    source[:] = volume
    source.flush()
    source = np.load(tmp_path / "in.npy", mmap_mode="r")  # read-only
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=ODD)
    out[:] = np.nan  # poisoned: every plane must be written
    options = dict(tile=(6, 12, 16), overlap=(2, 4, 4))
    returned = n2n_fast.denoise(conv3d, source, axes="ZYX", out=out, **options)
    assert returned is out
    out.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), n2n_fast.denoise(conv3d, volume, axes="ZYX",
                                                                                   **options))


def test_reference_and_extension_backends_agree(conv3d):
    volume = _volume(seed=8)
    for blend in ("cosine", "gaussian", "stitch"):
        options = dict(tile=(6, 12, 16), overlap=(2, 4, 4), blend=blend)
        assert_close(torch.from_numpy(n2n_fast.denoise(conv3d, volume, axes="ZYX", backend="extension", **options)),
                     torch.from_numpy(n2n_fast.denoise(conv3d, volume, axes="ZYX", backend="reference", **options)))


def test_value_range_normalisation_bf16_and_progress(conv3d, capsys):
    volume = _volume(seed=9)
    options = dict(tile=(6, 12, 16), overlap=(2, 4, 4))
    in_units = n2n_fast.denoise(conv3d, volume * 1000, axes="ZYX", value_range=(0, 1000), **options)
    assert_close(torch.from_numpy(in_units / 1000), torch.from_numpy(n2n_fast.denoise(conv3d, volume, axes="ZYX",
                                                                                      **options)))
    torch.manual_seed(4)
    mapped = n2n_fast.UNet(1, features=4, dims=3, z_pools=1, normalisation=(500.0, 200.0)).eval()
    far = (volume[:4, :20, :24] * 1000).astype(np.float32)  # far above [0, 1]: the network's map takes it
    np.testing.assert_array_equal(n2n_fast.denoise(mapped, far, axes="ZYX"), _run(mapped, far))
    bf16 = n2n_fast.denoise(conv3d, volume, axes="ZYX", precision="bfloat16", progress=True, **options)
    assert "tile" in capsys.readouterr().err
    assert_close(torch.from_numpy(bf16), torch.from_numpy(n2n_fast.denoise(conv3d, volume, axes="ZYX", **options)),
                 torch.bfloat16, scale=4)


def test_bad_arguments_are_refused_by_name(conv3d):
    volume = _volume()
    net = n2n_fast.UNet(1, features=4, dims=3, z_pools=2)
    with pytest.raises(ValueError, match=r"tile: must be a positive multiple of the network's alignment 4 .*along z"):
        denoise_plan(net, volume, axes="ZYX", tile=(6, 32, 32))
    with pytest.raises(ValueError, match=r"tile: .*alignment 32 .*along y"):
        denoise_plan(net, volume, axes="ZYX", tile=(4, 48, 32))
    with pytest.raises(ValueError, match=r"overlap: must be smaller than tile / 2 .*along z"):
        denoise_plan(conv3d, volume, axes="ZYX", tile=(6, 12, 16), overlap=(3, 4, 4))
    with pytest.raises(ValueError, match=r"memory_budget: .* too small for one 4 x 32 x 32 tile .*give at least"):
        denoise_plan(net, volume, axes="ZYX", memory_budget=1 << 20)
    with pytest.raises(ValueError, match=r"overlap: .*needs tiles more than twice"):
        denoise_plan(net, np.zeros((8, 300, 300), np.float32), axes="ZYX", overlap=(0, 64, 64),
                     memory_budget=64 << 20)
    with pytest.raises(ValueError, match=r"tile: expected an int, 'auto' or \(z, y, x\)"):
        denoise_plan(net, volume, axes="ZYX", tile=(4, 32))
    with pytest.raises(ValueError, match="overlap: must be >= 0"):
        denoise_plan(net, volume, axes="ZYX", overlap=-1)
    with pytest.raises(ValueError, match="batch_size"):
        n2n_fast.denoise(net, volume, axes="ZYX", batch_size=0)
    with pytest.raises(ValueError, match="out: must have the image's shape"):
        n2n_fast.denoise(net, volume, axes="ZYX", out=np.empty((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="out: shares memory with image"):
        n2n_fast.denoise(net, volume, axes="ZYX", out=volume)
    with pytest.raises(TypeError, match="image: unsupported dtype int16"):
        n2n_fast.denoise(net, volume.astype(np.int16), axes="ZYX")
    with pytest.raises(ValueError, match="NaN"):
        n2n_fast.denoise(net, np.full(ODD, np.nan, np.float32), axes="ZYX")


def test_cli_denoise_of_a_volume_prints_its_plan_and_takes_per_axis_tiles(tmp_path, capsys):
    from checkpoints import save_model
    from n2n_fast.cli import main
    from n2n_fast.mrc import read_mrc, write_mrc

    torch.manual_seed(5)
    net = n2n_fast.UNet(1, features=4, dims=3, z_pools=1).eval()
    checkpoint = save_model(net, tmp_path / "net3d.pt")
    volume = _volume((9, 40, 70), seed=10)
    source = write_mrc(tmp_path / "tomo.mrc", volume)
    assert main(["denoise", "--checkpoint", str(checkpoint), str(source), str(tmp_path / "out.mrc"), "--device",
                 "cpu", "--quiet", "--tile", "6,32,64", "--overlap", "2,0,16"]) == 0
    printed = capsys.readouterr().out
    assert "plan: 2 x 2 x 2 tiles of 6 x 32 x 64 voxels (given), overlap 2 x 0 x 32" in printed
    expected = n2n_fast.denoise(net, volume, axes="ZYX", tile=(6, 32, 64), overlap=(2, 0, 16))
    np.testing.assert_array_equal(np.asarray(read_mrc(tmp_path / "out.mrc")[0]), expected)
