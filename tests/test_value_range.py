"""value_range= (n2n_fast/value_range.py): float images in a stated range, not 0-255 floats taken as [0, 1]."""
import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import UNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNet(1, features=8).eval()


def _image(seed=0, shape=(70, 90)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_denoise_refuses_0_255_floats_without_a_range(model):
    with pytest.raises(ValueError, match=r"image: float pixels reach 25\d.*value_range=\(low, high\).*'hdr'"):
        n2n_fast.denoise(model, _image() * 255, tile=64, overlap=16)


def test_denoise_in_the_stated_units_matches_unit_data(model):
    image = _image()
    unit = n2n_fast.denoise(model, image, tile=64, overlap=16)
    levels = n2n_fast.denoise(model, image * 255, tile=64, overlap=16, value_range=(0, 255))
    assert levels.dtype == np.float32
    np.testing.assert_allclose(levels, unit * 255, rtol=0, atol=255 * 4e-6)
    shifted = n2n_fast.denoise(model, torch.from_numpy(image * 1000 - 200)[None], tile=64, overlap=16,
                               value_range=(-200, 800))  # tensors too, and a low other than 0
    np.testing.assert_allclose(shifted[0].numpy(), unit * 1000 - 200, rtol=0, atol=1000 * 4e-6)


def test_denoise_hdr_takes_values_above_4(model):
    image = _image() * 10
    result = n2n_fast.denoise(model, image, tile=64, overlap=16, value_range="hdr")
    assert result.shape == image.shape and np.isfinite(result).all()


def test_denoise_range_refused_for_integers_and_integer_out(model):
    with pytest.raises(ValueError, match=r"value_range: \(0.0, 255.0\) was given but image holds uint8"):
        n2n_fast.denoise(model, (_image() * 255).astype(np.uint8), value_range=(0, 255))
    with pytest.raises(ValueError, match=r"out: value_range=.*uint8 out cannot hold"):
        n2n_fast.denoise(model, _image() * 255, value_range=(0, 255), out=np.empty((70, 90), np.uint8))


def _train(tmp_path, data, **kwargs):
    return n2n_fast.train(data=data, noise=n2n_fast.noise.Gaussian(0.1), steps=2, batch_size=2, crop=32,
                          features=8, out_dir=tmp_path / "run", device="cpu", progress=False, plot=False, **kwargs)


def test_train_refuses_0_255_floats_without_a_range(tmp_path):
    with pytest.raises(ValueError, match=r"data: float pixels reach 25\d.*value_range=\(low, high\)"):
        _train(tmp_path, _image(shape=(40, 40)) * 255)


def test_train_in_the_stated_units_trains_as_unit_data(tmp_path):
    image = _image(shape=(40, 40))
    unit = _train(tmp_path / "a", image)
    levels = _train(tmp_path / "b", image * 255, value_range=(0, 255))
    assert abs(unit.history[-1]["loss"] - levels.history[-1]["loss"]) < 1e-4 * unit.history[-1]["loss"]
    assert torch.load(levels.checkpoint, weights_only=True)["train_args"]["value_range"] == (0.0, 255.0)
    _train(tmp_path / "c", image * 10, value_range="hdr")  # HDR floats above 4 are taken as they are


@pytest.mark.parametrize("bad, error", [((255, 0), ValueError), ((0, float("nan")), ValueError), ("rgb", ValueError),
                                        (255, TypeError), ([0, 1, 2], TypeError), ((True, 2), TypeError)])
def test_bad_value_range_refused_by_train(tmp_path, bad, error):
    with pytest.raises(error, match=r"value_range: .*accepted: None"):
        _train(tmp_path, _image(shape=(40, 40)), value_range=bad)


def test_train_range_refused_for_integer_images(tmp_path):
    with pytest.raises(ValueError, match=r"value_range: \(0.0, 255.0\) was given but data holds uint8 pixels"):
        _train(tmp_path, (_image(shape=(40, 40)) * 255).astype(np.uint8), value_range=(0, 255))


def test_cli_denoise_range_gives_results_in_the_files_units(tmp_path, model, capsys):
    from checkpoints import save_model  # tests/checkpoints.py

    from n2n_fast.cli import main

    checkpoint = str(save_model(model, tmp_path / "m.pt"))
    image = _image()
    np.save(tmp_path / "unit.npy", image)
    np.save(tmp_path / "levels.npy", image * 255)
    assert main(["denoise", "--checkpoint", checkpoint, str(tmp_path / "unit.npy"), str(tmp_path / "u.npy")]) == 0
    assert main(["denoise", "--checkpoint", checkpoint, "--range", "0,255", str(tmp_path / "levels.npy"),
                 str(tmp_path / "l.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "l.npy"), np.load(tmp_path / "u.npy") * 255, rtol=0,
                               atol=255 * 4e-6)
    capsys.readouterr()
    assert main(["denoise", "--checkpoint", checkpoint, str(tmp_path / "levels.npy"), str(tmp_path / "x.npy")]) != 0
    err = capsys.readouterr().err.strip()
    assert "levels.npy" in err and "--range" in err and "Traceback" not in err and len(err.splitlines()) == 2
    assert not (tmp_path / "x.npy").exists()


def test_cli_train_range(tmp_path, capsys):
    from n2n_fast.cli import main

    np.save(tmp_path / "a.npy", _image(shape=(40, 40)) * 255)
    argv = ["train", "--data", str(tmp_path / "a.npy"), "--noise", "gaussian:25", "--steps", "1", "--crop", "32",
            "--features", "8", "--device", "cpu", "--quiet", "--out"]
    assert main(argv + [str(tmp_path / "refused")]) != 0
    assert "value_range" in capsys.readouterr().err
    assert main(argv + [str(tmp_path / "run"), "--range", "0,255"]) == 0
    out = capsys.readouterr().out
    assert "sigma=0.098" in out and "--range 0,255" in out  # 25 in the data's 0-255 units is 25/255


def test_numpy_scalars_are_accepted_as_a_range():
    from n2n_fast.value_range import check_value_range

    assert check_value_range((np.float32(0), np.int64(255))) == (0.0, 255.0)
