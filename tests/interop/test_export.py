"""n2n_fast.export: ONNX with dynamic batch/height/width against PyTorch in onnxruntime, the bioimage.io package
(validated offline by bioimageio.spec, its test tensors run through onnxruntime), the CLI, and bad input."""
import socket
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
from n2n_fast.interop import bioimageio as bio  # noqa: E402
from n2n_fast.cli import main  # noqa: E402
from n2n_fast.interop.onnx_model import ONNX_ATOL, ONNX_OPSET, ONNX_RTOL, AlignedUNet, _mirror_positions, run_onnx  # noqa: E402,E501
from n2n_fast.extras import MissingExtra, require  # noqa: E402
from n2n_fast.padding import mirror_index  # noqa: E402

# (batch, height, width): unaligned, tall and thin, tiny, and a batch of 2 at the 64² the graph was traced at
ONNX_SIZES = [(1, 97, 131), (1, 33, 40), (1, 200, 7), (2, 64, 64), (1, 1, 5)]


def _assert_close_to_torch(got, expected):
    """onnxruntime vs PyTorch within the float32 tolerance the export module states (and checks at export)."""
    np.testing.assert_allclose(got, expected, rtol=ONNX_RTOL, atol=ONNX_ATOL)


# ---- the always-pad formulation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 7, 31, 32, 33, 64, 97])
def test_mirror_positions_match_mirror_index(size):
    length = -(-size // 32) * 32 + 64  # beyond one reflection too
    assert torch.equal(_mirror_positions(length, size), mirror_index(torch.arange(length), size))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(1, 1), (5, 1), (33, 17), (32, 64), (64, 32), (97, 131), (200, 7)])
def test_aligned_unet_equals_the_eager_unet_bitwise(channels, size, gen):
    """The exported formulation gathers the same pixels as UNet.forward's conditional mirror_pad, so its outputs
    are identical, aligned sizes included (there the padding is zero rows)."""
    torch.manual_seed(0)
    net = UNet(channels, features=8).eval()
    x = torch.rand(2, channels, *size, generator=gen)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(AlignedUNet(net)(x), expected)
    assert expected.abs().max() > 1e-4  # not a trivially zero output


# ---- ONNX ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[1, 3], ids=["grey", "rgb"])
def onnx_model(request, tmp_path_factory):
    """(the paper U-Net, its ONNX file): exported once per channel count at 64², then run at other sizes."""
    torch.manual_seed(request.param)
    net = UNet(request.param).eval()
    path = n2n_fast.export(net, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return net, path


@pytest.mark.parametrize("shape", ONNX_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_onnx_matches_pytorch_at_other_sizes(onnx_model, shape, gen):
    net, path = onnx_model
    batch, height, width = shape
    x = torch.rand(batch, net.in_channels, height, width, generator=gen)
    with torch.no_grad():
        expected = net(x).numpy()
    got = run_onnx(path, x.numpy())
    assert got.shape == expected.shape
    _assert_close_to_torch(got, expected)


def test_onnx_declares_dynamic_batch_height_width(onnx_model):
    net, path = onnx_model
    model = onnx.load(str(path))
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    for value in (graph_input, graph_output):
        dims = value.type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, False, True, True], value.name
        assert dims[1].dim_value == net.in_channels
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [ONNX_OPSET]


def test_export_writes_an_atomic_file_only(onnx_model):
    _, path = onnx_model
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary or external-data files


# ---- bioimage.io -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (tiny) checkpoint from train() on 8-bit data: the package's dtype and model card come from it."""
    image = (np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8)
    result = n2n_fast.train(data=image, noise=Gaussian(0.1), loss="l1", steps=2, batch_size=1, crop=32,
                            features=8, precision="float32", out_dir=tmp_path_factory.mktemp("run"),
                            progress=False, plot=False, checkpoint_every=2)
    return result.checkpoint


@pytest.fixture(scope="module")
def package(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bioimageio")
    path = n2n_fast.export(trained, folder / "model.zip", format="bioimageio", authors=["A. Tester"])
    return path, folder / "unpacked"


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test (the validation must not need one)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_package_passes_the_bioimageio_validator_offline(package, offline):
    from bioimageio.spec import ModelDescr, load_description

    path, _ = package
    description = load_description(path, perform_io_checks=True)
    assert isinstance(description, ModelDescr), description.validation_summary.format()
    assert description.validation_summary.status in ("valid-format", "passed")
    assert str(description.format_version).startswith("0.5")


def test_package_declares_axes_sizes_halo_and_scaling(package):
    from bioimageio.spec import load_description

    description = load_description(package[0], perform_io_checks=False)
    (tensor_in,), (tensor_out,) = description.inputs, description.outputs
    assert [a.type for a in tensor_in.axes] == ["batch", "channel", "space", "space"]
    assert [str(a.id) for a in tensor_in.axes[2:]] == ["y", "x"]
    assert all((a.size.min, a.size.step) == (96, 32) for a in tensor_in.axes[2:])
    assert all(a.halo == 32 and str(a.size.tensor_id) == "input" for a in tensor_out.axes[2:])
    assert tensor_in.data.type == "uint8" and tensor_out.data.type == "float32"  # from the checkpoint's data
    gains = [p.kwargs.gain for p in tensor_in.preprocessing if p.id == "scale_linear"]
    assert gains == [pytest.approx(1 / 255)]
    assert [p.kwargs.gain for p in tensor_out.postprocessing if p.id == "scale_linear"] == [pytest.approx(255)]
    assert {"onnx", "pytorch_state_dict"} <= {w for w, d in description.weights if d is not None}


def test_package_test_tensors_run_through_onnxruntime(package):
    """The validator checks the description, not the model: run the preprocessing as the validated description
    resolves it, the ONNX weights and the postprocessing on the test input, and compare with the test output."""
    from bioimageio.spec import load_description

    path, folder = package
    description = load_description(path, perform_io_checks=False)
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    test_input, test_output = np.load(folder / "test_input.npy"), np.load(folder / "test_output.npy")
    assert test_input.dtype == np.uint8 and test_input.shape == (1, 1, 128, 128)
    model_input = apply_steps(description.inputs[0].preprocessing, test_input)
    assert model_input.dtype == np.float32 and 0 <= model_input.min() and model_input.max() <= 1
    got = apply_steps(description.outputs[0].postprocessing, run_onnx(folder / "weights.onnx", model_input))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, test_output, rtol=ONNX_RTOL, atol=ONNX_ATOL * 255)
    assert test_output.std() > 1  # the network did something (8-bit units)


def test_package_state_dict_and_model_card_come_from_the_checkpoint(package, trained):
    path, folder = package
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        card = archive.read("README.md").decode()
        archive.extract("weights.pt", folder)
    assert {"rdf.yaml", "weights.onnx", "weights.pt", "test_input.npy", "test_output.npy", "cover.png"} <= names
    saved = torch.load(trained, weights_only=True)
    state = torch.load(folder / "weights.pt", weights_only=True)
    assert state.keys() == saved["model"].keys()
    assert all(torch.equal(state[k], saved["model"][k]) for k in state)
    for fact in ("Gaussian(sigma=0.1)", "| loss | l1 |", "1 image(s), dtype uint8", "Noise2Noise (noisy targets)"):
        assert fact in card


@pytest.mark.parametrize("dtype,peak", [("uint16", 65535), ("float32", 1)])
def test_package_from_a_model_object_with_a_given_test_image(tmp_path, dtype, peak, gen):
    torch.manual_seed(0)
    net = UNet(3, features=8)
    image = (np.random.default_rng(1).random((130, 100, 3)) * peak).astype(dtype)
    path = n2n_fast.export(net, tmp_path / "rgb.zip", input_dtype=dtype, test_image=image, license="MIT")
    with zipfile.ZipFile(path) as archive:
        archive.extract("test_input.npy", tmp_path)
        card = archive.read("README.md").decode()
    test_input = np.load(tmp_path / "test_input.npy")
    assert test_input.shape == (1, 3, 128, 96)  # cropped to 96 + k * 32
    np.testing.assert_array_equal(test_input[0].transpose(1, 2, 0), image[:128, :96])
    assert "none: exported from a model object" in card


# ---- command line ----------------------------------------------------------------------------------------------
def test_cli_exports_onnx_and_refuses_to_overwrite(trained, tmp_path, capsys, gen):
    out = tmp_path / "cli.onnx"
    assert main(["export", "--checkpoint", str(trained), str(out)]) == 0  # format from the suffix
    net = n2n_fast.load(trained)
    x = torch.rand(1, 1, 45, 70, generator=gen)
    with torch.no_grad():
        _assert_close_to_torch(run_onnx(out, x.numpy()), net(x).numpy())
    before = out.read_bytes()
    assert main(["export", "--checkpoint", str(trained), "--format", "onnx", str(out)]) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["export", "--checkpoint", str(trained), "--overwrite", str(out)]) == 0


def test_cli_rejects_an_unknown_format(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--checkpoint", str(trained), "--format", "tflite", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


# ---- bad input -------------------------------------------------------------------------------------------------
@pytest.fixture
def small_net():
    torch.manual_seed(0)
    return UNet(1, features=8)


@pytest.mark.parametrize("name,format,match", [
    ("m.onnx", "tflite", r"format: unknown format 'tflite'; accepted: 'onnx', 'bioimageio'"),
    ("m.pt", None, r"format: not given and not implied by the suffix of .*m\.pt"),
    ("m.zip", "onnx", r"path: a onnx export is written to a \.onnx file"),
    ("m.onnx", "bioimageio", r"path: a bioimageio export is written to a \.zip file"),
    ("missing/m.onnx", None, r"path: the folder .*missing' does not exist"),
])
def test_bad_destination_is_refused_before_any_work(small_net, tmp_path, name, format, match):
    with pytest.raises(ValueError, match=match):
        n2n_fast.export(small_net, tmp_path / name, format=format)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(small_net, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        n2n_fast.export(small_net, path)
    assert path.read_bytes() == b"precious"
    folder = tmp_path / "f.onnx"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        n2n_fast.export(small_net, folder, overwrite=True)


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"model_or_checkpoint: .*notes\.pt' is not a readable n2n_fast checkpoint"):
        n2n_fast.export(text, tmp_path / "m.onnx")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=r"is not an n2n_fast checkpoint: expected keys"):
        n2n_fast.export(other, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="no checkpoint file"):
        n2n_fast.export(tmp_path / "absent.pt", tmp_path / "m.onnx")
    with pytest.raises(TypeError, match=r"expected an n2n_fast.UNet or the path of an n2n_fast checkpoint, got Conv2d"):
        n2n_fast.export(torch.nn.Conv2d(1, 1, 3), tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", "other.pt"]


def test_package_options_are_checked(small_net, tmp_path):
    with pytest.raises(TypeError, match="license only apply to format='bioimageio'"):
        n2n_fast.export(small_net, tmp_path / "m.onnx", license="MIT")
    with pytest.raises(ValueError, match="input_dtype: expected one of uint8, uint16, float32, got 'int32'"):
        n2n_fast.export(small_net, tmp_path / "m.zip", input_dtype="int32")
    with pytest.raises(ValueError, match=r"test_image: needs at least 96x96 pixels, got \(64, 200\)"):
        n2n_fast.export(small_net, tmp_path / "m.zip", test_image=np.zeros((64, 200), np.float32))
    with pytest.raises(ValueError, match=r"test_image: expected \(H, W\) with 1 channel\(s\) of dtype float32"):
        n2n_fast.export(small_net, tmp_path / "m.zip", test_image=np.zeros((128, 128), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_extra_names_the_extra_to_install(monkeypatch, small_net, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)  # import onnxscript -> ImportError
    with pytest.raises(MissingExtra, match=r"needs the optional packages of the \[export\] extra; missing: "
                                           r"onnxscript .*pip install 'n2n_fast\[export\]'"):
        n2n_fast.export(small_net, tmp_path / "m.onnx")
    assert require("export", "a feature", "numpy")[0] is np


def test_missing_extras_skip_locally_and_fail_in_ci(monkeypatch):
    from extras import require_extra as check

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"\[zarr\] extra is not installed \(missing no_such_pkg_xyz\)"):
        check("zarr", "numpy", "no_such_pkg_xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI: the \\[zarr\\] extra is not installed"):
        check("zarr", "no_such_pkg_xyz.sub")
    check("zarr", "numpy")  # present: nothing happens


def test_a_3d_network_is_exported_not_refused(tmp_path, gen):
    """3-D networks export too (once refused): a 5-D graph that matches PyTorch; the rest of 3-D export is tested
    in tests/interop/test_export3d.py."""
    torch.manual_seed(0)
    net = UNet(1, features=4, dims=3, z_pools=1).eval()
    path = n2n_fast.export(net, tmp_path / "net.onnx")
    assert len(onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim) == 5
    x = torch.rand(1, 1, 3, 20, 9, generator=gen)
    with torch.no_grad():
        _assert_close_to_torch(run_onnx(path, x.numpy()), net(x).numpy())


def test_the_normalisation_map_is_inside_the_onnx_graph(tmp_path, gen):
    """A trained network's affine map (docs/normalisation.md) travels in the graph: ONNX of data-unit inputs
    equals the network's data-unit outputs, and differs from the same weights without the map."""
    torch.manual_seed(5)
    net = UNet(1, features=8, normalisation=(120.0, 35.0)).eval()
    path = n2n_fast.export(net, tmp_path / "mapped.onnx")
    x = 120 + 35 * torch.randn(2, 1, 37, 41, generator=gen)  # data in its own units (tomogram-like floats)
    with torch.no_grad():
        expected = net(x).numpy()
        plain = UNet(1, features=8).eval()
        plain.load_state_dict(net.state_dict())
        unmapped = plain(x).numpy()
    got = run_onnx(path, x.numpy())
    _assert_close_to_torch(got, expected)
    assert not np.allclose(got, unmapped, rtol=1e-2)
