"""The backward of every Triton loss op: one multiply of the saved gradient, in float32, in one kernel.

The forward saved d(sum of kept losses)/d pred in pred's dtype; the backward scales it by grad_output times the
reduction's 0-d scale (both read on the device: no host sync) or, for reduction="none", by grad_output element by
element. Bytes per element: read the saved gradient (and grad_output for "none"), write pred's gradient.
Why a kernel rather than `grad * (grad_output * scale)` in PyTorch: PyTorch first casts a 0-d float32 factor to
the tensor's dtype, and 1/N for a large batch is subnormal in fp16 (1.3e-6 there has 5% relative error) and loses
all but 8 bits in bf16; the kernel multiplies in float32 and rounds once. A float32 gradient has nothing to round:
there PyTorch's two multiplies are the kernel's arithmetic bit for bit (tests/test_loss_one_launch.py), and they
cost the host a fraction of a Triton launch from Python inside autograd's backward (about 6 against 29 us in the
dry run, benchmarks/RESULTS.md 2026-12-04), so float32 takes them.
"""
import torch
import triton
import triton.language as tl

from .buffers import in_layout, output
from .device import on_device
from .launch import DirectLaunch, cdiv

BLOCK = 4096
NUM_WARPS = 8


@triton.jit
def _scale_grad_kernel(
    grad_ptr,  # saved gradient, pred's dtype, dense
    grad_loss_ptr,  # float32: 0-d grad_output (PER_ELEMENT False) or one per element in grad's layout
    scale_ptr,  # float32 0-d: the reduction's scale (PER_ELEMENT False only)
    out_ptr,  # out, pred's dtype and layout
    n,  # elements
    PER_ELEMENT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    grad = tl.load(grad_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    if PER_ELEMENT:
        factor = tl.load(grad_loss_ptr + offsets, mask=inside, other=0.0)
    else:
        factor = tl.load(grad_loss_ptr) * tl.load(scale_ptr)
    tl.store(out_ptr + offsets, (grad * factor).to(out_ptr.dtype.element_ty), mask=inside)


_SCALE_GRAD = DirectLaunch(_scale_grad_kernel)  # n2n_fast/triton/launch.py: no per-call binder


def scaled_grad(grad, grad_loss, scale, eager):
    """grad * grad_loss * scale in float32 math: PyTorch's multiplies for a float32 grad (the same rounding),
    else the kernel (eager: called directly; otherwise the custom op, which torch.compile traces)."""
    if grad.dtype == torch.float32:
        grad_loss = grad_loss.float()
        return grad * (grad_loss if grad_loss.dim() else grad_loss * scale)
    return (scale_grad_eager if eager else scale_grad)(grad, grad_loss, scale)


def scale_grad_eager(grad, grad_loss, scale):
    """grad * grad_loss * scale (0-d grad_loss) or grad * grad_loss (grad_loss shaped like grad), float32 math."""
    out = output(torch.empty_like(grad))
    per_element = grad_loss.dim() > 0
    grad_loss = grad_loss.float()
    if per_element:  # autograd may hand an expanded (stride 0) or differently laid out grad_output
        grad_loss = in_layout(torch.empty_like(grad, device="meta"), grad_loss)
    if grad.numel():
        with on_device(grad):
            _SCALE_GRAD[(cdiv(grad.numel(), BLOCK),)](grad, grad_loss, scale, out, grad.numel(),
                                                                   PER_ELEMENT=per_element, BLOCK=BLOCK,
                                                                   num_warps=NUM_WARPS)
    return out


@torch.library.custom_op("n2n_fast_triton::scale_grad", mutates_args=())
def scale_grad(grad: torch.Tensor, grad_loss: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale_grad_eager as an op torch.compile can trace (it calls the eager function)."""
    return scale_grad_eager(grad, grad_loss, scale)


@scale_grad.register_fake
def _scale_grad_fake(grad, grad_loss, scale):
    return torch.empty_like(grad)


def setup_context(ctx, inputs, output):
    """Shared by every loss op: inputs start (pred, target, ...), outputs are (loss, grad, scale)."""
    _, grad, scale = output
    ctx.save_for_backward(grad, scale)
    ctx.target_dtype = inputs[1].dtype
    ctx.set_materialize_grads(False)  # the grad and scale outputs get no gradient: don't fill N zeros for them


def backward(ctx, grad_loss, _grad_grad=None, _grad_scale=None):
    """pred's gradient: the saved one times grad_output (times the reduction's scale). The target's gradient is
    minus the pred's for every kind (hdr's denominator is detached); it carries pred's precision."""
    grad, scale = ctx.saved_tensors
    # the custom ops' backward may be traced (torch.compile, opcheck): it calls the op, EagerLoss the function
    grad_pred = scaled_grad(grad, grad_loss, scale, getattr(ctx, "eager", False))
    grad_target = None
    if ctx.needs_input_grad[1] and ctx.target_dtype is not None:  # None: the second input is not differentiable
        grad_target = -grad_pred.to(ctx.target_dtype)
    return (grad_pred if ctx.needs_input_grad[0] else None, grad_target) + (None,) * (len(ctx.needs_input_grad) - 2)


class EagerLoss(torch.autograd.Function):
    """The loss ops outside torch.compile: the same launch and backward as the custom ops, without custom_op's
    per-call dispatch cost (about 80 us of Python per call on the development machine, which at training sizes is
    longer than the kernels themselves). Under torch.compile the custom ops are used (they trace; this does not
    need to)."""

    @staticmethod
    def forward(ctx, pred, second, run, second_differentiable):
        value, grad, scale = run()
        ctx.save_for_backward(grad, scale)
        ctx.target_dtype = second.dtype if second_differentiable else None
        ctx.eager = True
        return value

    @staticmethod
    def backward(ctx, grad_loss):
        return backward(ctx, grad_loss)
