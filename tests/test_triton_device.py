"""n2n_fast/triton/device.py: Triton launches under the tensor's GPU, not whatever device happens to be current."""
import types

import pytest
import torch

pytest.importorskip("triton")
from n2n_fast.triton.device import on_device  # noqa: E402


def test_launch_enters_the_tensors_device_when_another_is_current(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    on_second = types.SimpleNamespace(device=torch.device("cuda", 1))  # no GPU here: only the device is read
    guard = on_device(on_second)
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1


def test_no_switch_for_cpu_tensors_or_the_current_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert not isinstance(on_device(torch.zeros(1)), torch.cuda.device)
    assert not isinstance(on_device(types.SimpleNamespace(device=torch.device("cuda", 1))), torch.cuda.device)
