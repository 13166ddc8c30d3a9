"""Arrival counters for the losses' one-launch reduction (triton/loss.py `finish_when_last`).

Every program of a loss kernel stores its partial sum, then takes a ticket (an atomic increment of one int32); the
program that draws the last ticket sums all partials in a fixed order, writes the loss and its scale, and sets the
counter back to 0. So a reduced loss is one launch instead of two, with the same fixed-order, atomics-free
arithmetic on the values.

A counter is reused by every launch on one stream: stream order runs those launches one after another, and each
leaves it at 0 for the next. Two streams get two counters, so losses launched concurrently on different streams
never share one. While a CUDA graph is being captured the counter is a fresh `torch.zeros`: the zeroing is
captured with the kernel and runs at every replay, and nothing eager ever reads the graph's counter.
CPU tensors (the Triton interpreter runs programs one after another; the dry run runs none) share one counter.
"""
import torch

try:  # what Triton's own driver asks for the stream it launches on (a Stream object per call costs microseconds)
    from torch._C import _cuda_getCurrentRawStream as _raw_stream
except ImportError:
    def _raw_stream(index):
        return torch.cuda.current_stream(index).cuda_stream

_COUNTERS = {}  # (device index, raw stream) -> int32 [1], zero between launches


def _new_counter(device):
    return torch.zeros(1, dtype=torch.int32, device=device)


def ticket_counter(device):
    """The zeroed int32 [1] counter for a loss launch on `device`'s current stream."""
    if device.type != "cuda":
        key = (device.type, None)
    elif torch.cuda.is_current_stream_capturing():
        return _new_counter(device)
    else:
        key = (device.index, _raw_stream(device.index))
    counter = _COUNTERS.get(key)
    if counter is None:
        counter = _COUNTERS[key] = _new_counter(device)
    return counter
