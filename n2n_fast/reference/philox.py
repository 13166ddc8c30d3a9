"""Philox4x32-10 in int64 tensor arithmetic, bit-identical to `tl.philox` (and csrc/philox.h).

Words are carried as int64 tensors holding values in [0, 2**32). Slow (about 20 M words/s on 2 cores) but exact on
any device: it is the oracle for the Triton and C++ implementations.
"""
import torch

_MASK32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57  # Salmon et al. 2011, Philox4x32 multipliers
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85  # Weyl sequence key increments (golden ratio, sqrt(3) - 1)


def _mul_hi_lo(a, b):
    """(a * b) >> 32 and (a * b) & 0xffffffff for a < 2**32 constant and b a 32-bit int64 tensor, without
    overflowing int64: split b into 16-bit halves so every partial product stays below 2**48."""
    b_hi, b_lo = b >> 16, b & 0xFFFF
    p_hi, p_lo = a * b_hi, a * b_lo
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & _MASK32
    return hi, lo


def philox4x32(seed, c0, c1, c2, c3, rounds=10):
    """Four words of Philox4x32-`rounds` for counters (c0, c1, c2, c3) and a 64-bit seed (key = lo, hi words).

    Counters are int64 tensors (or ints) in [0, 2**32), broadcast together; returns four int64 tensors."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    k0, k1 = seed & _MASK32, seed >> 32
    c0, c1, c2, c3 = torch.broadcast_tensors(*[torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3)])
    for _ in range(rounds):
        hi_b, lo_b = _mul_hi_lo(_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _KEY_A) & _MASK32, (k1 + _KEY_B) & _MASK32
    return c0, c1, c2, c3


def philox_words(counters, seed):
    """Philox words (int32, same shape) for int32 counters of shape (..., 4): the reference of the `philox` op."""
    words = counters.to(torch.int64) & _MASK32
    out = torch.stack(philox4x32(seed, *words.unbind(-1)), dim=-1)
    return out.to(torch.int32)  # int64 -> int32 wraps, keeping the bit pattern
