"""n2n_fast.export of 3-D networks (UNet(dims=3)): ONNX with dynamic batch/depth/height/width against PyTorch in
onnxruntime (the mirror padding to every axis's alignment inside the graph), the bioimage.io package with a z axis
(validated offline, its test tensors run through onnxruntime), the CLI with a 3-D checkpoint, and bad input.
Networks are tiny (features 8) and z_pools small, so the padded volumes stay small."""
import zipfile

import numpy as np
import pytest
import torch

from extras import require_extra
from processing_steps import apply_steps  # tests/interop/processing_steps.py

require_extra("export", "onnx", "onnxscript", "onnxruntime", "bioimageio.spec")

import onnx  # noqa: E402

import n2n_fast  # noqa: E402
from n2n_fast import Gaussian, UNet  # noqa: E402
from n2n_fast.cli import main  # noqa: E402
from n2n_fast.interop.onnx_model import ONNX_ATOL, ONNX_RTOL, AlignedUNet, run_onnx  # noqa: E402

# (batch, depth, height, width): odd sizes in every axis with a batch, a single slice, a few slices
ONNX_SIZES = [(2, 13, 37, 41), (1, 1, 37, 41), (1, 4, 37, 41)]
# (in_channels, z_pools, normalisation): grey without a map (z alignment 4), RGB with one (z alignment 2); each
# export costs 15-20 s on the shared cores, so one network covers both the channels and the map
NETS = [(1, 2, None), (3, 1, (120.0, 35.0))]
MAPPED = 1  # the index of the one with a map


def _assert_close_to_torch(got, expected, net=None):
    """onnxruntime vs PyTorch within the float32 tolerance the export module states, 1e-5 + 1e-4·|y|, in the
    network's units and for outputs of up to unit size. A normalisation map's scale multiplies the convolutions'
    rounding differences, so data-unit outputs are mapped back by (y - offset) / scale first. Those differences
    also grow with the size of the activations, and these untrained features-8 networks output up to 3-4 (a
    trained denoiser's outputs lie near [0, 1]): the absolute part is scaled by max(1, max|y|). Measured
    (these sizes, 3 draws each, docs/export.md §4): NETS within 0.31 of the unscaled bound, but another seed's
    grey z_pools-1 network, max|y| 3-3.7, up to 1.05 of it; the paper-width net (features 48) within 0.31."""
    assert got.shape == expected.shape
    if net is not None and net.normalisation is not None:
        offset, scale = net.normalisation
        got, expected = (got - offset) / scale, (expected - offset) / scale
    np.testing.assert_allclose(got, expected, rtol=ONNX_RTOL, atol=ONNX_ATOL * max(1.0, np.abs(expected).max()))


def _net(channels, z_pools, normalisation=None, seed=0):
    torch.manual_seed(seed)
    return UNet(channels, features=8, dims=3, z_pools=z_pools, normalisation=normalisation).eval()


def _input(net, shape, gen):
    """Fresh input in the network's data units: [0, 1], or with a map offset ± scale (standardised data in
    [-1, 1] inside the network)."""
    x = torch.rand(shape[0], net.in_channels, *shape[1:], generator=gen)
    if net.normalisation is None:
        return x
    offset, scale = net.normalisation
    return offset + scale * (2 * x - 1)


# ---- the always-pad formulation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("z_pools", [0, 2, 5])
@pytest.mark.parametrize("size", [(1, 1, 1), (3, 5, 7), (4, 32, 32), (5, 33, 17)], ids=lambda s: "x".join(map(str, s)))
def test_aligned_unet_3d_equals_the_eager_unet_bitwise(z_pools, size, gen):
    """Every axis is padded to its own alignment ((2**z_pools, 32, 32)) by the same mirror rule as UNet.forward
    (reflection, periodic past the axis, replication of a one-slice axis), so the outputs are identical."""
    net = _net(1, z_pools)
    x = torch.rand(2, 1, *size, generator=gen)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(AlignedUNet(net)(x), expected)
    assert expected.abs().max() > 1e-4  # not a trivially zero output


# ---- ONNX ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """exported(i) -> (the network NETS[i], its ONNX file), each exported once for the module."""
    done = {}

    def get(index):
        if index not in done:
            net = _net(*NETS[index], seed=index)
            done[index] = net, n2n_fast.export(net, tmp_path_factory.mktemp("onnx3d") / "volume.onnx")
        return done[index]
    return get


@pytest.fixture(params=range(len(NETS)), ids=[f"c{c}-z{z}{'-mapped' if m else ''}" for c, z, m in NETS])
def onnx3d(request, exported):
    return exported(request.param)


@pytest.mark.parametrize("shape", ONNX_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_onnx_3d_matches_pytorch(onnx3d, shape, gen):
    net, path = onnx3d
    x = _input(net, shape, gen)
    with torch.no_grad():
        expected = net(x).numpy()
    _assert_close_to_torch(run_onnx(path, x.numpy()), expected, net)
    assert np.abs(expected).max() > 1e-3


def test_onnx_3d_declares_dynamic_batch_depth_height_width(onnx3d):
    net, path = onnx3d
    model = onnx.load(str(path))
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    for value, channels in ((graph_input, net.in_channels), (graph_output, net.out_channels)):
        dims = value.type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, False, True, True, True], value.name
        assert dims[1].dim_value == channels


def test_the_normalisation_map_is_inside_the_3d_graph(exported, gen):
    """Data-unit inputs give the mapped network's data-unit outputs (test_onnx_3d_matches_pytorch), not those of
    the same weights without the map: the map is in the graph."""
    net, path = exported(MAPPED)
    plain = _net(net.in_channels, net.z_pools)
    plain.load_state_dict(net.state_dict())
    x = _input(net, (1, 5, 19, 23), gen)
    with torch.no_grad():
        unmapped = plain(x).numpy()
    assert not np.allclose(run_onnx(path, x.numpy()), unmapped, rtol=1e-2)


# ---- the CLI and the bioimage.io package from a 3-D checkpoint ------------------------------------------------
@pytest.fixture(scope="module")
def trained3d(tmp_path_factory):
    """A real (tiny) 3-D checkpoint from train(dims=3) on a 16-bit stack of 8 slices: z_pools 2 (crop depth 4)."""
    volume = (np.random.default_rng(0).random((8, 32, 32)) * 65535).astype(np.uint16)
    result = n2n_fast.train(data=volume, axes="ZYX", dims=3, noise=Gaussian(0.1), steps=2, batch_size=1,
                            crop=(4, 32, 32), features=8, precision="float32", progress=False, plot=False,
                            out_dir=tmp_path_factory.mktemp("run3d"), checkpoint_every=2)
    assert result.model.z_pools == 2
    return result.checkpoint


@pytest.fixture(scope="module")
def package3d(trained3d, tmp_path_factory):
    """The package written by `n2n-fast export` from the 3-D checkpoint, and a folder to unpack it into."""
    folder = tmp_path_factory.mktemp("bioimageio3d")
    path = folder / "volume.zip"
    assert main(["export", "--checkpoint", str(trained3d), "--author", "A. Tester", str(path)]) == 0
    return path, folder / "unpacked"


def test_3d_package_passes_the_bioimageio_validator(package3d):
    from bioimageio.spec import ModelDescr, load_description

    description = load_description(package3d[0], perform_io_checks=True)
    assert isinstance(description, ModelDescr), description.validation_summary.format()
    assert description.validation_summary.status in ("valid-format", "passed")
    assert str(description.format_version).startswith("0.5")


def test_3d_package_declares_a_z_axis_tiles_and_halo(package3d):
    """Axes b, c, z, y, x; z tiles of 3·2**z_pools + k·2**z_pools slices with a halo of 2**z_pools (z_pools 2: 12 +
    k·4, halo 4); y and x as in 2-D (96 + k·32, halo 32)."""
    from bioimageio.spec import load_description

    description = load_description(package3d[0], perform_io_checks=False)
    (tensor_in,), (tensor_out,) = description.inputs, description.outputs
    for tensor in (tensor_in, tensor_out):
        assert [a.type for a in tensor.axes] == ["batch", "channel", "space", "space", "space"]
        assert [str(a.id) for a in tensor.axes[2:]] == ["z", "y", "x"]
    assert [(a.size.min, a.size.step) for a in tensor_in.axes[2:]] == [(12, 4), (96, 32), (96, 32)]
    assert [a.halo for a in tensor_out.axes[2:]] == [4, 32, 32]
    assert all(str(a.size.tensor_id) == "input" for a in tensor_out.axes[2:])
    assert tensor_in.data.type == "uint16" and tensor_out.data.type == "float32"  # from the checkpoint's data
    assert "3d" in description.tags


def test_3d_package_test_tensors_run_through_onnxruntime(package3d, trained3d):
    """The declared preprocessing, the ONNX weights and the postprocessing reproduce the test output; it is the
    checkpoint's network's output (not just self-consistent)."""
    from bioimageio.spec import load_description

    path, folder = package3d
    description = load_description(path, perform_io_checks=False)
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
        card = archive.read("README.md").decode()
    test_input, test_output = np.load(folder / "test_input.npy"), np.load(folder / "test_output.npy")
    assert test_input.dtype == np.uint16 and test_input.shape == (1, 1, 12, 96, 96)  # the smallest tile
    model_input = apply_steps(description.inputs[0].preprocessing, test_input)
    assert model_input.dtype == np.float32 and 0 <= model_input.min() and model_input.max() <= 1
    got = apply_steps(description.outputs[0].postprocessing, run_onnx(folder / "weights.onnx", model_input))
    np.testing.assert_allclose(got, test_output, rtol=ONNX_RTOL, atol=ONNX_ATOL * 65535)
    with torch.no_grad():
        direct = n2n_fast.load(trained3d)(torch.from_numpy(model_input)).numpy() * 65535
    np.testing.assert_allclose(test_output, direct, rtol=ONNX_RTOL, atol=ONNX_ATOL * 65535)
    assert test_output.std() > 100  # the network did something (16-bit units)
    for fact in ("3-D volume", "(batch, channel, z, y, x)", "4x32x32 crops", "1 volume(s), dtype uint16"):
        assert fact in card


def test_3d_package_from_a_model_object_with_a_blobs_volume(tmp_path):
    """A given test volume (smoothed binary blobs, RGB, float32) is cropped at its far ends to a declared size and
    validates with its z axis."""
    from bioimageio.spec import load_description
    from scipy.ndimage import gaussian_filter
    from skimage.data import binary_blobs

    blobs = binary_blobs(length=100, n_dim=3, volume_fraction=0.3, rng=1)[:9].astype(np.float32)
    volume = np.stack([gaussian_filter(np.roll(blobs, 7 * c, axis=2), 1.0) for c in range(3)], axis=-1)
    path = n2n_fast.export(_net(3, 1), tmp_path / "rgb3d.zip", test_image=volume, license="MIT")
    description = load_description(path, perform_io_checks=True)
    assert description.validation_summary.status in ("valid-format", "passed")
    with zipfile.ZipFile(path) as archive:
        archive.extract("test_input.npy", tmp_path)
    test_input = np.load(tmp_path / "test_input.npy")
    assert test_input.shape == (1, 3, 8, 96, 96)  # z: 6 + k·2, y-x: 96 + k·32
    np.testing.assert_array_equal(np.moveaxis(test_input[0], 0, -1), volume[:8, :96, :96])


# ---- bad input -------------------------------------------------------------------------------------------------
def test_3d_bad_input_is_refused_before_any_work(tmp_path):
    net = _net(1, 2)
    with pytest.raises(TypeError, match=r"expected an n2n_fast.UNet or the path of an n2n_fast checkpoint, got Conv3d"):
        n2n_fast.export(torch.nn.Conv3d(1, 1, 3), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"test_image: expected \(D, H, W\) with 1 channel\(s\) of dtype float32, got "
                                         r"shape \(128, 128\)"):
        n2n_fast.export(net, tmp_path / "m.zip", test_image=np.zeros((128, 128), np.float32))
    with pytest.raises(ValueError, match=r"test_image: needs at least 12x96x96 voxels \(D x H x W\), got "
                                         r"\(8, 96, 96\)"):
        n2n_fast.export(net, tmp_path / "m.zip", test_image=np.zeros((8, 96, 96), np.float32))
    assert list(tmp_path.iterdir()) == []
