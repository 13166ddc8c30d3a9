"""Tiled inference (docs/design.md §6): tile_gather and tile_blend, extension vs reference; denoise vs the reference
tiling vs whole-image inference, with the share of time spent outside the model and the peak memory.

Bytes each op must move: gather reads the source pixels of every tile and writes the tiles (in + out element size
per tile element); blend reads the tiles and reads + writes the float32 output once per covered pixel (4 + 8 bytes
per tile element at most). Denoise reports seconds, `outside_model` (share of wall time not inside model calls)
and `peak_mib` (CUDA: max allocated; CPU: peak RSS growth, /proc/self/status VmHWM after resetting it).

    pytest benchmarks/bench_tiling.py --benchmark-only                  small sizes
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_tiling.py --benchmark-only
"""
import time

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import _backend
from n2n_fast.inference.denoise import denoise
from n2n_fast.inference.plan import make_plan

from conftest import FULL

SIDE = 2048 if FULL else 384  # RGB image side for the op benchmarks and denoise
TILE, OVERLAP = (256, 64) if FULL else (128, 32)
FEATURES = 48 if FULL else 8  # the paper U-Net at full size; a narrow one keeps CI quick
_REFERENCE_SECONDS = {}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _grid(device, dtype=torch.uint8, batch=16):
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand((1, 3, SIDE, SIDE), generator=gen) * 255).to(dtype).to(device)
    plan = make_plan(SIDE, SIDE, TILE, OVERLAP, 32, "cosine")
    index = torch.tensor([(0, r, c) for r in range(len(plan.row_origins)) for c in range(len(plan.col_origins))]
                         [:batch], device=device)
    rows = torch.tensor(plan.row_origins, device=device)
    cols = torch.tensor(plan.col_origins, device=device)
    return image, plan, index, rows, cols


def _record(benchmark, record_throughput, op, impl, nbytes, device):
    seconds = record_throughput(benchmark, op=op, size=f"{SIDE}x{SIDE}", impl=impl, nbytes=nbytes,
                                reference_seconds=_REFERENCE_SECONDS.get(op), device=device)
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[op] = seconds


@pytest.mark.parametrize("impl", ["reference", "extension"])
def test_tile_gather(benchmark, record_throughput, device, impl):
    _, gather = _backend.choose("tile_gather", device, impl)
    image, plan, index, rows, cols = _grid(device)

    def run():
        gather(image, index, rows, cols, plan.tile_h, plan.tile_w, SIDE, 0, torch.float32)
        _sync(device)

    run()
    benchmark(run)
    elements = index.shape[0] * 3 * plan.tile_h * plan.tile_w
    _record(benchmark, record_throughput, "tile_gather uint8->fp32", impl, elements * 5, device)


@pytest.mark.parametrize("impl", ["reference", "extension"])
def test_tile_blend(benchmark, record_throughput, device, impl):
    _, blend = _backend.choose("tile_blend", device, impl)
    _, plan, index, rows, cols = _grid(device)
    tiles = torch.rand((index.shape[0], 3, plan.tile_h, plan.tile_w), device=device)
    out = torch.zeros((1, 3, SIDE, SIDE), device=device)

    def run():
        blend(out, tiles, index, rows, cols, SIDE, SIDE, 0, plan.overlap, plan.mode)
        _sync(device)

    run()
    benchmark(run)
    _record(benchmark, record_throughput, "tile_blend fp32", impl, tiles.numel() * 12, device)


class _TimedModel(torch.nn.Module):
    """Wraps the network and adds up the wall time spent inside it (synchronised on CUDA)."""

    def __init__(self, net, device):
        super().__init__()
        self.net, self.device, self.seconds = net, device, 0.0
        self.in_channels, self.alignment = net.in_channels, 32

    def forward(self, x):
        _sync(self.device)
        start = time.perf_counter()
        y = self.net(x)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        return y


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM (peak RSS) to the current RSS
        handle.write("5")
    return _rss_kib("VmRSS") * 1024


def _peak(device, base):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) - base
    return _rss_kib("VmHWM") * 1024 - base


def _rss_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def unet_and_image():
    torch.manual_seed(0)
    image = np.random.default_rng(0).random((SIDE, SIDE, 3)).astype(np.float32)
    return n2n_fast.UNet(3, features=FEATURES).eval(), image


@pytest.mark.parametrize("impl", ["reference", "extension", "extension-bf16", "whole"])
def test_denoise(benchmark, device, unet_and_image, impl):
    net, image = unet_and_image
    timed = _TimedModel(net.to(device), device)

    def run():
        timed.seconds = 0.0
        if impl == "whole":
            with torch.inference_mode():
                result = timed(torch.from_numpy(image).permute(2, 0, 1)[None].to(device))[0].permute(1, 2, 0)
                return result.cpu().numpy()
        return denoise(timed, image, tile=TILE, overlap=OVERLAP, device=device,
                       precision="bf16" if impl.endswith("bf16") else "float32",
                       backend="reference" if impl == "reference" else "extension")

    run()  # warm-up: allocator, cuDNN algorithm choice
    base = _reset_peak(device)
    start = time.perf_counter()
    result = benchmark.pedantic(run, rounds=1, iterations=1)
    wall = time.perf_counter() - start
    benchmark.extra_info.update(op=f"denoise unet{FEATURES} fp32 tile {TILE}/{OVERLAP}", size=f"{SIDE}x{SIDE}x3",
                                impl=impl, seconds=wall,
                                # bf16 runs a channels_last copy of the model, which the timer does not see
                                outside_model=1 - timed.seconds / wall if timed.seconds else None,
                                peak_mib=_peak(device, base) / 2**20)
    if impl == "extension-bf16":
        exact = denoise(net, image, tile=TILE, overlap=OVERLAP, device=device)
        mse = float(np.mean((result.astype(np.float64) - exact) ** 2))
        benchmark.extra_info["psnr_vs_float32"] = 10 * np.log10(1 / mse) if mse > 0 else float("inf")


@pytest.mark.skipif(not FULL, reason="full size only (N2N_FAST_BENCH_FULL=1)")
@pytest.mark.parametrize("impl", ["reference", "extension"])
def test_denoise_4096(benchmark, device, impl):
    """4096^2 RGB with the paper U-Net (whole-image inference would need ~17 GiB on the CPU: not compared)."""
    torch.manual_seed(0)
    net = n2n_fast.UNet(3).eval().to(device)
    image = np.random.default_rng(0).random((4096, 4096, 3)).astype(np.float32)
    base = _reset_peak(device)
    benchmark.pedantic(lambda: denoise(net, image, tile=256, overlap=64, device=device, backend=impl), rounds=1,
                       iterations=1)
    benchmark.extra_info.update(op="denoise unet48 fp32 tile 256/64", size="4096x4096x3", impl=impl,
                                peak_mib=_peak(device, base) / 2**20)


@pytest.mark.skipif(not FULL, reason="full size only (N2N_FAST_BENCH_FULL=1)")
def test_denoise_memmap_16384(benchmark, tmp_path):
    """16384^2 uint16 grey memmap into a memmap on the CPU with a one-layer model: peak RSS growth (< 3 GB)."""
    side = 16384
    source = np.memmap(tmp_path / "in", dtype=np.uint16, mode="w+", shape=(side, side))
    source[:] = 1234
    source.flush()
    source = np.memmap(tmp_path / "in", dtype=np.uint16, mode="r", shape=(side, side))
    out = np.memmap(tmp_path / "out", dtype=np.uint16, mode="w+", shape=(side, side))
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    base = _reset_peak(torch.device("cpu"))
    benchmark.pedantic(lambda: denoise(model, source, out=out, device="cpu"), rounds=1, iterations=1)
    benchmark.extra_info.update(op="denoise memmap conv1 uint16", size=f"{side}x{side}", impl="extension",
                                peak_mib=_peak(torch.device("cpu"), base) / 2**20)
