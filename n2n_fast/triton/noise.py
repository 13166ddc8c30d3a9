"""Noisy pairs in one Triton launch: read the clean batch once, write each noisy copy once (3 N b bytes for fp32).

Per-element noise lives in noise_models.py (shared with the fused loss kernels); this file holds the kernel, its
launcher, and the `torch.library.custom_op` around the launcher so the op passes opcheck and runs inside
`torch.compile(fullgraph=True)` (SPEC §3; CPU tensors under TRITON_INTERPRET=1 too).
"""
from typing import Sequence

import torch
import triton
import triton.language as tl

from .. import noise as nz
from .noise_models import BERNOULLI, noisy_pair_values

_TL_OUT = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def _noisy_pair_kernel(
    clean_ptr,  # (B, C, H, W) contiguous: float32 / float16 / bfloat16 / uint8 / uint16
    y0_ptr,  # (B, C, H, W) OUT_DTYPE: input copy
    y1_ptr,  # (B, C, H, W) OUT_DTYPE: target copy
    keep_ptr,  # (B, 1, H, W) bool: target's kept pixels (written for Bernoulli only)
    sample_numel,  # C * H * W
    pixels,  # H * W
    blocks_per_sample,  # cdiv(sample_numel, BLOCK)
    index,  # global index of the batch's first sample
    seed,  # Philox key
    step,  # training step
    a_low, a_high, b_low, b_high,  # float32 parameter ranges (noise.levels())
    in_scale,  # float32 multiplier for uint inputs (1/255, 1/65535)
    MODEL: tl.constexpr,  # noise model code
    SCALE_INPUT: tl.constexpr,  # uint input: multiply by in_scale
    OUT_DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # One program covers BLOCK positions of one sample: the sample index (and its per-sample levels) is a
    # program-level scalar, and no counter depends on BLOCK or the grid.
    pid = tl.program_id(0)
    row = pid // blocks_per_sample
    pos = (pid - row * blocks_per_sample).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = pos < sample_numel
    offsets = row.to(tl.int64) * sample_numel + pos
    x = tl.load(clean_ptr + offsets, mask=inside, other=0).to(tl.float32)
    if SCALE_INPUT:
        x = x * in_scale
    sample = row.to(tl.int64) + index
    y0, y1, keep1 = noisy_pair_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high)
    tl.store(y0_ptr + offsets, y0.to(OUT_DTYPE), mask=inside)
    tl.store(y1_ptr + offsets, y1.to(OUT_DTYPE), mask=inside)
    if MODEL == BERNOULLI:
        # channel-0 elements carry their pixel's decision
        tl.store(keep_ptr + row.to(tl.int64) * pixels + pos, keep1, mask=pos < pixels)


def block_size(dtype):
    """Elements per program: 16 bytes of input per thread with 4 warps (128-bit loads), at least 8 elements."""
    return 2048 if dtype.itemsize == 1 else 1024


def launch(clean, model, params, seed, step, index, out_dtype):
    """(y0, y1, keep) for a contiguous (B, C, H, W) batch; keep is (B, 1, H, W) for Bernoulli, else empty."""
    batch, channels, height, width = clean.shape
    pixels = height * width
    sample_numel = channels * pixels
    y0 = torch.empty(clean.shape, dtype=out_dtype, device=clean.device)
    y1 = torch.empty(clean.shape, dtype=out_dtype, device=clean.device)
    keep_shape = (batch, 1, height, width) if model == nz.BERNOULLI else (0,)
    keep = torch.empty(keep_shape, dtype=torch.bool, device=clean.device)
    block = block_size(clean.dtype)
    blocks_per_sample = triton.cdiv(sample_numel, block)
    grid = (batch * blocks_per_sample,)
    if grid[0] == 0:
        return y0, y1, keep
    if grid[0] >= 2**31:
        raise ValueError(f"clean: batch too large for one launch ({grid[0]} programs of {block} elements)")
    a_low, a_high, b_low, b_high = params
    _noisy_pair_kernel[grid](
        clean, y0, y1, keep, sample_numel, pixels, blocks_per_sample, index, seed, step,
        a_low, a_high, b_low, b_high, nz.INPUT_SCALE.get(clean.dtype, 1.0),
        MODEL=model, SCALE_INPUT=clean.dtype in nz.INPUT_SCALE, OUT_DTYPE=_TL_OUT[out_dtype], BLOCK=block)
    return y0, y1, keep


@torch.library.custom_op("n2n_fast::triton_noisy_pair", mutates_args=())
def triton_noisy_pair(clean: torch.Tensor, model: int, params: Sequence[float], seed: int, step: int, index: int,
                      out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Triton noisy pair as a torch op: (y0, y1, keep) with keep empty unless model is Bernoulli."""
    return launch(clean.contiguous(), model, list(params), seed, step, index, out_dtype)


@triton_noisy_pair.register_fake
def _(clean, model, params, seed, step, index, out_dtype):
    batch, _, height, width = clean.shape
    keep_shape = (batch, 1, height, width) if model == nz.BERNOULLI else (0,)
    return (clean.new_empty(clean.shape, dtype=out_dtype), clean.new_empty(clean.shape, dtype=out_dtype),
            clean.new_empty(keep_shape, dtype=torch.bool))


def signed_seed(seed):
    """The 64-bit key as a signed int64 (the op schema's `int`); same bits."""
    seed &= 2**64 - 1
    return seed - 2**64 if seed >= 2**63 else seed


def noisy_pair(clean, noise, *, seed, step=0, index=0, out_dtype=torch.float32):
    """(y0, y1, keep or None) for a validated (B, C, H, W) batch (the backend entry of n2n_fast.noise)."""
    y0, y1, keep = triton_noisy_pair(clean, noise.code, list(noise.levels()), signed_seed(seed), step, index,
                                     out_dtype)
    return y0, y1, (keep if noise.code == nz.BERNOULLI else None)
