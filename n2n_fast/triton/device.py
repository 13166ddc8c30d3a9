"""The GPU a Triton launch runs on.

Triton launches on the current CUDA device's current stream, whatever device the tensors live on. With
`device="cuda:1"` or a rank of torchrun whose tensors are not on device 0, a launch would run on device 0's stream
with another device's pointers. Every launcher enters `on_device(tensor)`: nothing for CPU tensors (interpreter, dry
run) or when the tensor's device is already current, else torch.cuda.device for the duration of the launch.
"""
import contextlib

import torch

_NOTHING = contextlib.nullcontext()


def on_device(tensor):
    """A context in which Triton launches on `tensor`'s device."""
    device = tensor.device
    if device.type != "cuda" or device.index is None or device.index == torch.cuda.current_device():
        return _NOTHING
    return torch.cuda.device(device)
