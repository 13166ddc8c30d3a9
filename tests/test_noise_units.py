"""Noise given in the data's units (n2n_fast/noise_units.py, docs/usage.md): the text forms, the units a dtype or a
folder of images implies, a Poisson peak from a camera gain, and errors that name the argument."""
import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import Bernoulli, Gaussian, Impulse, Poisson, PoissonGaussian, noise_from_text, noise_units


@pytest.mark.parametrize("text, units, expected", [
    ("gaussian:0-50", "8bit", Gaussian((0.0, 50 / 255))),
    ("gaussian:25", "8bit", Gaussian(25 / 255)),
    ("gaussian:100", "16bit", Gaussian(100 / 65535)),
    ("gaussian:0.1", "unit", Gaussian(0.1)),
    ("poisson:0.5-50", "8bit", Poisson((0.5, 50.0))),  # a peak is photons at full scale, in any units
    ("bernoulli:0.5", "16bit", Bernoulli(0.5)),
    ("impulse:0.7", "8bit", Impulse(0.7)),
    ("PoissonGaussian:30,10", "8bit", PoissonGaussian(30.0, 10 / 255)),
])
def test_text_in_named_units(text, units, expected):
    assert noise_from_text(text, units=units) == expected


@pytest.mark.parametrize("data, sigma", [
    (np.uint8, 25 / 255), (np.dtype("uint16"), 25 / 65535), (torch.uint8, 25 / 255), (np.float32, 25.0),
    (np.zeros((3, 4), np.uint16), 25 / 65535), ([np.zeros((3, 4), np.uint8)], 25 / 255),
])
def test_data_units_follow_the_dtype(data, sigma):
    assert noise_from_text("gaussian:25", data=data) == Gaussian(sigma)


def test_data_units_of_a_folder_and_a_stated_float_range(tmp_path):
    n2n_fast.write_image(str(tmp_path / "a.tif"), np.full((8, 9), 0.5), dtype=np.uint16)
    assert str(noise_units(data=tmp_path)) == "16bit units"
    assert noise_from_text("gaussian:100", data=str(tmp_path / "a.tif")) == Gaussian(100 / 65535)
    units = noise_units(data=np.float32, value_range=(0, 255))  # floats of 0-255: sigmas in those levels
    assert noise_from_text("gaussian:25", units=units) == Gaussian(25 / 255) and str(units) == "value_range=0,255 units"


def test_gain_gives_the_poisson_peak():
    units = noise_units(data=np.uint16, gain=2)
    assert units.peak == 32767.5 and "peak 32767.5 = full scale 65535 / gain 2" in str(units)
    assert noise_from_text("poisson", units=units) == Poisson(32767.5)
    assert noise_from_text("poissongaussian:10", data=np.uint16, gain=2) == PoissonGaussian(32767.5, 10 / 65535)
    assert noise_from_text("poisson:40", data=np.uint16, gain=2) == Poisson(40.0)  # a peak given wins


@pytest.mark.parametrize("call, error, fragment", [
    (lambda: noise_from_text("gauss:25", units="8bit"), ValueError, "noise: expected NAME:VALUE"),
    (lambda: noise_from_text("gaussian", units="8bit"), ValueError, "noise: expected NAME:VALUE"),
    (lambda: noise_from_text("gaussian:a-b", units="8bit"), ValueError, "noise: 'a-b' is not a number"),
    (lambda: noise_from_text("gaussian:1-2-3", units="8bit"), ValueError, "noise: '1-2-3' is not a number"),
    (lambda: noise_from_text("poissongaussian:30", units="8bit"), ValueError, "takes 2 comma-separated"),
    (lambda: noise_from_text(25, units="8bit"), TypeError, "noise: expected text"),
    (lambda: noise_from_text("gaussian:25", units="levels"), ValueError, "units: expected one of data, 8bit"),
    (lambda: noise_from_text("gaussian:25"), ValueError, "data: units='data' read the data's dtype"),
    (lambda: noise_from_text("gaussian:25", data=object()), TypeError, "data: expected a dtype"),
    (lambda: noise_from_text("gaussian:2", data=np.uint8, gain=2), ValueError, "gain: sets a Poisson peak"),
    (lambda: noise_from_text("impulse:0.1", units=noise_units(data=np.uint8, gain=2)), ValueError, "gain: sets a"),
    (lambda: noise_from_text("poisson", data=np.float32, gain=2), ValueError, "gain: a peak of full scale / gain"),
    (lambda: noise_from_text("poisson", data=np.uint8, gain=0), ValueError, "gain: expected a number > 0"),
    (lambda: noise_from_text("poisson:3", units=noise_units("8bit"), gain=2), TypeError, "units: a NoiseUnits"),
])
def test_bad_text_names_the_argument(call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()
