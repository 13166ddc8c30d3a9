"""denoise at its defaults (tile="auto", overlap="auto") against whole-image inference (docs/tiling.md §4): same model
(the paper U-Net, float32), same RGB image, one run; seconds, peak memory and the plan.

On the CPU both run on one thread (torch.set_num_threads(1), restored after), so the comparison is the tiling's
and not the thread pool's. Peak memory: CPU peak RSS growth (VmHWM after resetting it), CUDA max allocated. The
network's pixels are reported as a multiple of the image's (`pixels_ratio`): the overlap's price.

    pytest benchmarks/bench_tiling_auto.py --benchmark-only                      small sizes, narrow U-Net
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_tiling_auto.py --benchmark-only   1024^2 and 2048^2, paper U-Net
"""
import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.inference.denoise import denoise, denoise_plan

from bench_tiling import _peak, _reset_peak
from conftest import FULL

SIZES = (1024, 2048) if FULL else (192, 320)
FEATURES = 48 if FULL else 8
ROUNDS = 2 if FULL else 1


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return n2n_fast.UNet(3, features=FEATURES).eval()


def _whole(net, image, device):
    with torch.inference_mode():
        result = net(torch.from_numpy(image).permute(2, 0, 1)[None].to(device))[0].permute(1, 2, 0)
        return result.cpu().numpy()


@pytest.mark.parametrize("side", SIZES)
@pytest.mark.parametrize("impl", ["whole", "auto"])
def test_auto_vs_whole(benchmark, device, one_thread, unet, side, impl):
    net = unet.to(device)
    image = np.random.default_rng(side).random((side, side, 3)).astype(np.float32)
    plan = denoise_plan(net, image, device=device)
    if impl == "whole":
        run = lambda: _whole(net, image, device)  # noqa: E731
    else:
        run = lambda: denoise(net, image, device=device)  # noqa: E731
    denoise(net, image[:64, :64], device=device)  # warm-up: allocator, oneDNN/cuDNN set-up
    base = _reset_peak(device)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    info = dict(op=f"denoise unet{FEATURES} fp32 auto vs whole", size=f"{side}x{side}x3", impl=impl,
                device="cpu, 1 thread" if device.type == "cpu" else torch.cuda.get_device_name(device),
                peak_mib=_peak(device, base) / 2**20)
    if impl == "auto":
        p = plan.plan
        info.update(plan=plan.describe(), tiles=p.count,
                    pixels_ratio=p.count * p.tile_h * p.tile_w / (side * side))
    benchmark.extra_info.update(info)
