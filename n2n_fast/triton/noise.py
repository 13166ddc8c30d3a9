"""Noisy pairs in one Triton launch: read the clean batch once, write each noisy copy once (3 N b bytes for fp32).

Per-element noise lives in noise_models.py (shared with the fused loss kernels); this file holds the kernel, its
launcher, and the `torch.library.custom_op` around the launcher so the op passes opcheck and runs inside
`torch.compile(fullgraph=True)` (docs/design.md §3; CPU tensors under TRITON_INTERPRET=1 too).
"""
from typing import Sequence

import torch
import triton
import triton.language as tl

from .. import conventions as nz
from .buffers import step_arguments
from .device import on_device
from . import constants as K
from .noise_models import noisy_copy_values, noisy_pair_values
from .launch import DirectLaunch, cdiv

_TL_OUT = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
_alloc = torch.empty  # output allocation; tests swap in a poisoning one so unwritten elements show


@triton.jit
def _values(raw, pos, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high, MODEL: tl.constexpr,
            SCALE_INPUT: tl.constexpr, OUT_DTYPE: tl.constexpr, LEAN: tl.constexpr, COPY: tl.constexpr):
    """Loaded input values -> (y0, y1) in OUT_DTYPE and keep1; converting here keeps 1-2 byte inputs packed
    while other chunks are computed. COPY 0 or 1: only that copy is computed, returned in both places."""
    x = raw.to(tl.float32)
    if SCALE_INPUT:
        x = x * in_scale
    if COPY == 2:
        y0, y1, keep1 = noisy_pair_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high,
                                          LEAN)
    else:
        y, keep1 = noisy_copy_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high, COPY)
        y0 = y
        y1 = y
    return y0.to(OUT_DTYPE), y1.to(OUT_DTYPE), keep1


@triton.jit
def _values_halves(raw, pos, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                   MODEL: tl.constexpr, SCALE_INPUT: tl.constexpr, OUT_DTYPE: tl.constexpr, N: tl.constexpr,
                   SPLIT_AGAIN: tl.constexpr, LEAN: tl.constexpr, COPY: tl.constexpr):
    """_values on the interleaved halves of N elements (even, odd positions), one after the other, joined back.
    A thread's contiguous elements split evenly, so each half keeps half of them live through the loops."""
    r_e, r_o = tl.split(tl.reshape(raw, (N // 2, 2)))
    p_e, p_o = tl.split(tl.reshape(pos, (N // 2, 2)))
    if SPLIT_AGAIN:
        y0_e, y1_e = _values_halves(r_e, p_e, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                                    MODEL, SCALE_INPUT, OUT_DTYPE, N // 2, False, LEAN, COPY)
        y0_o, y1_o = _values_halves(r_o, p_o, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                                    MODEL, SCALE_INPUT, OUT_DTYPE, N // 2, False, LEAN, COPY)
    else:
        y0_e, y1_e, _k = _values(r_e, p_e, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                                 MODEL, SCALE_INPUT, OUT_DTYPE, LEAN, COPY)
        y0_o, y1_o, _k = _values(r_o, p_o, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                                 MODEL, SCALE_INPUT, OUT_DTYPE, LEAN, COPY)
    return tl.reshape(tl.join(y0_e, y0_o), (N,)), tl.reshape(tl.join(y1_e, y1_o), (N,))


# seed, step and index vary from call to call: an int equal to 1 would otherwise compile its own specialisation
# (step 1 of every run recompiled the kernel; found by the dry run, tests/test_dryrun.py)
@triton.jit(do_not_specialize=["seed", "step", "index", "blocks_per_sample"])
def _noisy_pair_kernel(
    clean_ptr,  # (B, C, H, W) contiguous: float32 / float16 / bfloat16 / uint8 / uint16
    y0_ptr,  # (B, C, H, W) OUT_DTYPE: input copy (COPY 0 or 2)
    y1_ptr,  # (B, C, H, W) OUT_DTYPE: target copy (COPY 1 or 2)
    keep_ptr,  # (B, 1, H, W) bool: target's kept pixels (written for Bernoulli, COPY 1 or 2)
    sample_numel,  # C * H * W
    pixels,  # H * W
    blocks_per_sample,  # cdiv(sample_numel, BLOCK)
    index,  # global index of the batch's first sample
    seed,  # Philox key
    step,  # training step (when STEP_IN_MEMORY is off)
    step_ptr,  # int64 0-d: the training step (when STEP_IN_MEMORY is on)
    a_low, a_high, b_low, b_high,  # float32 parameter ranges (noise.parameter_ranges())
    in_scale,  # float32 multiplier for uint inputs (1/255, 1/65535)
    MODEL: tl.constexpr,  # noise model code
    SCALE_INPUT: tl.constexpr,  # uint input: multiply by in_scale
    OUT_DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNKS: tl.constexpr,  # 1, or sub-blocks processed in turn to bound register use (Poisson models)
    LEAN: tl.constexpr,  # Poisson rejection loop one copy at a time (noise_models.noisy_pair_values)
    COPY: tl.constexpr,  # 2: both copies; 0 or 1: only that one (add_noise)
    STEP_IN_MEMORY: tl.constexpr,  # read the step from step_ptr (train(), CUDA graphs)
):
    if STEP_IN_MEMORY:
        step = tl.load(step_ptr)
    # One program covers BLOCK positions of one sample: the sample index (and its per-sample levels) is a
    # program-level scalar, and no counter depends on BLOCK or the grid.
    pid = tl.program_id(0)
    row = pid // blocks_per_sample
    pos = (pid - row * blocks_per_sample).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = pos < sample_numel
    offsets = row.to(tl.int64) * sample_numel + pos
    raw = tl.load(clean_ptr + offsets, mask=inside, other=0)
    sample = row.to(tl.int64) + index
    if CHUNKS == 1:
        y0, y1, keep1 = _values(raw, pos, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                                MODEL, SCALE_INPUT, OUT_DTYPE, LEAN, COPY)
    else:
        # Poisson with 1- or 2-byte input: a thread loads 16 bytes = 16 or 8 elements, but the rejection loops'
        # state for that many spills; compute them in CHUNKS rounds of 4 elements per thread.
        tl.static_assert(CHUNKS == 2 or CHUNKS == 4, "CHUNKS is 1, 2 or 4")
        y0, y1 = _values_halves(raw, pos, sample, pixels, seed, step, in_scale, a_low, a_high, b_low, b_high,
                                MODEL, SCALE_INPUT, OUT_DTYPE, BLOCK, CHUNKS == 4, LEAN, COPY)
        keep1 = pos >= 0  # unused (Bernoulli never chunks)
    if COPY != 1:
        tl.store(y0_ptr + offsets, y0, mask=inside)
    if COPY != 0:
        tl.store(y1_ptr + offsets, y1, mask=inside)
    if MODEL == K.BERNOULLI and COPY != 0:
        # channel-0 elements carry their pixel's decision
        tl.store(keep_ptr + row.to(tl.int64) * pixels + pos, keep1, mask=pos < pixels)


_NOISY_PAIR = DirectLaunch(_noisy_pair_kernel)  # n2n_fast/triton/launch.py: no per-call binder


def block_size(dtype, model):
    """(BLOCK, CHUNKS, LEAN): each of the 4 warps' threads loads 16 bytes (one 128-bit load) or more, but 8 for
    Poisson models with 1-byte input. Poisson models compute 4 elements per thread at a time (CHUNKS rounds): the
    settings under which ptxas spills nothing on sm_80 and sm_90 (tests/test_noise.py compiles each,
    tests/test_dryrun.py every specialisation the runtime picks). LEAN (rejection loops one copy at a time) spilled
    in the runtime's specialisations for sizes not divisible by 16 and is off."""
    if model in (nz.POISSON, nz.POISSON_GAUSSIAN):
        # 1-byte input: 8 bytes per thread, not 16. With 16 (4 rounds, LEAN) the specialisation the runtime picks
        # for sizes not divisible by 16 spilled 52 B on sm_90 (found by the dry run); Poisson is compute-bound.
        block = 128 * 16 // max(dtype.itemsize, 2)
        return block, block // 512, False
    return (2048 if dtype.itemsize == 1 else 1024), 1, False


def launch(clean, model, params, seed, step, index, out_dtype, copy=2):
    """(y0, y1, keep) for a (B, C, H, W) batch; keep is (B, 1, H, W) for Bernoulli, else None. step: an int or
    a 0-d int64 tensor on the batch's device. copy 0 or 1: only that copy is computed (the other is None, and
    keep is None for copy 0)."""
    clean = clean.contiguous()
    batch, channels, height, width = clean.shape
    pixels = height * width
    sample_numel = channels * pixels
    y0 = _alloc(clean.shape, dtype=out_dtype, device=clean.device) if copy != 1 else None
    y1 = _alloc(clean.shape, dtype=out_dtype, device=clean.device) if copy != 0 else None
    keep = None  # the kernel stores it for Bernoulli's target only
    if model == nz.BERNOULLI and copy != 0:
        keep = _alloc(nz.keep_mask_shape(clean.shape, model), dtype=torch.bool, device=clean.device)
    block, chunks, lean = block_size(clean.dtype, model)
    blocks_per_sample = cdiv(sample_numel, block)
    grid = (batch * blocks_per_sample,)
    if grid[0] == 0:
        return y0, y1, keep
    if grid[0] >= 2**31:
        raise ValueError(f"clean: batch too large for one launch ({grid[0]} programs of {block} elements)")
    a_low, a_high, b_low, b_high = params
    step, step_ptr, in_memory = step_arguments(step, clean)
    with on_device(clean):
        _NOISY_PAIR[grid](
            clean, clean if y0 is None else y0, clean if y1 is None else y1, clean if keep is None else keep,
            sample_numel, pixels, blocks_per_sample, index, seed, step, step_ptr,
            a_low, a_high, b_low, b_high, nz.INPUT_SCALE.get(clean.dtype, 1.0),
            MODEL=model, SCALE_INPUT=clean.dtype in nz.INPUT_SCALE, OUT_DTYPE=_TL_OUT[out_dtype], BLOCK=block,
            CHUNKS=chunks, LEAN=lean, COPY=copy, STEP_IN_MEMORY=in_memory, num_warps=4)
    return y0, y1, keep


@torch.library.custom_op("n2n_fast_triton::noisy_pair", mutates_args=())
def triton_noisy_pair(clean: torch.Tensor, model: int, params: Sequence[float], seed: int, step: int, index: int,
                      out_dtype: torch.dtype, step_tensor: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Triton noisy pair as a torch op: (y0, y1, keep) with keep empty unless model is Bernoulli; the step is
    step_tensor when one is given."""
    y0, y1, keep = launch(clean, model, list(params), seed, step if step_tensor is None else step_tensor, index,
                          out_dtype)
    return y0, y1, (clean.new_empty(nz.keep_mask_shape(clean.shape, nz.GAUSSIAN), dtype=torch.bool)
                    if keep is None else keep)


@triton_noisy_pair.register_fake
def _(clean, model, params, seed, step, index, out_dtype, step_tensor=None):
    return nz.empty_pair_like(clean, model, out_dtype)


def noisy_pair(clean, noise, *, seed, step=0, index=0, out_dtype=torch.float32, stream=None):
    """(y0, y1, keep or None) for a validated (B, C, H, W) batch (the backend entry of n2n_fast.noise). stream 0
    or 1 (add_noise): in eager mode, for Poisson models, only that copy is computed and the other is None."""
    args = (clean, noise.code, list(noise.parameter_ranges()), nz.signed_seed(seed), step, index, out_dtype)
    if torch.compiler.is_compiling():  # torch.compile traces the op
        in_memory = isinstance(step, torch.Tensor)
        y0, y1, keep = triton_noisy_pair(*args[:4], 0 if in_memory else step, index, out_dtype,
                                         step if in_memory else None)
    else:  # eager callers skip custom_op's per-call dispatch (tens of microseconds: longer than a small launch)
        # One copy only for the Poisson models, where it halves the sampler's work and registers (205 -> 106 on
        # sm_90). The cheap models keep the pair kernel: their one-copy variant for Bernoulli with bf16/fp16 output
        # spilled 4 B on sm_90 in the dry run, and computing both copies there costs one Philox call either way.
        one_copy = stream is not None and noise.code in (nz.POISSON, nz.POISSON_GAUSSIAN)
        y0, y1, keep = launch(*args, copy=stream if one_copy else 2)
    return y0, y1, (keep if noise.code == nz.BERNOULLI else None)
