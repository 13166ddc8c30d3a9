"""A step's 3-D training crops (docs/volumes.md §4): the device path train(dims=3) takes (DeviceVolumeCrops.crops:
one `volume_crops` launch where Triton serves, else the philox op's picks and the twin's gather) against the host
path it equals bit for bit (volumes.draw_volume_crops + VolumeStore.crops: slices of a resident tensor) and the
pure-PyTorch twin (reference `volume_crops`, its own Philox), the same crops in one run.

GB/s against the bytes a cut must move: each output voxel's source element read once (1 byte for uint8) and its
float32 written once. Ratios are against the reference.

    pytest benchmarks/bench_crops.py --benchmark-only                      2 crops of 8x32x32 from 16x64x64 volumes
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_crops.py --benchmark-only   2 crops of 32x64x64 from 64x128x128
"""
import numpy as np
import pytest
import torch

from n2n_fast import _backend
from n2n_fast.crops import DeviceVolumeCrops
from n2n_fast.training import data, volumes

from conftest import FULL

BATCH = 2
VOLUME, CROP = ((64, 128, 128), (32, 64, 64)) if FULL else ((16, 64, 64), (8, 32, 32))
SIZE = f"{BATCH}x1x{'x'.join(map(str, CROP))}"
_REFERENCE_SECONDS = {}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("impl", ["reference", "host", "device"])
def test_volume_crops(benchmark, record_throughput, device, impl):
    rng = np.random.default_rng(0)
    store = volumes.VolumeStore([rng.integers(0, 256, (*VOLUME, 1), dtype=np.uint8) for _ in range(2)], device)
    crops = DeviceVolumeCrops(store, data.DATA_KEY, data.SAMPLE, volumes.DEPTH)
    step_t = torch.zeros((), dtype=torch.int64, device=device)
    counter = iter(range(10**9))
    reference = _backend.choose("volume_crops", device, "reference")[1]

    def cut():
        step = next(counter)  # a new step, new picks, every call
        if impl == "host":
            out = store.crops(volumes.draw_volume_crops(0, step, 0, BATCH, store.sizes, CROP), CROP)
        elif impl == "device":
            out = crops.crops(0, step_t.fill_(step), 0, BATCH, CROP)
        else:
            out = reference(crops.flat, crops.offsets, crops.depths, crops.heights, crops.widths, crops.inv_scale,
                            data.DATA_KEY, step_t.fill_(step), 0, BATCH, (data.SAMPLE, volumes.DEPTH), 1, CROP)
        _sync(device)
        return out

    cut()  # warm-up: a Triton compile outside the timing
    benchmark(cut)
    benchmark.extra_info["served_by"] = _backend.choose("volume_crops", device, None, flat=crops.flat)[0]
    op = "volume crops uint8"
    seconds = record_throughput(benchmark, op=op, size=SIZE, impl=impl, nbytes=BATCH * int(np.prod(CROP)) * (1 + 4),
                                reference_seconds=_REFERENCE_SECONDS.get((op, SIZE)))
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[op, SIZE] = seconds
