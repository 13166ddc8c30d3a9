"""Philox words from Triton: the shared building block of every noise kernel.

`_philox_words_kernel` exists so the raw words can be compared bit for bit with the reference and csrc/philox.h;
noise kernels call `tl.philox` directly with the counter layout documented in n2n_fast/noise.py.
"""
import torch
import triton
import triton.language as tl

from .device import on_device


@triton.jit
def _philox_words_kernel(
    counters_ptr,  # int32 (n, 4): counter words, row-major
    out_ptr,  # int32 (n, 4): Philox4x32-10 words
    n,  # number of counters
    seed,  # 64-bit key
    BLOCK: tl.constexpr,
):
    # One (BLOCK, 4) tile: each counter's four words are contiguous, so loads and stores are 128-bit.
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    offsets = rows[:, None] * 4 + tl.arange(0, 4)[None, :]
    keep = offsets < n * 4
    words = tl.load(counters_ptr + offsets, mask=keep, other=0).to(tl.uint32, bitcast=True)
    # split() takes the last axis: words (w0 w1 w2 w3) -> (w0 w2), (w1 w3) -> w0, w2 and w1, w3
    even, odd = tl.split(tl.reshape(words, (BLOCK, 2, 2)))
    c0, c2 = tl.split(even)
    c1, c3 = tl.split(odd)
    r0, r1, r2, r3 = tl.philox(seed, c0, c1, c2, c3)
    result = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (BLOCK, 4))
    tl.store(out_ptr + offsets, result.to(tl.int32, bitcast=True), mask=keep)


def philox_words(counters, seed, block=256):
    """Philox4x32-10 words (int32, same shape) for int32 counters of shape (..., 4)."""
    counters = counters.contiguous()
    out = torch.empty_like(counters)
    n = counters.numel() // 4
    if n:
        with on_device(counters):
            _philox_words_kernel[(triton.cdiv(n, block),)](counters, out, n, seed, BLOCK=block)
    return out
