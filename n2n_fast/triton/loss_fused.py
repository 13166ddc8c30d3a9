"""The fused Noise2Noise objective on Triton: the loss kernel regenerates the target itself (docs/design.md §1, §6).

`n2n_loss(pred, clean, noise, ...)` equals `<kind>_loss(pred, noisy_pair(clean, noise, ...)[1], ...)` but never
writes the target: each program reads its block of clean values, recomputes copy 1 alone with the noise jit helper
(`noise_models.noisy_copy_values`, the same arithmetic and Philox counters as the noisy-pair kernel), and feeds it
straight into `loss.elementwise_loss`. Bytes per element, fp32, "mean": read pred 4 + clean 4 (1 for uint8), write
the gradient 4, instead of noisy_pair's 4 + 8 plus the loss's 8 + 4 (the unused copy 0 is also never written).
A Bernoulli target's kept-pixel decision comes out of the same helper and masks the loss in registers.

The kernel walks each sample in logical NCHW order (the Philox counter is the position c*H*W + h*W + w), so clean,
the mask and the "none" values are NCHW (other layouts are copied first). A channels_last pred (the training
default) is read, and its gradient written, in place with one integer division per element: cheaper than
copying pred (8 bytes/element) and handing the convolution an NCHW gradient to convert back.
The one-launch reduction, the saved gradient and the backward are those of triton/loss.py.
"""
import torch
import triton
import triton.language as tl

from ..conventions import BERNOULLI, INPUT_SCALE, KIND_CODE, POISSON, POISSON_GAUSSIAN, signed_seed
from .buffers import output, step_arguments
from .device import on_device
from . import loss as plain
from .loss_backward import EagerLoss, backward, setup_context
from .noise_models import noisy_copy_values
from .launch import DirectLaunch, cdiv

NUM_WARPS = 4
# ptxas left to itself holds the Poisson-Gaussian specialisation to 128 registers on sm_90 and spills 8 bytes (the
# one-launch finish added a few live values); allowed 160 it takes 133 and spills nothing (tests/test_dryrun.py,
# tests/test_loss_fused.py). Kernels that need fewer registers are unaffected.
MAX_REGISTERS = 160


def block_size(model):
    """Elements per program: 8 per thread (two 128-bit fp32 loads), 4 for the Poisson models, whose rejection
    sampler keeps so many values live that 8 per thread spill on sm_80 (ptxas: 255 registers + 536 B spilled)."""
    return 512 if model in (POISSON, POISSON_GAUSSIAN) else 1024


@triton.jit
def channel_of(pos, pixels):
    """pos // pixels in 32 bits (a sample has < 2**32 elements, noise.py): a 64-bit division is a called
    subroutine that spills on sm_90; pixels may arrive as a constexpr 1."""
    divisor = (tl.zeros([], dtype=tl.int64) + pixels).to(tl.uint32)
    return (pos.to(tl.uint32) // divisor).to(tl.int64)


# seed, step and index vary from call to call: an int equal to 1 would otherwise compile its own specialisation
# (step 1 of every run recompiled the kernel; found by the dry run, tests/test_dryrun.py)
@triton.jit(do_not_specialize=["seed", "step", "index"])
def _n2n_loss_kernel(
    pred_ptr,  # (B, C*H*W) contiguous, any float dtype
    clean_ptr,  # (B, C*H*W) contiguous, float or uint8/uint16 (scaled by in_scale)
    mask_ptr,  # uint8 view of a (B, C*H*W) bool mask (has_mask only)
    grad_ptr,  # out, pred's dtype: d(sum of kept losses)/d pred (need_grad only)
    values_ptr,  # out, float32 (B, C*H*W): per-element loss (reduce == False only)
    partial_ptr,  # out, float32 [programs]: per-program loss sums (reduce only)
    count_ptr,  # out, int32 [programs]: per-program kept counts (reduce and masked only)
    out_ptr,  # out, float32 0-d: the loss (reduce only)
    scale_ptr,  # out, float32 0-d: d loss / d (sum of kept losses), 1 when not reduce
    ticket_ptr,  # int32 [1], zero on entry and on exit: arrivals (reduce only, triton/tickets.py)
    cols,  # C*H*W: elements per sample
    pixels,  # H*W: Bernoulli / impulse decide per pixel
    channels,  # C (pred_nhwc only)
    in_scale,  # float32 factor taking clean to [0, 1] (1/255 for uint8, 1/65535 for uint16, 1 for floats)
    seed,  # Philox key
    step,  # training step (when STEP_IN_MEMORY is off)
    step_ptr,  # int64 0-d: the training step (when STEP_IN_MEMORY is on)
    index,  # global index of the batch's first sample
    a_low, a_high, b_low, b_high,  # noise parameter ranges, noise.parameter_ranges()
    gamma,  # l0 exponent (when gamma_in_memory is off)
    gamma_ptr,  # float32 0-d: the l0 exponent (when gamma_in_memory is on)
    eps,  # l0 / hdr epsilon
    need_grad,  # write grad_ptr
    gamma_in_memory,  # read gamma from gamma_ptr
    has_mask,  # read mask_ptr
    reduce,  # partial sums (True) or per-element values (False)
    mean,  # reduce: "mean" (else "sum")
    masked,  # count kept elements (a mask or Bernoulli noise)
    pred_nhwc,  # pred and grad are channels_last: element (c, hw) of a sample sits at hw * C + c
    KIND: tl.constexpr,  # loss kind code, triton/loss.py KIND_CODE
    MODEL: tl.constexpr,  # noise model code, n2n_fast.noise
    BLOCK: tl.constexpr,
    FINISH_BLOCK: tl.constexpr,  # triton/loss.py finish_when_last
    STEP_IN_MEMORY: tl.constexpr,  # read the step from step_ptr (train(), CUDA graphs); last, as tests read it
):
    if STEP_IN_MEMORY:
        step = tl.load(step_ptr)
    if gamma_in_memory:
        gamma = tl.load(gamma_ptr).to(tl.float32)  # .to: an unused dummy pointer may have another dtype
    # Runtime flags are uniform branches: they keep the shipped specialisations to KIND x MODEL (20), not x 8.
    col_block = tl.program_id(0)
    row = tl.program_id(1)
    pos = col_block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # the Philox counter's position in the sample
    inside = pos < cols
    offsets = row.to(tl.int64) * cols + pos
    x = tl.load(clean_ptr + offsets, mask=inside, other=0).to(tl.float32) * in_scale
    # loads and stores sit inside each branch: a pointer merged from two branches would lose 128-bit accesses
    if pred_nhwc:
        channel = channel_of(pos, pixels)
        nhwc = row.to(tl.int64) * cols + (pos - channel * pixels) * channels + channel
        p = tl.load(pred_ptr + nhwc, mask=inside, other=0.0).to(tl.float32)
    else:
        p = tl.load(pred_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    sample = index + row.to(tl.int64)  # one sample per program: the level draw happens once per program
    # only the target copy: for Poisson models half the rejection sampler's work and live state
    target, keep = noisy_copy_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high, 1)
    value, grad = plain.elementwise_loss(p, target, gamma, eps, KIND)
    keep = keep & inside
    if has_mask:
        keep = keep & (tl.load(mask_ptr + offsets, mask=inside, other=0) != 0)
    value = tl.where(keep, value, 0.0)
    if need_grad:
        # a new name: Triton's code generator refuses to rebind the float32 `grad` to pred's dtype inside a branch
        # (caught by the dry run for bf16/fp16 pred, never by the interpreter, which does not type-check)
        grad_out = tl.where(keep, grad, 0.0).to(grad_ptr.dtype.element_ty)
        if pred_nhwc:
            channel = channel_of(pos, pixels)
            nhwc = row.to(tl.int64) * cols + (pos - channel * pixels) * channels + channel
            tl.store(grad_ptr + nhwc, grad_out, mask=inside)
        else:
            tl.store(grad_ptr + offsets, grad_out, mask=inside)
    if reduce:
        plain.finish_when_last(value, keep, partial_ptr, count_ptr, ticket_ptr, cols, out_ptr, scale_ptr, mean,
                               masked, FINISH_BLOCK)
    else:
        tl.store(values_ptr + offsets, value, mask=inside)
        if col_block + row == 0:
            tl.store(scale_ptr, 1.0)


_N2N_LOSS = DirectLaunch(_n2n_loss_kernel)  # n2n_fast/triton/launch.py: no per-call binder


def is_channels_last(pred):
    """pred is channels_last (and not also NCHW-contiguous): read it, and write its gradient, in place."""
    return not pred.is_contiguous() and pred.is_contiguous(memory_format=torch.channels_last)


def launch(pred, clean, mask, model, levels, seed, step, index, kind, reduction, gamma, eps, need_grad):
    """Run the fused kernel on 4-D tensors: (loss, grad or empty, scale) like triton/loss.py's launch; step an
    int or a 0-d int64 device tensor, gamma a float or a 0-d float32 device tensor."""
    nhwc = is_channels_last(pred)
    pred_c, clean_c = (pred if nhwc else pred.contiguous()), clean.contiguous()
    batch, cols = pred.shape[0], pred.shape[1] * pred.shape[2] * pred.shape[3]
    has_mask = mask is not None
    mask_c = mask.expand(pred.shape).contiguous().view(torch.uint8) if has_mask else pred_c
    masked = has_mask or model == BERNOULLI
    grad = output(torch.empty_like(pred_c)) if need_grad else pred.new_empty((0,))
    block = block_size(model)
    grid = (cdiv(cols, block), batch)
    reduce_ = reduction != "none"
    dummy = pred_c  # pointer arguments a flag leaves unused still need a tensor: no allocation for them
    values = dummy if reduce_ else output(torch.empty(pred.shape, dtype=torch.float32, device=pred.device))
    step, step_ptr, in_memory = step_arguments(step, dummy)
    gamma, gamma_ptr, gamma_in_memory = plain.gamma_arguments(gamma, dummy)
    with on_device(pred):
        partials, counts, out, scale, ticket = plain.reduction_buffers(pred.device, grid[0] * grid[1], reduce_,
                                                                       masked, dummy)
        _N2N_LOSS[grid](
            pred_c, clean_c, mask_c, grad if need_grad else dummy, values, partials, counts, out, scale, ticket,
            cols, pred.shape[2] * pred.shape[3], pred.shape[1], INPUT_SCALE.get(clean.dtype, 1.0),
            seed & (2**64 - 1), step, step_ptr, index, *levels, gamma, gamma_ptr, float(eps), bool(need_grad),
            gamma_in_memory, has_mask, reduce_, reduction == "mean", masked, nhwc, KIND=KIND_CODE[kind], MODEL=model,
            BLOCK=block, STEP_IN_MEMORY=in_memory, FINISH_BLOCK=plain.FINISH_BLOCK, num_warps=NUM_WARPS,
            maxnreg=MAX_REGISTERS)
    return (out if reduce_ else values), grad, scale


# The schema's int is int64: the seed travels as its signed two's complement and is unwrapped in launch().
@torch.library.custom_op("n2n_fast_triton::n2n_loss", mutates_args=())
def _n2n_loss_op(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor | None, model: int,
                 levels: list[float], seed: int, step: int, index: int, kind: str, reduction: str, gamma: float,
                 eps: float, need_grad: bool, step_tensor: torch.Tensor | None = None,
                 gamma_tensor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return launch(pred, clean, mask, model, levels, seed, step if step_tensor is None else step_tensor, index, kind,
                  reduction, gamma if gamma_tensor is None else gamma_tensor, eps, need_grad)


@_n2n_loss_op.register_fake
def _n2n_loss_fake(pred, clean, mask, model, levels, seed, step, index, kind, reduction, gamma, eps, need_grad,
                   step_tensor=None, gamma_tensor=None):
    grad = (torch.empty_like(pred) if is_channels_last(pred) else pred.new_empty(pred.shape)) if need_grad else \
        pred.new_empty((0,))
    values = pred.new_empty(pred.shape if reduction == "none" else (), dtype=torch.float32)
    return values, grad, pred.new_empty((), dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    setup_context(ctx, inputs, output)
    ctx.target_dtype = None  # clean gets no gradient: sampling noise is not differentiable


_n2n_loss_op.register_autograd(backward, setup_context=_setup_context)


def n2n_loss(pred, clean, noise, *, seed, step, index=0, mask=None, kind="l2", reduction="mean", gamma=0.0,
             eps=0.0):
    """The `n2n_loss` op on Triton (validated arguments; see n2n_fast.loss.n2n_loss). The dispatch sends only
    4-D float32/bf16/fp16 pred with at most 65535 samples (grid dimension 1 holds the sample)."""
    ranges = list(noise.parameter_ranges())
    if torch.compiler.is_compiling():
        in_memory, gamma_in_memory = isinstance(step, torch.Tensor), isinstance(gamma, torch.Tensor)
        return _n2n_loss_op(pred, clean, mask, noise.code, ranges, signed_seed(seed), 0 if in_memory else step, index,
                            kind, reduction, 0.0 if gamma_in_memory else float(gamma), float(eps),
                            plain.needs_grad(pred), step if in_memory else None,
                            gamma if gamma_in_memory else None)[0]
    args = (pred, clean, mask, noise.code, ranges, seed, step, index, kind, reduction, gamma, float(eps),
            plain.needs_grad(pred))
    return EagerLoss.apply(pred, clean, lambda: launch(*args), False)
