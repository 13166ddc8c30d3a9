"""n2n_fast: fast, trustworthy Noise2Noise training and inference for PyTorch.

Public API (README; docs/design.md §1). Names resolve lazily so `import n2n_fast` stays cheap and never imports
triton or the extension until an op needs them.
"""
import importlib

from .conventions import __version__  # noqa: F401

_PUBLIC = {
    # noise models and synthesis
    "Gaussian": "noise", "Poisson": "noise", "PoissonGaussian": "noise", "Bernoulli": "noise", "Impulse": "noise",
    "noisy_pair": "noise", "add_noise": "noise",
    # losses
    "l2_loss": "loss", "l1_loss": "loss", "l0_loss": "loss", "hdr_loss": "loss", "n2n_loss": "loss",
    # network, training, inference
    "UNet": "unet", "train": "train", "load": "train", "denoise": "tiling", "export": "export",
    "denoise_zarr": "zarr_io",
    # image I/O and diagnostics
    "read_image": "io", "write_image": "io", "info": "info",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


# `train`, `info` and `export` are also the names of their modules. Importing a submodule binds it as an attribute
# of the package on first import, which would shadow a lazily resolved function of the same name depending on import
# order; importing these eagerly makes the function win for good (later imports find the module loaded). export
# needs only torch and numpy at import (onnx and bioimageio.spec load when an export runs).
from .export import export  # noqa: E402
from .info import info  # noqa: E402
from .train import load, train  # noqa: E402


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'n2n_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # resolve once
    return value


def __dir__():
    return __all__
