"""denoise() of volumes by a 3-D network: whole-volume, the input's layout and dtype back, refusals that say what to
pass, MRC files keeping their voxel size."""
import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.conventions import INPUT_SCALE
from n2n_fast.inference.folder import denoise_files
from n2n_fast.mrc import VoxelGrid, read_mrc, write_mrc


@pytest.fixture
def net3d():
    torch.manual_seed(0)
    return n2n_fast.UNet(1, features=4, dims=3, z_pools=1).eval()


def _direct(net, volume):
    with torch.no_grad():
        return net(torch.from_numpy(volume)[None, None]).numpy()[0, 0]


def test_float_volume_is_denoised_whole(net3d):
    volume = np.random.default_rng(0).random((3, 20, 24)).astype(np.float32)
    out = n2n_fast.denoise(net3d, volume, axes="ZYX")
    assert out.shape == volume.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, _direct(net3d, volume))


def test_integer_volume_keeps_layout_and_dtype(net3d):
    volume = np.random.default_rng(1).integers(0, 65535, (4, 16, 16), dtype=np.uint16)
    zyxc = n2n_fast.denoise(net3d, volume[..., None], axes="ZYXC")
    czyx = n2n_fast.denoise(net3d, volume[None], axes="CZYX")
    assert zyxc.dtype == np.uint16 and zyxc.shape == (4, 16, 16, 1) and czyx.shape == (1, 4, 16, 16)
    np.testing.assert_array_equal(zyxc[..., 0], czyx[0])
    # scaled in as every tiling implementation scales integers: times the float32 reciprocal of the peak
    # (conventions.INPUT_SCALE, as 2-D denoise does), rounded back by io.from_unit
    scaled = volume.astype(np.float32) * np.float32(INPUT_SCALE[torch.uint16])
    expected = np.clip(np.rint(_direct(net3d, scaled) * 65535), 0, 65535)
    np.testing.assert_array_equal(zyxc[..., 0], expected.astype(np.uint16))


def test_refusals_say_what_to_pass(net3d):
    image = np.zeros((16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="3-D network .* single 2-D image .*axes='ZYX'"):
        n2n_fast.denoise(net3d, image)
    with pytest.raises(ValueError, match="time series"):
        n2n_fast.denoise(net3d, np.zeros((3, 16, 16), np.float32), axes="TYX")
    with pytest.raises(ValueError, match="say how the array of shape .* axes="):
        n2n_fast.denoise(net3d, np.zeros((3, 16, 16), np.float32))
    with pytest.raises(TypeError, match="numpy volumes"):
        n2n_fast.denoise(net3d, torch.zeros(1, 1, 4, 16, 16))
    with pytest.raises(ValueError, match="channels"):
        n2n_fast.denoise(net3d, np.zeros((3, 16, 16, 2), np.float32), axes="ZYXC")
    with pytest.raises(ValueError, match="image: float pixels reach"):
        n2n_fast.denoise(net3d, np.full((3, 16, 16), 100, np.float32), axes="ZYX")


def test_a_2d_network_given_a_batch_of_volumes_says_what_to_pass():
    net = n2n_fast.UNet(1, features=4).eval()
    with pytest.raises(ValueError, match=r"batch of volumes .* 2-D network .*axes='ZYX'.*dims=3"):
        n2n_fast.denoise(net, torch.zeros(1, 1, 4, 16, 16))


def test_mrc_volume_files_keep_voxel_size(tmp_path, net3d):
    grid = VoxelGrid(voxel_size=(4.0, 2.0, 2.0), origin=(1.0, 2.0, 3.0))
    volume = np.random.default_rng(2).random((3, 16, 16)).astype(np.float32)
    source = write_mrc(tmp_path / "tomo.mrc", volume, grid)
    written = denoise_files(net3d, str(source), str(tmp_path / "out.mrc"), device="cpu")
    data, read_grid = read_mrc(written[0][1])
    assert tuple(read_grid.voxel_size) == (4.0, 2.0, 2.0) and tuple(read_grid.origin) == (1.0, 2.0, 3.0)
    np.testing.assert_allclose(np.asarray(data), _direct(net3d, volume), atol=1e-6)
