"""Philox4x32-10 words on the fastest backend that serves the tensors: the public face of the `philox` op.

The data path draws its choices (image, crop, flip, realisation, Neighbor2Neighbor cell pairs) from these words
(n2n_fast/training/data.py documents that layout); the noise kernels call Philox inline instead (n2n_fast/noise.py).
"""
import torch

from . import _backend

_MASK32 = 0xFFFFFFFF


def philox_words(counters, seed, *, backend=None):
    """Philox4x32-10 words (int32, same shape) for int32 counters of shape (..., 4) and a 64-bit seed."""
    if not isinstance(counters, torch.Tensor) or counters.dtype != torch.int32 or counters.dim() < 1 \
            or counters.shape[-1] != 4:
        got = f"{counters.dtype} {tuple(counters.shape)}" if isinstance(counters, torch.Tensor) else type(counters)
        raise TypeError(f"counters: expected an int32 tensor of shape (..., 4), got {got}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed!r}")
    _, words = _backend.choose("philox", counters.device, backend, counters=counters)
    return words(counters, seed)


def host_words(seed, first, count, c1, c2, c3):
    """Four lists of `count` Python ints in [0, 2**32): the words for counters (first + i, c1, c2, c3), drawn on
    the CPU (choices the host needs as ints)."""
    counters = torch.empty(count, 4, dtype=torch.int64)
    counters[:, 0] = torch.arange(first, first + count, dtype=torch.int64) & _MASK32
    counters[:, 1:] = torch.tensor([c1, c2, c3], dtype=torch.int64) & _MASK32
    words = philox_words(counters.to(torch.int32), seed).to(torch.int64) & _MASK32  # int32 bits -> [0, 2**32)
    return [column.tolist() for column in words.unbind(1)]
