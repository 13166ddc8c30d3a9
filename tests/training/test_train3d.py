"""train(..., dims=3): every mode on tiny volumes, 3-D crops and their Philox layout, bitwise resume, bad input."""
import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import Gaussian, Poisson
from n2n_fast.mrc import VoxelGrid, write_mrc
from n2n_fast.training import step as steps_module
from n2n_fast.training import volumes

TINY3 = dict(steps=3, batch_size=2, crop=(4, 16, 16), features=4, progress=False, precision="float32", plot=False,
             dims=3)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise reproducibility is promised for a fixed thread count
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def volume():
    return np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)


def _weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


@pytest.mark.parametrize("mode, loss", [("noisy", "l2"), ("noisy", "l1"), ("clean", "l2"), ("clean", "hdr"),
                                        ("pairs", "l1"), ("pairs", "l0")])
def test_every_mode_trains_on_volumes(tmp_path, volume, mode, loss):
    if mode == "pairs":
        source = dict(pairs=(volume, np.ascontiguousarray(volume[:, ::-1])))
    else:
        source = dict(data=volume, noise=Gaussian((0, 0.2)), targets=mode)
    result = n2n_fast.train(**source, loss=loss, axes="ZYX", out_dir=tmp_path, **TINY3)
    assert result.model.dims == 3 and result.model.z_pools == 2  # z_pool_levels(depth 4, isotropic)
    assert [row["step"] for row in result.history] == [3] and np.isfinite(result.history[-1]["loss"])
    assert n2n_fast.load(result.checkpoint).arguments()["dims"] == 3


def test_two_identical_runs_are_bitwise_equal_and_validate_whole_volumes(tmp_path, volume):
    args = dict(data=volume, noise=Poisson(30.0), axes="ZYX", val=volume, **TINY3)
    a = n2n_fast.train(out_dir=tmp_path / "a", **args)
    b = n2n_fast.train(out_dir=tmp_path / "b", **args)
    assert all(torch.equal(p, q) for p, q in zip(_weights(a.model), _weights(b.model)))
    assert a.history == [{**row, "images_per_s": a.history[0]["images_per_s"], "seconds": a.history[0]["seconds"]}
                         for row in b.history]
    assert np.isfinite(a.history[-1]["val_psnr"])


def test_resume_is_bitwise(tmp_path, volume, monkeypatch):
    args = dict(data=volume, noise=Gaussian(0.1), axes="ZYX", checkpoint_every=2, **{**TINY3, "steps": 4})
    whole = n2n_fast.train(out_dir=tmp_path / "whole", **args)
    real_step = steps_module.train_step

    def stop_at_two(run, step):
        if step == 2:
            raise RuntimeError("stopped")
        return real_step(run, step)

    monkeypatch.setattr(steps_module, "train_step", stop_at_two)
    with pytest.raises(RuntimeError, match="stopped"):
        n2n_fast.train(out_dir=tmp_path / "cut", **args)
    monkeypatch.undo()
    resumed = n2n_fast.train(out_dir=tmp_path / "cut", resume=True, **args)
    assert all(torch.equal(p, q) for p, q in zip(_weights(whole.model), _weights(resumed.model)))


def test_crop_picks_follow_the_layout():
    """The 2-D SAMPLE words stay as they are (volume, row, col, YX bits); DEPTH adds the slice and the z flip."""
    from n2n_fast.philox import host_words
    from n2n_fast.training.data import DATA_KEY, SAMPLE, draw_crops

    sizes, crop = [(10, 40, 36), (6, 33, 50)], (3, 16, 16)
    picks = volumes.draw_volume_crops(7, 5, 4, 64, sizes, crop)
    depth = host_words(7 ^ DATA_KEY, 4, 64, 0, 5, volumes.DEPTH)
    plane = draw_crops(7, 5, 4, 64, [s[1:] for s in sizes], 16)
    for (v, z, row, col, bits), (v2, row2, col2, bits2), w_z, w_flip in zip(picks, plane, depth[0], depth[1]):
        assert (v, row, col, bits & 7) == (v2, row2, col2, bits2)
        assert z == w_z % (sizes[v][0] - 2) and bits >> 3 == w_flip & 1
    assert {bits >> 3 for *_, bits in picks} == {0, 1} and volumes.DEPTH not in (SAMPLE, 1, 2)


def test_volume_crops_flip_and_turn():
    data = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1) / 32
    store = volumes.VolumeStore([data], "cpu")
    base = torch.from_numpy(data[..., 0])[None]
    assert torch.equal(store.crops([(0, 0, 0, 0, 8)], (2, 4, 4))[0], base.flip(-3))
    assert torch.equal(store.crops([(0, 0, 0, 0, 2)], (2, 4, 4))[0], torch.rot90(base, 1, dims=(-2, -1)))
    assert torch.equal(store.crops([(0, 1, 1, 2, 1)], (1, 2, 2))[0], base[:, 1:2, 1:3, 2:4].flip(-1))


def test_cube_crop_and_mrc_pairs_set_z_pools_from_voxel_size(tmp_path):
    rng = np.random.default_rng(1)
    grid = VoxelGrid(voxel_size=(12.0, 3.0, 3.0), origin=(0.0, 0.0, 0.0))  # anisotropy 4 -> 3 z-pooling levels
    even, odd = (write_mrc(tmp_path / f"{n}.mrc", rng.random((16, 24, 24)).astype(np.float32), grid)
                 for n in ("even", "odd"))
    result = n2n_fast.train(pairs=(even, odd), out_dir=tmp_path / "run", **{**TINY3, "crop": 16, "steps": 2})
    assert result.model.z_pools == 3


def test_bad_volume_input(tmp_path, volume):
    run = lambda **kw: n2n_fast.train(out_dir=tmp_path / "r", **{**TINY3, **kw})  # noqa: E731 (a one-line helper)
    with pytest.raises(ValueError, match=r"data: volume of 8x32x32 .* smaller than the crop 9x16x16"):
        run(data=volume, noise=Gaussian(0.1), axes="ZYX", crop=(9, 16, 16))
    with pytest.raises(ValueError, match="data: dims=3 trains on volumes, whose axes hold Z, but its axes are 'TYX'"):
        run(data=volume, noise=Gaussian(0.1), axes="TYX")
    with pytest.raises(ValueError, match="data: an array of shape .* needs axes="):
        run(data=volume, noise=Gaussian(0.1))
    with pytest.raises(ValueError, match="crop: height and width must be equal"):
        run(data=volume, noise=Gaussian(0.1), axes="ZYX", crop=(4, 16, 8))
    with pytest.raises(ValueError, match="dims: expected 2"):
        run(data=volume, noise=Gaussian(0.1), axes="ZYX", dims=4)
    with pytest.raises(ValueError, match="targets: Neighbor2Neighbor is 2-D only .*2x2"):
        run(data=volume, axes="ZYX", targets="neighbor")
    with pytest.raises(ValueError, match=r"pairs\[1\] .* shapes .* do not match"):
        run(pairs=(volume, volume[:6].copy()), axes="ZYX")
    a = write_mrc(tmp_path / "a.mrc", volume, VoxelGrid((2.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    b = write_mrc(tmp_path / "b.mrc", volume[::-1].copy(), VoxelGrid((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match=r"pairs\[1\] \(.*b.mrc\): voxel size .* differs"):
        run(pairs=(a, b))
    section = write_mrc(tmp_path / "section.mrc", volume[0], None)
    with pytest.raises(ValueError, match=r"section.mrc\): dims=3 .* reads as 'YX'"):
        run(data=section, noise=Gaussian(0.1))


def test_unreadable_mrc_mode_names_the_file(tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "complex.mrc") as f:
        f.set_data(np.zeros((4, 8, 8), dtype=np.complex64))
    with pytest.raises(ValueError, match=r"data: .*complex.mrc"):
        n2n_fast.train(data=str(tmp_path / "complex.mrc"), noise=Gaussian(0.1), out_dir=tmp_path / "r", **TINY3)


@pytest.mark.parametrize("mode", ["noisy", "clean", "pairs"])
def test_volume_runs_cut_crops_on_the_device_and_are_captured(volume, mode):
    """train(dims=3) builds DeviceVolumeCrops for resident volumes in every 3-D mode, and graph_step.refusal
    accepts the step (no GPU needed to ask); the crops it cuts are the host path's (draw_volume_crops +
    VolumeStore.crops), bit for bit."""
    from n2n_fast.crops import DeviceVolumeCrops
    from n2n_fast.training import graph_step

    realisations = [[volume[..., None]]] + ([[volume[:, ::-1, :, None].copy()]] if mode == "pairs" else [])
    stores = [volumes.VolumeStore(v, "cpu") for v in realisations]
    run = steps_module.make_run(steps_module.new_network(1, 4, 0, dims=3, z_pools=2), stores, mode=mode,
                                noise=Gaussian(0.1), loss="l2", seed=3, steps=4, batch_size=2, crop=(4, 16, 16),
                                lr=3e-4, rampdown=0.3, neighbor_weight=2.0, precision="float32")
    assert all(isinstance(crops, DeviceVolumeCrops) for crops in run.device_crops)
    assert graph_step.refusal(run, torch.device("cuda"), 1, False) is None
    for step in (0, 3):
        run.step_t.fill_(step)
        host = volumes.draw_volume_crops(3, step, 2, 2, stores[0].sizes, (4, 16, 16))
        for k, store in enumerate(stores):
            assert torch.equal(run.cut(k, run.picks(step, 2)), store.crops(host, (4, 16, 16)))


def test_graph_capture_refuses_volumes_read_from_disk():
    from types import SimpleNamespace

    from n2n_fast.training import graph_step

    run = SimpleNamespace(dims=3, device_crops=None)
    assert graph_step.refusal(run, torch.device("cuda"), 1, False) == (
        "the training volumes are read from disk (memmaps), so crops are cut on the host")


def test_uint16_channels_first_volumes_and_a_cube_crop(tmp_path):
    volume = np.random.default_rng(3).integers(0, 65535, (2, 6, 20, 20), dtype=np.uint16)  # CZYX, two channels
    result = n2n_fast.train(data=volume, axes="CZYX", noise=Gaussian(0.1), targets="clean", out_dir=tmp_path,
                            **{**TINY3, "crop": 6, "steps": 2})
    assert result.model.in_channels == 2 and result.model.z_pools == 2  # depth 6 -> floor(log2 6)
    out = n2n_fast.denoise(result.model, volume, axes="CZYX")
    assert out.dtype == np.uint16 and out.shape == volume.shape


def test_real_pairs_validate_on_given_noisy_and_clean_volumes(tmp_path, volume):
    noisy = np.clip(volume + 0.05, 0, 1).astype(np.float32)
    result = n2n_fast.train(pairs=(volume, np.ascontiguousarray(volume[::-1])), val=(noisy, volume), axes="ZYX",
                            out_dir=tmp_path, **TINY3)
    assert np.isfinite(result.history[-1]["val_psnr"]) and result.best_checkpoint is not None


@pytest.mark.parametrize("precision, channels_last, expected", [
    ("bfloat16", None, torch.channels_last_3d),  # auto: with bf16 (measured faster: docs/volumes.md §5)
    ("float32", None, torch.contiguous_format),
    ("float32", True, torch.channels_last_3d),
])
def test_volumes_take_channels_last_3d_where_asked_or_with_bf16(tmp_path, precision, channels_last, expected):
    volume = np.random.default_rng(4).random((6, 20, 20)).astype(np.float32)
    result = n2n_fast.train(data=[volume], axes="ZYX", dims=3, noise=n2n_fast.Gaussian(0.1), crop=(4, 16, 16),
                            steps=2, batch_size=2, features=4, precision=precision, channels_last=channels_last,
                            out_dir=tmp_path / "run", progress=False, plot=False)
    assert result.model.enc_conv1.weight.is_contiguous(memory_format=expected)
    assert all(np.isfinite(row["loss"]) for row in result.history)
