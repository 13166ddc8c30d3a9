"""3-D denoise at its defaults (tile="auto", overlap="auto": tiles from the memory budget, streamed in z slabs)
against whole-volume inference (docs/tiling.md §8): same UNet(dims=3) (features 8, z_pools 5, float32), same
volume, one run; seconds, peak memory and the plan.

On the CPU both run on one thread (torch.set_num_threads(1), restored after), so the comparison is the tiling's
and not the thread pool's. Peak memory: CPU peak RSS growth (VmHWM after resetting it through
/proc/self/clear_refs), CUDA max allocated. The network's voxels are reported as a multiple of the volume's
(`voxels_ratio`): the overlap's price.

    pytest benchmarks/bench_tiled3d.py --benchmark-only                         CI size 16 x 96 x 96
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_tiled3d.py --benchmark-only   64 x 256 x 256 and 128 x 512 x 512

Whole-volume inference of 128 x 512 x 512 needs about 23 GiB at the measured 700 bytes per voxel
(benchmarks/unet_cost3d.py), so it is skipped above N2N_FAST_BENCH_WHOLE_MAX voxels (default 2**24): raise it
where memory allows; the skip says so.
"""
import os

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.inference.denoise import denoise, denoise_plan

from bench_tiling import _peak, _reset_peak
from conftest import FULL

# N2N_FAST_BENCH_VOLUME=DxHxW and N2N_FAST_BENCH_FEATURES=F replace the sizes and width (benchmarks/gpu_check.sh:
# a 300 x 1000 x 1000 tomogram at the paper's width 48)
_VOLUME = os.environ.get("N2N_FAST_BENCH_VOLUME")
SHAPES = ((tuple(int(v) for v in _VOLUME.split("x")),) if _VOLUME else
          ((64, 256, 256), (128, 512, 512)) if FULL else ((16, 96, 96),))
FEATURES = int(os.environ.get("N2N_FAST_BENCH_FEATURES", "8"))
ROUNDS = 1
WHOLE_MAX = int(os.environ.get("N2N_FAST_BENCH_WHOLE_MAX", str(2 ** 24)))
BUDGET = None if FULL else 96 << 20  # CI: a budget that splits the small volume into several tiles


@pytest.fixture(scope="module")
def unet3d():
    torch.manual_seed(0)
    return n2n_fast.UNet(1, features=FEATURES, dims=3).eval()


def _whole(net, volume, device):
    with torch.inference_mode():
        return net(torch.from_numpy(volume)[None, None].to(device))[0, 0].cpu().numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", ["whole", "tiled"])
def test_tiled_vs_whole_volume(benchmark, device, one_thread, unet3d, shape, impl):
    voxels = int(np.prod(shape))
    if impl == "whole" and voxels > WHOLE_MAX:
        pytest.skip(f"whole-volume inference of {shape} needs more memory than N2N_FAST_BENCH_WHOLE_MAX allows")
    net = unet3d.to(device)
    volume = np.random.default_rng(0).random(shape).astype(np.float32)
    options = dict(axes="ZYX", device=device, memory_budget=BUDGET, precision="float32")
    chosen = denoise_plan(net, volume, **{k: v for k, v in options.items() if k != "precision"})
    if impl == "whole":
        run = lambda: _whole(net, volume, device)  # noqa: E731
    else:
        run = lambda: denoise(net, volume, progress=False, **options)  # noqa: E731
    denoise(net, volume[:4, :32, :32], axes="ZYX", device=device)  # warm-up: allocator, oneDNN set-up
    base = _reset_peak(device)
    result = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    assert result.shape == volume.shape and np.isfinite(result).all()
    info = dict(op=f"denoise unet3d{FEATURES} fp32 tiled vs whole", size="x".join(map(str, shape)), impl=impl,
                device="cpu, 1 thread" if device.type == "cpu" else torch.cuda.get_device_name(device),
                peak_mib=_peak(device, base) / 2**20, precision="float32")
    if impl == "tiled":
        p = chosen.plan
        info.update(plan=chosen.describe(), tiles=p.count, voxels_ratio=p.count * int(np.prod(p.tile)) / voxels,
                    estimated_mib=chosen.estimated_bytes / 2**20)
    benchmark.extra_info.update(info)
    print(info)
