"""Schedules as pure functions of the step, so a resumed run recomputes exactly what the uninterrupted one used.

Each has a host form (a Python float from an int step) and, where the step needs it inside a CUDA graph, a device
form (a 0-d float32 tensor from the 0-d int64 device step, no host sync) that equals the host form rounded to
float32 bit for bit: the same float64 operations in the same order, then one rounding (tests/test_schedule.py).
"""
import math

import torch


def learning_rate(step, steps, lr, rampdown=0.3):
    """The paper's schedule: constant `lr`, then a cos² ramp-down to zero over the last `rampdown` of the steps
    (lr * cos²(π/2 · t), t going 0 -> 1; 0.5 + 0.5 cos(π t) squared in the original code's phrasing)."""
    start = steps * (1.0 - rampdown)
    if rampdown <= 0 or step < start:
        return lr
    t = (step - start) / (steps - start)
    return lr * math.cos(0.5 * math.pi * t) ** 2


def l0_gamma(step, steps):
    """The annealed L0 loss's exponent: 2 (L2-like, stable start) linearly down to 0 (the mode) over training."""
    return 2.0 * (1.0 - step / steps)


def l0_gamma_on_device(step_t, steps):
    """l0_gamma of the device step, as a 0-d float32 tensor on its device."""
    return (2.0 * (1.0 - step_t.to(torch.float64) / steps)).to(torch.float32)


def learning_rates(steps, lr, rampdown=0.3, device=None):
    """learning_rate of every step 0 .. steps - 1 as a float32 tensor: a graphed step gathers its rate at the
    device step instead of having it written before each replay (the table costs 4 bytes per step)."""
    values = [learning_rate(step, steps, lr, rampdown) for step in range(steps)]
    return torch.tensor(values, dtype=torch.float32, device=device)


def neighbor_weight(step, steps, weight):
    """Neighbor2Neighbor's regulariser weight, raised linearly from 0 to `weight` as in the authors' code (the
    regulariser pulls towards the full-image prediction, which is meaningless before the network has learned)."""
    return weight * step / steps


def neighbor_weight_on_device(step_t, steps, weight):
    """neighbor_weight of the device step, as a 0-d float32 tensor on its device."""
    return (weight * step_t.to(torch.float64) / steps).to(torch.float32)
