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
