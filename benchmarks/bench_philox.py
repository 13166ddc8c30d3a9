"""Philox4x32-10 words for a tensor of counters: reference (int64 tensor arithmetic) vs the extension (C++ CPU or
CUDA, csrc/philox.h) vs Triton (CUDA), same counters in one run.

Bytes the op must move: read 16 B of counters and write 16 B of words per counter.
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_philox.py --benchmark-only
"""
import pytest
import torch

from n2n_fast import _backend

from conftest import FULL, bench_device

COUNTERS = (1 << 24 if bench_device().type == "cuda" else 1 << 20) if FULL else 4099
_REFERENCE_SECONDS = {}  # size -> median of the reference, measured first in the same run


@pytest.mark.parametrize("impl", ["reference", "extension", "triton"])
def test_philox(benchmark, record_throughput, device, impl):
    try:
        _, fn = _backend.choose("philox", device, backend=impl)
    except RuntimeError as exc:
        pytest.skip(str(exc).splitlines()[-1].strip())
    gen = torch.Generator().manual_seed(0)
    counters = torch.randint(-(2**31), 2**31 - 1, (COUNTERS, 4), dtype=torch.int32, generator=gen).to(device)

    def run():
        out = fn(counters, 12345)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    run()  # warm-up: Triton compiles outside the timing
    benchmark(run)
    seconds = record_throughput(benchmark, op="philox words", size=str(COUNTERS), impl=impl, nbytes=COUNTERS * 32,
                                reference_seconds=_REFERENCE_SECONDS.get(COUNTERS))
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[COUNTERS] = seconds
