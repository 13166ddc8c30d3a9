"""Schedules as pure functions of the step, so a resumed run recomputes exactly what the uninterrupted one used."""
import math


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


def neighbor_weight(step, steps, weight):
    """Neighbor2Neighbor's regulariser weight, raised linearly from 0 to `weight` as in the authors' code (the
    regulariser pulls towards the full-image prediction, which is meaningless before the network has learned)."""
    return weight * step / steps
