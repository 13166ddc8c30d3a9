"""Triton losses: one pass reads pred and target, writes the gradient, and reduces (docs/design.md §1, §6).

Bytes per element, fp32 pred and target, "mean": forward reads 8 and writes 4 (the gradient), backward reads 4 and
writes 4. Nothing else touches memory: the reduction is two-stage in one launch (per-program partial sums; the
program that arrives last, counted by an integer ticket, sums them in a fixed order: `finish_when_last`,
triton/tickets.py), so results are bitwise reproducible run to run and never use float atomics.

What the gradient buffer holds: d(sum of kept losses)/d pred, masked, in pred's dtype. The reduction's scale
(1/count for "mean", 1 for "sum") is a 0-d device tensor that the backward (triton/loss_backward.py) folds into
grad_output in its one multiply: for a masked mean the count of kept elements is known only when this very pass
ends, so it cannot be applied while writing without a second pass over the mask, and keeping the 1/count factor
out of the stored values keeps fp16 gradients of large batches out of the subnormal range (2*d/N for N = 16 M is
below fp16's smallest subnormal). The backward is one elementwise multiply either way, with no host sync.
Measured on an H100 (16x3x512x512 fp32, torch profiler) while the finish was a kernel of its own: this kernel 52 us
for its 151 MB, the backward 35 us for 101 MB, both about 2.9 TB/s; the last program's sum of 3072 partials is
three steps of its loop (not yet timed on a GPU).

reduction="none": the gradient is still written in the forward. The alternative, recomputing it in the backward
from pred and target, moves as many bytes for fp32 (write+read 4+4 vs reread 4+4), more with a bf16 pred
(2+2 vs 2+4), more with a mask (reread) and far more work for the fused N2N objective (regenerate the noise). The
gradient is only written when autograd will need it (`need_grad`), so evaluation pays nothing for it.

Layout: the kernel walks elements in memory order, so any dense layout (NCHW, channels_last, permuted) is served
without a copy; only inputs whose strides differ from pred's (or non-dense views) are copied into pred's layout
first, one extra pass that dense training tensors never pay, while a strided kernel would lose 128-bit accesses.
"""
import torch
import triton
import triton.language as tl

from ..conventions import KIND_CODE
from .buffers import in_layout, output
from .device import on_device
from .loss_backward import EagerLoss, backward, setup_context
from .launch import DirectLaunch, cdiv
from .tickets import ticket_counter

MASK_NONE, MASK_FULL, MASK_ROWS = 0, 1, 2  # no mask; one mask element per element; (B,1,...) mask shared by C rows
BLOCK = 4096  # elements per program: 16 per thread at 8 warps, i.e. four 128-bit loads of fp32
NUM_WARPS = 8
FINISH_BLOCK = 1024  # partials summed per step of the last program's loop
MAX_GRID_ROWS = 65535  # CUDA limit of grid dimension 1


@triton.jit
def elementwise_loss(p, t, gamma, eps, KIND: tl.constexpr):
    """(loss, d loss / d p) of float32 blocks p (pred) and t (target) for loss KIND (0 l2, 1 l1, 2 l0, 3 hdr)."""
    d = p - t
    if KIND == 0:
        value = d * d
        grad = 2.0 * d
    elif KIND == 1:
        value = tl.abs(d)
        grad = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))  # sign(d); 0 at d == 0 like torch's abs
    elif KIND == 2:
        a = tl.abs(d) + eps
        value = tl.exp2(gamma * tl.log2(a))  # a**gamma, a > 0 since eps > 0
        sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
        grad = gamma * value / a * sign  # gamma * a**(gamma-1) * sign(d), without a second pow
    else:
        inv = 1.0 / (p + eps)  # pred.detach() + eps: no gradient through the denominator
        inv2 = inv * inv
        value = d * d * inv2
        grad = 2.0 * d * inv2
    return value, grad


@triton.jit
def finish_when_last(value, keep, partial_ptr, count_ptr, ticket_ptr, cols, out_ptr, scale_ptr, mean, masked,
                     BLOCK: tl.constexpr):
    """Called by every program with its block's losses `value` and kept elements `keep`: stores the program's
    partial sum (and kept count when masked); the program that arrives last sums all of them and writes the loss
    and its scale, then returns the ticket to 0 for the next launch on the stream.

    Ordering (PTX memory model): the barrier puts every thread's stores of this program before its arrival, the
    acq_rel atomic at GPU scope releases them to, and acquires for, whichever program arrives last (the pattern of
    a cooperative grid sync); Triton hands the atomic's result to all threads through shared memory behind a
    barrier, and the loads bypass L1 (.cg) besides. The sum: lane i adds partials i, i + BLOCK, ... then a fixed
    tree; deterministic whichever program arrives last."""
    program = tl.program_id(1) * tl.num_programs(0) + tl.program_id(0)
    tl.store(partial_ptr + program, tl.sum(value, axis=0))
    if masked:
        tl.store(count_ptr + program, tl.sum(keep.to(tl.int32), axis=0))
    n_partials = tl.num_programs(0) * tl.num_programs(1)
    tl.debug_barrier()
    arrived = tl.atomic_add(ticket_ptr, 1, sem="acq_rel", scope="gpu")
    if arrived == n_partials - 1:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        kept = tl.zeros([BLOCK], dtype=tl.int64)
        for start in range(0, n_partials, BLOCK):
            idx = start + tl.arange(0, BLOCK)
            acc += tl.load(partial_ptr + idx, mask=idx < n_partials, other=0.0, cache_modifier=".cg")
            if masked:
                kept += tl.load(count_ptr + idx, mask=idx < n_partials, other=0, cache_modifier=".cg").to(tl.int64)
        total = tl.sum(acc, axis=0)
        if mean:
            if masked:
                count = tl.maximum(tl.sum(kept, axis=0), 1).to(tl.float64)  # none kept: loss 0, gradient 0
            else:
                # every element: cols per row of the grid (cols may arrive as a constexpr 1); exact in float64
                count = (tl.zeros([], dtype=tl.float64) + cols) * tl.num_programs(1)
            tl.store(out_ptr, (total.to(tl.float64) / count).to(tl.float32))
            tl.store(scale_ptr, (1.0 / count).to(tl.float32))
        else:
            tl.store(out_ptr, total)
            tl.store(scale_ptr, 1.0)
        # back to 0 by subtracting every arrival rather than by a store: a program that finished early (a broken
        # condition) would leave it off zero, which the tests see even where programs run one after another
        tl.atomic_add(ticket_ptr, -n_partials, sem="relaxed", scope="gpu")


@triton.jit
def _loss_kernel(
    pred_ptr,  # (rows, cols) in memory order, any float dtype
    target_ptr,  # same layout as pred, any float dtype
    mask_ptr,  # uint8 view of the bool mask: same layout (MASK_FULL) or (rows // channels, cols) (MASK_ROWS)
    grad_ptr,  # out, pred's dtype and layout: d(sum of kept losses)/d pred; written when need_grad
    values_ptr,  # out, float32, pred's layout: per-element loss (REDUCE == False only)
    partial_ptr,  # out, float32 [programs]: per-program loss sums (REDUCE only)
    count_ptr,  # out, int32 [programs]: per-program kept-element counts (REDUCE and a mask only)
    out_ptr,  # out, float32 0-d: the loss (REDUCE only)
    scale_ptr,  # out, float32 0-d: d loss / d (sum of kept losses), 1 for REDUCE == False
    ticket_ptr,  # int32 [1], zero on entry and on exit: arrivals (REDUCE only, triton/tickets.py)
    cols,  # elements per row (all elements when MASK_MODE != MASK_ROWS)
    channels,  # rows sharing one mask row (MASK_ROWS)
    gamma,  # l0 exponent (when gamma_in_memory is off)
    gamma_ptr,  # float32 0-d: the l0 exponent (when gamma_in_memory is on: train() anneals it on the device)
    eps,  # l0 / hdr epsilon
    need_grad,  # write grad_ptr (uniform runtime branch: halves the number of specialisations to ship)
    gamma_in_memory,  # read gamma from gamma_ptr (uniform runtime branch, like need_grad)
    mean,  # REDUCE: "mean" (else "sum"; uniform runtime branch)
    KIND: tl.constexpr,
    MASK_MODE: tl.constexpr,
    REDUCE: tl.constexpr,
    BLOCK: tl.constexpr,
    FINISH_BLOCK: tl.constexpr,
):
    if gamma_in_memory:
        gamma = tl.load(gamma_ptr).to(tl.float32)  # .to: an unused dummy pointer may have another dtype
    col_block = tl.program_id(0)
    row = tl.program_id(1)
    cols_idx = col_block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = cols_idx < cols
    if MASK_MODE == 2:
        offsets = row.to(tl.int64) * cols + cols_idx
    else:
        offsets = cols_idx  # one row: no row term, so alignment follows from BLOCK alone
    p = tl.load(pred_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    t = tl.load(target_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    value, grad = elementwise_loss(p, t, gamma, eps, KIND)
    if MASK_MODE == 1:
        keep = inside & (tl.load(mask_ptr + offsets, mask=inside, other=0) != 0)
    elif MASK_MODE == 2:
        mask_offsets = (row // channels).to(tl.int64) * cols + cols_idx
        keep = inside & (tl.load(mask_ptr + mask_offsets, mask=inside, other=0) != 0)
    else:
        keep = inside
    value = tl.where(keep, value, 0.0)  # where, not multiply: NaN/Inf in dropped elements must not leak
    if need_grad:
        tl.store(grad_ptr + offsets, tl.where(keep, grad, 0.0).to(grad_ptr.dtype.element_ty), mask=inside)
    if REDUCE:
        finish_when_last(value, keep, partial_ptr, count_ptr, ticket_ptr, cols, out_ptr, scale_ptr, mean,
                         MASK_MODE != 0, FINISH_BLOCK)
    else:
        tl.store(values_ptr + offsets, value, mask=inside)
        if col_block + row == 0:
            tl.store(scale_ptr, 1.0)


_LOSS = DirectLaunch(_loss_kernel)  # n2n_fast/triton/launch.py: no per-call binder


def mask_mode(mask, grad):
    """(mode, mask as uint8 in the layout the kernel reads, rows, cols, channels) for `grad`'s layout."""
    if mask is None:
        return MASK_NONE, None, 1, grad.numel(), 1
    over_channels = grad.dim() >= 2 and mask.shape == grad.shape[:1] + (1,) + grad.shape[2:]
    if over_channels and grad.shape[1] > 1:  # (B, 1, ...) mask: read it per (b, c) row instead of expanding it
        rows, channels = grad.shape[0] * grad.shape[1], grad.shape[1]
        if grad.is_contiguous() and mask.is_contiguous() and rows <= MAX_GRID_ROWS:
            return MASK_ROWS, mask.view(torch.uint8), rows, grad.numel() // rows, channels
    # any other broadcast, channels_last or a huge B*C: expand it (1 byte/element, cheaper than a strided kernel)
    return MASK_FULL, in_layout(grad, mask.expand(grad.shape)).view(torch.uint8), 1, grad.numel(), 1


def gamma_arguments(gamma, dummy):
    """(gamma float, gamma pointer, gamma_in_memory) for a float gamma or a 0-d float32 device tensor."""
    if isinstance(gamma, torch.Tensor):
        return 0.0, gamma, True
    return float(gamma), dummy, False


def launch(pred, target, mask, kind, reduction, gamma, eps, need_grad):
    """Run the loss kernel: (loss, grad or empty, scale); loss is 0-d unless reduction == "none". gamma: a float
    or a 0-d float32 tensor on pred's device."""
    # pred's layout made dense (what empty_like gives the grad); a contiguous pred is its own (no meta tensor)
    layout = pred if pred.is_contiguous() else torch.empty_like(pred, device="meta")
    grad = output(torch.empty_like(pred)) if need_grad else pred.new_empty((0,))
    pred_w, target_w = in_layout(layout, pred), in_layout(layout, target)
    mode, mask_w, rows, cols, channels = mask_mode(mask, layout)
    grid = (cdiv(cols, BLOCK), rows)
    reduce_ = reduction != "none"
    dummy = pred_w  # unused pointer arguments still need a tensor: no allocation for them
    values = dummy if reduce_ else output(torch.empty_like(pred, dtype=torch.float32))
    gamma, gamma_ptr, gamma_in_memory = gamma_arguments(gamma, dummy)
    with on_device(pred):
        partials, counts, out, scale, ticket = reduction_buffers(pred.device, grid[0] * grid[1], reduce_,
                                                                 mode != MASK_NONE, dummy)
        _LOSS[grid](
            pred_w, target_w, dummy if mask_w is None else mask_w, grad if need_grad else dummy, values, partials,
            counts, out, scale, ticket, cols, channels, gamma, gamma_ptr, float(eps), bool(need_grad),
            gamma_in_memory, reduction == "mean", KIND=KIND_CODE[kind], MASK_MODE=mode, REDUCE=reduce_, BLOCK=BLOCK,
            FINISH_BLOCK=FINISH_BLOCK, num_warps=NUM_WARPS)
    return (out if reduce_ else values), grad, scale


def reduction_buffers(device, programs, reduce_, masked, dummy):
    """(partials, counts, out, scale, ticket) a loss kernel of `programs` programs writes: per-program partial
    sums (and kept counts when masked), the 0-d loss, its 0-d scale, and the ticket counter of the launch's
    stream (call it inside on_device). For reduction "none" only the scale (the kernel writes 1); the rest are
    `dummy`. Nothing is filled: the kernel writes every value read later (a fill is a launch)."""
    scale = output(torch.empty((), dtype=torch.float32, device=device))
    if not reduce_:
        return dummy, dummy, dummy, scale, dummy
    partials = output(torch.empty(programs, dtype=torch.float32, device=device))
    counts = output(torch.empty(programs, dtype=torch.int32, device=device)) if masked else dummy
    out = output(torch.empty((), dtype=torch.float32, device=device))
    return partials, counts, out, scale, ticket_counter(device)


@torch.library.custom_op("n2n_fast_triton::loss", mutates_args=())
def _loss_op(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, kind: str, reduction: str,
             gamma: float, eps: float, need_grad: bool, gamma_tensor: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Triton loss as a torch op; gamma is gamma_tensor when one is given."""
    return launch(pred, target, mask, kind, reduction, gamma if gamma_tensor is None else gamma_tensor, eps,
                  need_grad)


@_loss_op.register_fake
def _loss_fake(pred, target, mask, kind, reduction, gamma, eps, need_grad, gamma_tensor=None):
    grad = torch.empty_like(pred) if need_grad else pred.new_empty((0,))
    value_shape = torch.empty_like(pred, dtype=torch.float32) if reduction == "none" else pred.new_empty(
        (), dtype=torch.float32)
    return value_shape, grad, pred.new_empty((), dtype=torch.float32)


_loss_op.register_autograd(backward, setup_context=setup_context)


def needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def loss(pred, target, mask=None, *, kind="l2", reduction="mean", gamma=0.0, eps=0.0):
    """The `loss` op on Triton (CUDA tensors; CPU tensors under the interpreter or the dry run); gamma a float
    or a 0-d float32 tensor on pred's device. The dispatch
    (n2n_fast/_backend.py) sends only the dtypes the kernel accumulates in float32: float64 goes to the reference,
    which keeps the precision the caller asked for."""
    args = (pred, target, mask, kind, reduction, gamma, float(eps), needs_grad(pred, target))
    if torch.compiler.is_compiling():
        in_memory = isinstance(gamma, torch.Tensor)
        return _loss_op(*args[:5], 0.0 if in_memory else float(gamma), *args[6:], gamma if in_memory else None)[0]
    return EagerLoss.apply(pred, target, lambda: launch(*args), True)
