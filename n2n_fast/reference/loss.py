"""Pure-PyTorch losses: the oracle for the Triton kernels, the benchmark baseline and the CPU fallback.

Every function takes already validated arguments (n2n_fast/loss.py validates) and is differentiable by plain
autograd. Arithmetic runs in float32, or float64 when an input is float64 (gradcheck, the tolerance oracle); the
result has that dtype.

Per-element losses of d = pred - target (docs/design.md §1):
  l2   d**2
  l1   |d|
  l0   (|d| + eps)**gamma                       annealed L0: gamma goes 2 -> 0 over training (the schedule is train's)
  hdr  d**2 / (pred.detach() + eps)**2          relative L2; no gradient through the denominator (paper, HDR)
A mask keeps only its True elements (torch.where, so NaN/Inf in dropped elements cannot leak into the sum);
"mean" divides by the number of kept elements, counted after broadcasting the mask over channels. A mean over
zero kept elements is 0 with a zero gradient, not NaN: a batch whose every target pixel was dropped teaches
nothing, and a NaN would end the training run.
"""
import torch

from ..conventions import LOSS_KINDS
from .noise import noisy_pair



def compute_dtype(*tensors):
    """float64 when any input is float64, else float32 (bf16/fp16 inputs accumulate in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def elementwise(pred, target, kind, gamma=0.0, eps=0.0):
    """Per-element loss (in compute_dtype) of `kind`; differentiable."""
    dtype = compute_dtype(pred, target)
    p, t = pred.to(dtype), target.to(dtype)
    d = p - t
    if kind == "l2":
        return d * d
    if kind == "l1":
        return d.abs()
    if kind == "l0":
        # the exponent as a float32 0-d tensor whether it came as a float or (train()) as a device tensor: one
        # rounding and one pow for both, so the two forms agree bit for bit, as the kernels' float32 scalar does
        exponent = gamma if isinstance(gamma, torch.Tensor) else torch.tensor(gamma, dtype=torch.float32)
        return (d.abs() + eps) ** exponent.to(device=d.device, dtype=dtype)
    if kind == "hdr":
        return d * d / (p.detach() + eps) ** 2
    raise ValueError(f"kind: unknown loss kind {kind!r}; accepted: {', '.join(LOSS_KINDS)}")


def reduce(values, mask, reduction):
    """Apply `mask` (bool, broadcastable to values) and `reduction` to per-element losses."""
    if mask is not None:
        values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if mask is None:
        return total / values.numel()
    kept = mask.expand(values.shape).sum()
    return total / kept.clamp(min=1).to(values.dtype)


def loss(pred, target, mask=None, *, kind="l2", reduction="mean", gamma=0.0, eps=0.0):
    """The `loss` op: `kind` loss of pred against target, masked and reduced (see module docstring)."""
    return reduce(elementwise(pred, target, kind, gamma, eps), mask, reduction)


def n2n_loss(pred, clean, noise, *, seed, step, index=0, mask=None, kind="l2", reduction="mean", gamma=0.0,
             eps=0.0):
    """The `n2n_loss` op, unfused: the target is copy 1 of the reference noisy_pair, written to memory, then
    `loss`. With Bernoulli noise the target's kept-pixel mask is applied (ANDed with `mask` when both are given)."""
    _, target, keep = noisy_pair(clean, noise, seed=seed, step=step, index=index)
    if keep is not None:  # Bernoulli: the target's kept pixels
        mask = keep if mask is None else mask & keep
    return loss(pred, target, mask, kind=kind, reduction=reduction, gamma=gamma, eps=eps)
