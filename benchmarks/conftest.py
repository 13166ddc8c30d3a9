"""Shared pieces of the pytest-benchmark suites (docs/design.md §6).

Sizes are small unless `N2N_FAST_BENCH_FULL=1` (CI runs `pytest benchmarks/ --benchmark-disable` to keep the
files working; `n2n-fast bench` runs them at full size and renders the report with benchmarks/report.py).

What the report reads from each benchmark's `extra_info` (all optional; it falls back to the test's name, group
and parameters, and derives ratios from the medians of the same op and size):
    op      the op family, e.g. "noisy_pair gaussian fp32"
    size    a short shape label, e.g. "4x3x256x256"
    impl    which implementation ran: "reference", "triton", "cpp", "eager", "compile", ...
    device  "cpu" or "cuda" (or the GPU's name)
    bytes   the bytes the op must move (the floor), so GB/s = bytes / median time
    gbps    bytes / median time, when the benchmark computed it itself
    ratio   speed-up against the reference (reference time / this time), when measured inside the test
`record_throughput` below fills these in one call after the benchmark ran.
"""
import os
import platform

import pytest
import torch
import torch.nn.functional as F

FULL = os.environ.get("N2N_FAST_BENCH_FULL", "0") not in ("", "0")
# Other jobs on the machine distort CPU timings: keep the load (1/5/15-minute averages) at the start and the end.
_LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None


def bench_device():
    """Where the benchmarks run: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def device():
    return bench_device()


@pytest.fixture
def one_thread(device):
    """One torch thread on the CPU for the test's duration (stable figures on shared cores), restored after."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def full():
    """True when the full sizes were asked for (N2N_FAST_BENCH_FULL=1)."""
    return FULL


def _median(benchmark):
    """Median seconds of the finished benchmark, or None when timing was disabled (--benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    stats = getattr(stats, "stats", None)
    return getattr(stats, "median", None)


@pytest.fixture
def record_throughput():
    """record(benchmark, *, op, size, impl, nbytes, reference_seconds=None): call after `benchmark(...)` ran.

    Stores op/size/impl/device/bytes and GB/s (bytes / median time) in `benchmark.extra_info`, and the ratio
    against the reference when its median time is given. With timing disabled only the labels are stored."""
    def record(benchmark, *, op, size, impl, nbytes, reference_seconds=None, device=None):
        device = torch.device(device) if device is not None else bench_device()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        benchmark.extra_info.update(op=str(op), size=str(size), impl=str(impl), device=name, bytes=int(nbytes))
        seconds = _median(benchmark)
        if seconds:
            benchmark.extra_info["gbps"] = nbytes / seconds / 1e9
            if reference_seconds:
                benchmark.extra_info["ratio"] = reference_seconds / seconds
        return seconds

    return record


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add what the report prints about the machine: torch/CUDA/cuDNN/triton versions, the GPU if any, CPU threads
    and the cores this process may use."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cores_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    machine_info["cuda"] = torch.version.cuda  # the toolkit torch was built with
    machine_info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    try:
        import triton

        machine_info["triton"] = triton.__version__
    except ImportError:
        machine_info["triton"] = None
    machine_info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    machine_info["full_size"] = FULL
    if _LOAD_AT_START is not None:
        machine_info["load_average"] = {"start": " ".join(f"{v:.1f}" for v in _LOAD_AT_START),
                                        "end": " ".join(f"{v:.1f}" for v in os.getloadavg())}
    machine_info.setdefault("node", platform.node())



def sync(device):
    """Wait for the device's queued work (CUDA launches are asynchronous); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_step(model, clean, noise):
    """The pinned reference training step (docs/design.md §6): float32, eager, noisy_pair(backend="reference"),
    l2_loss(backend="reference"), torch.optim.Adam with its defaults; a new noise draw at every call. Shared by
    the 2-D and 3-D training-step benchmarks (the batch's rank decides which)."""
    import n2n_fast

    optimizer = torch.optim.Adam(model.parameters())
    state = {"step": 0}

    def run():
        y1, y2 = n2n_fast.noisy_pair(clean, noise, seed=0, step=state["step"], backend="reference")
        loss = n2n_fast.l2_loss(model(y1), y2, backend="reference")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["step"] += 1
    return run


def hand_written_step(model, device, amp, memory_format, fused):
    """(noisy, target) -> None, the model half of the hand-written steps (bench_train.py, bench_train3d.py):
    forward in `memory_format` under `amp` autocast (None: float32), F.mse_loss, backward, Adam (lr 3e-4, `fused`)."""
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, fused=fused)

    def step(noisy, target):
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.mse_loss(model(noisy.contiguous(memory_format=memory_format)).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step
