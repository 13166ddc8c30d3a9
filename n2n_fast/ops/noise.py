"""Python side of the extension's `n2n_fast::noisy_pair` op (C++ CPU kernel, csrc/cpu/noise.cpp)."""
import torch

from .. import conventions as nz


@torch.library.register_fake("n2n_fast::noisy_pair")
def _noisy_pair_fake(clean, model, params, seed, step, index, out_dtype):
    return nz.empty_pair_like(clean, model, out_dtype)


def noisy_pair(clean, noise, *, seed, step=0, index=0, out_dtype=torch.float32, stream=None):
    """(y0, y1, keep or None) for a validated (B, C, H, W) batch on the CPU (the backend entry of n2n_fast.noise;
    the dispatch never sends CUDA tensors here: the op has no CUDA kernel, so a tensor step is a CPU tensor and
    reading it is no device sync). `stream` (add_noise's copy) is ignored: the C++ kernel computes both."""
    y0, y1, keep = torch.ops.n2n_fast.noisy_pair(clean, noise.code, list(noise.parameter_ranges()),
                                                 nz.signed_seed(seed), int(step), index, out_dtype)
    return y0, y1, (keep if noise.code == nz.BERNOULLI else None)
