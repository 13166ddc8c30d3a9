"""n2n_fast: fast, trustworthy Noise2Noise training and inference for PyTorch.

The public API (docs/usage.md), and nothing else. Importing it loads neither triton nor the compiled extension:
the dispatch point (n2n_fast/_backend.py) loads an implementation when an op first needs it.
"""
from .conventions import __version__
from .inference.denoise import denoise
from .inference.folder import FilesNotDenoised, denoise_files
from .inference.zarr_io import denoise_zarr
from .installation import info
from .interop.export import export
from .io import read_image, write_image
from .loss import hdr_loss, l0_loss, l1_loss, l2_loss, n2n_loss
from .noise import Bernoulli, Gaussian, Impulse, Poisson, PoissonGaussian, add_noise, noisy_pair
from .noise_units import NoiseUnits, noise_from_text, noise_units
from .training.train import load, train
from .unet import UNet

__all__ = ["Bernoulli", "FilesNotDenoised", "Gaussian", "Impulse", "NoiseUnits", "Poisson", "PoissonGaussian", "UNet",
           "__version__", "add_noise", "denoise", "denoise_files", "denoise_zarr", "export", "hdr_loss", "info",
           "l0_loss", "l1_loss", "l2_loss", "load", "n2n_loss", "noise_from_text", "noise_units", "noisy_pair",
           "read_image", "train", "write_image"]
