"""Streaming a volume from disk to disk (docs/volumes.md §6): peak memory against the budget, and time.

A uint16 .npy volume is denoised by a narrow 3-D U-Net (features 4, z_pools 3: alignment 8 x 32 x 32) in float32
on the device (the CPU here) with memory_budget = BUDGET and tile="auto":
    streamed  volume_files.denoise_volume_file: memmap in, slabs of planes, memmap out (what `n2n-fast denoise`
              runs for a 3-D checkpoint)
    by_hand   what a user writes without it: np.load the volume, n2n_fast.denoise(axes="ZYX") at the same
              budget, np.save the result (the whole volume in memory, in and out)
Both run the same plan, so their outputs are equal (asserted) and the time difference is the I/O path's.
Reported per run (extra_info): seconds, `peak_mib` (peak RSS growth: /proc/self/status VmHWM after resetting it),
`budget_mib`, `peak_over_budget`, bytes = the input and output files (read once, written once).

    pytest benchmarks/bench_volume_stream.py --benchmark-only                        CI size: 40 x 64 x 64
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_volume_stream.py --benchmark-only  128 x 512 x 512, 256 MiB
"""
import time

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.inference.volume_files import denoise_volume_file

from conftest import FULL

SHAPE = (128, 512, 512) if FULL else (40, 64, 64)
BUDGET = (256 if FULL else 128) * 2**20
FEATURES, Z_POOLS = 4, 3
_RESULTS = {}


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM (peak RSS) to the current RSS
        handle.write("5")
    return _rss_kib("VmRSS") * 1024


def _rss_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("volume") / "volume.npy"
    volume = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=SHAPE)
    rng = np.random.default_rng(0)
    for z in range(0, SHAPE[0], 8):  # written in blocks: the test process never holds the volume either
        volume[z:z + 8] = rng.integers(0, 65535, (min(8, SHAPE[0] - z),) + SHAPE[1:], dtype=np.uint16)
    volume.flush()
    del volume
    return path


def _network():
    torch.manual_seed(0)
    return n2n_fast.UNet(1, features=FEATURES, dims=3, z_pools=Z_POOLS).eval()


def _streamed(net, source, target):
    return denoise_volume_file(net, source, target, axes="ZYX", memory_budget=BUDGET, device="cpu",
                               precision="float32", progress=False)


def _by_hand(net, source, target):
    volume = np.load(source)
    np.save(target, n2n_fast.denoise(net, volume, axes="ZYX", memory_budget=BUDGET, device="cpu",
                                     precision="float32", progress=False))


@pytest.mark.parametrize("impl", ["streamed", "by_hand"])
def test_volume_stream(benchmark, record_throughput, volume_file, impl, tmp_path):
    torch.set_num_threads(1)
    net = _network()
    target = tmp_path / "out.npy"
    run = {"streamed": _streamed, "by_hand": _by_hand}[impl]
    state = {}

    from n2n_fast.inference.volume import volume_plan
    from n2n_fast.inference.volume_stream import ArraySource

    # one model call on a tile of the plan first: the convolutions' one-time allocations are not the path's
    shaped = ArraySource(np.broadcast_to(np.zeros((), np.uint16), SHAPE + (1,)))  # the shape only, no memory
    plan = volume_plan(net, shaped, memory_budget=BUDGET, device="cpu")
    with torch.inference_mode():
        net(torch.zeros((1, 1) + tuple(plan.plan.tile)))

    def once():
        if target.exists():
            target.unlink()
        base = _reset_peak()
        start = time.perf_counter()
        state["plan"] = run(net, volume_file, target)
        state["seconds"] = time.perf_counter() - start
        state["peak"] = _rss_kib("VmHWM") * 1024 - base

    benchmark.pedantic(once, rounds=1, iterations=1)
    nbytes = 2 * int(np.prod(SHAPE)) * 2  # uint16 in, uint16 out
    record_throughput(benchmark, op="denoise volume file (UNet3d f4 float32)", size="x".join(map(str, SHAPE)),
                      impl=impl, nbytes=nbytes, device="cpu")
    peak_mib, budget_mib = state["peak"] / 2**20, BUDGET / 2**20
    benchmark.extra_info.update(seconds=state["seconds"], peak_mib=peak_mib, budget_mib=budget_mib,
                                peak_over_budget=peak_mib / budget_mib)
    if state.get("plan") is not None:
        benchmark.extra_info["plan"] = state["plan"].describe()
    _RESULTS[impl] = np.load(target, mmap_mode="r")
    print(f"\n{impl}: {state['seconds']:.1f} s, peak RSS growth {peak_mib:.0f} MiB for a {budget_mib:.0f} MiB "
          f"budget ({peak_mib / budget_mib:.2f}x)" + (f"; {benchmark.extra_info['plan']}" if "plan" in
                                                      benchmark.extra_info else ""))
    if len(_RESULTS) == 2:  # the same plan: the two paths agree bitwise
        np.testing.assert_array_equal(_RESULTS["streamed"], _RESULTS["by_hand"])
