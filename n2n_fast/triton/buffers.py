"""Buffers the Triton loss launchers hand their kernels: fresh outputs (poisoned under test) and inputs in the
layout of pred. Shared by the forward (triton/loss.py, loss_fused.py) and the backward (loss_backward.py)."""
import torch

POISON = False  # tests set it: every output buffer starts as NaN (-1 for counts) so unwritten elements show


def output(buffer):
    """A freshly allocated output buffer, poisoned when POISON is set."""
    if POISON and buffer.numel():
        buffer.fill_(float("nan") if buffer.is_floating_point() else -1)
    return buffer


def in_layout(layout, x):
    """x in the memory layout of the dense (meta) tensor `layout`; no copy when it already is."""
    if x.shape == layout.shape and x.stride() == layout.stride():
        return x
    return torch.empty_like(layout, dtype=x.dtype, device=x.device).copy_(x)


def step_arguments(step, dummy):
    """(step int, step pointer, STEP_IN_MEMORY) for a kernel that takes the training step either as an int or from
    a 0-d device tensor: read on the device, a replayed CUDA graph draws new noise at every step."""
    if isinstance(step, torch.Tensor):
        return 0, step, True
    return step, dummy, False
