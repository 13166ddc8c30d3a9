"""The schedules' device forms (what a graphed step computes from the device step) equal their host forms rounded
to float32, bit for bit, at every step; the learning-rate table likewise."""
import numpy as np
import pytest
import torch

from n2n_fast.training import schedule


@pytest.mark.parametrize("steps", [1, 7, 1000, 300_001])
def test_device_forms_equal_the_host_forms(steps):
    picks = sorted({0, 1, steps // 3, steps // 2, steps - 2, steps - 1} - {-1})
    for step in picks:
        step_t = torch.tensor(step, dtype=torch.int64)
        gamma = schedule.l0_gamma_on_device(step_t, steps)
        weight = schedule.neighbor_weight_on_device(step_t, steps, 2.0)
        assert gamma.dtype == weight.dtype == torch.float32 and gamma.dim() == weight.dim() == 0
        assert gamma.item() == np.float32(schedule.l0_gamma(step, steps)), (steps, step)
        assert weight.item() == np.float32(schedule.neighbor_weight(step, steps, 2.0)), (steps, step)


def test_device_forms_follow_the_step():
    """A form that ignored the device step would give one value for every step."""
    values = {schedule.l0_gamma_on_device(torch.tensor(s), 10).item() for s in range(10)}
    weights = {schedule.neighbor_weight_on_device(torch.tensor(s), 10, 2.0).item() for s in range(10)}
    assert len(values) == len(weights) == 10


@pytest.mark.parametrize("steps,rampdown", [(1, 0.3), (10, 0.0), (1000, 0.3), (999, 1.0)])
def test_learning_rate_table(steps, rampdown):
    table = schedule.learning_rates(steps, 3e-4, rampdown)
    assert table.dtype == torch.float32 and table.shape == (steps,)
    expected = np.array([schedule.learning_rate(s, steps, 3e-4, rampdown) for s in range(steps)], dtype=np.float32)
    assert np.array_equal(table.numpy(), expected)
