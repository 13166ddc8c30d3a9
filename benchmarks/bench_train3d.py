"""One Noise2Noise training step on the 3-D U-Net (docs/volumes.md §1, §4): the defaults of n2n_fast.train(dims=3)
against the pinned reference step (docs/design.md §6) and the tuned hand-written 3-D loop, same model
initialisation and clean batch of volumes, in one run.

reference:  float32, contiguous, eager, noisy_pair(backend="reference"), l2_loss(backend="reference"),
            torch.optim.Adam with default settings.
defaults:   train(dims=3)'s own step, built through the helpers train() uses: training/volumes.training_volumes
            (the crop, the VolumeStore of the batch's volumes, the z-pooling levels) and training/step.make_run
            for synthetic N2N with train()'s defaults, on the caller's network (the reference step's, so without the
            normalisation map, docs/normalisation.md §3); one step = training/step.train_step. Volumes take
            channels_last_3d wherever images take channels_last (bf16 or CUDA), and their crops are cut by the
            device-crops op (crops.DeviceVolumeCrops: Triton on a GPU, its twin on the CPU; docs/volumes.md §4).
tuned:      what a user writes by hand: the same network, `x + sigma * torch.randn_like(x)` twice, F.mse_loss,
            fused Adam, bf16 autocast where native; contiguous.
tuned-cl3d: the tuned loop with the network and its input in torch.channels_last_3d (the 5-D channels-last
            format): which of the two memory formats is faster on this device.

Sizes: a CI size (1 x 1 x 8 x 32 x 32, features 8) unless N2N_FAST_BENCH_FULL=1, then the 3-D issue's sizes
2 x 1 x 32 x 64 x 64 and 4 x 1 x 64 x 128 x 128 at features 48. The network pools z at z_pool_levels(depth)
levels, as train() picks for an isotropic volume of that depth. Gaussian noise (sigma uniform in [0, 50/255] for
the library steps, 25/255 for the hand-written ones, as benchmarks/bench_train.py).

extra_info: images_per_s (volumes per second), ms_per_step and ratio (reference time / this time), plus
features, z_pools and "bytes" (the clean batch read once plus Adam's 7 x 4 bytes per parameter).

    pytest benchmarks/bench_train3d.py --benchmark-only                        CI size
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_train3d.py --benchmark-only  the issue's sizes
    python benchmarks/bench_train3d.py [--threads 1]                           the memory-format study (below)

The memory-format study (run as a script): the tuned loop contiguous against channels_last_3d, in bf16 ("auto")
and float32, at three small sizes, the two formats' steps alternated so the machine's load hits both alike; the
median of 5 steps each and the ratio contiguous / channels_last_3d (above 1: channels_last_3d is faster).
"""
import inspect

import pytest
import torch

import n2n_fast
from n2n_fast.training.step import autocast_dtype, make_run, train_step
from n2n_fast.training.volumes import training_volumes
from n2n_fast.unet import z_pool_levels

from conftest import FULL, hand_written_step, reference_step, sync

NOISE = n2n_fast.Gaussian((0, 50 / 255))  # the paper's range, as in bench_train.py
HAND_SIGMA = 25 / 255
# (batch, channels, depth, height, width), features
CASES = ([((2, 1, 32, 64, 64), 48), ((4, 1, 64, 128, 128), 48)] if FULL else [((1, 1, 8, 32, 32), 8)])
IMPLS = ["reference", "defaults", "tuned", "tuned-cl3d"]
TRAIN_DEFAULTS = {name: p.default for name, p in inspect.signature(n2n_fast.train).parameters.items()}
_REFERENCE_SECONDS = {}


def _default_step(model, clean, device):
    """train(dims=3)'s step on a store holding the batch's volumes (crop = the whole volume), set up as train()
    sets it up: volumes.training_volumes, then step.make_run with train()'s defaults."""
    volumes = [volume.permute(1, 2, 3, 0).cpu().numpy() for volume in clean]  # (D, H, W, C), axes ZYXC
    batch, _, depth, height, width = clean.shape
    stores, _, crop, z_pools = training_volumes(volumes, None, (depth, height, width), device, axes="ZYXC")
    assert z_pools == model.z_pools, (z_pools, model.z_pools)  # the network train() would build for this crop
    defaults = {name: TRAIN_DEFAULTS[name] for name in ("loss", "lr", "rampdown", "neighbor_weight", "precision",
                                                        "channels_last", "seed")}
    run = make_run(model, stores, mode="noisy", noise=NOISE, steps=10**5, batch_size=batch, crop=crop, **defaults)
    state = {"step": 0}

    def step():
        train_step(run, state["step"])
        state["step"] += 1
    return step


def _tuned_step(model, clean, device, memory_format, precision="auto"):
    """The hand-written 3-D loop: randn_like noise twice, F.mse_loss, fused Adam, bf16 autocast where native
    (precision="float32": none)."""
    model_step = hand_written_step(model, device, autocast_dtype(precision, device), memory_format, fused=True)

    def step():
        noisy = clean + HAND_SIGMA * torch.randn_like(clean)
        target = clean + HAND_SIGMA * torch.randn_like(clean)
        model_step(noisy, target)
    return step


def _case_id(case):
    shape, features = case
    return "x".join(map(str, shape)) + f"-f{features}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step_3d(benchmark, record_throughput, device, impl, case):
    shape, features = case
    size = "x".join(map(str, shape))
    z_pools = z_pool_levels(shape[2])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = n2n_fast.UNet(shape[1], features=features, dims=3, z_pools=z_pools).to(device)
        clean = torch.rand(shape).to(device)
    if impl == "reference":
        step = reference_step(model, clean, NOISE)
    elif impl == "defaults":
        step = _default_step(model, clean, device)
    else:
        fmt = torch.channels_last_3d if impl == "tuned-cl3d" else torch.contiguous_format
        step = _tuned_step(model, clean, device, fmt)
    step()  # warm-up: oneDNN primitives and autotuning outside the timing
    step()

    def synced_step():
        step()
        sync(device)

    benchmark.pedantic(synced_step, rounds=10 if FULL else 3, iterations=1, warmup_rounds=0)
    op = f"train step n2n l2 3-D (U-Net f{features})"
    params = sum(p.numel() for p in model.parameters())
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=clean.nbytes + 28 * params,
                                reference_seconds=_REFERENCE_SECONDS.get((op, size)))
    benchmark.extra_info.update(batch=shape[0], depth=shape[2], crop=shape[-1], features=features, z_pools=z_pools,
                                noise="gaussian")
    if seconds:
        benchmark.extra_info["images_per_s"] = shape[0] / seconds
        benchmark.extra_info["ms_per_step"] = seconds * 1e3
        if impl == "reference":
            _REFERENCE_SECONDS[(op, size)] = seconds


STUDY_CASES = [((1, 1, 8, 32, 32), 8), ((1, 1, 16, 64, 64), 16), ((2, 1, 16, 64, 64), 16)]


def memory_format_study(cases=STUDY_CASES, repeats=5, log=print):
    """[(size, features, precision, contiguous seconds, channels_last_3d seconds)]: the module docstring's study."""
    import time

    device, rows = torch.device("cpu"), []
    for shape, features in cases:
        for precision in ("auto", "float32"):
            runs = {}
            for fmt in (torch.contiguous_format, torch.channels_last_3d):
                torch.manual_seed(0)
                model = n2n_fast.UNet(shape[1], features=features, dims=3, z_pools=z_pool_levels(shape[2]))
                step = _tuned_step(model, torch.rand(shape), device, fmt, precision)
                step()
                step()
                runs[fmt] = (step, [])
            for _ in range(repeats):
                for step, times in runs.values():
                    start = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - start)
            contiguous, cl3d = (sorted(times)[len(times) // 2] for _, times in runs.values())
            rows.append(("x".join(map(str, shape)), features, precision, contiguous, cl3d))
            log(f"| {rows[-1][0]} | {features} | {precision} | {contiguous * 1e3:.1f} | {cl3d * 1e3:.1f} | "
                f"{contiguous / cl3d:.2f} |")
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the tuned 3-D loop: contiguous vs channels_last_3d")
    parser.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(parser.parse_args().threads)
    print("| size | features | precision | contiguous ms | channels_last_3d ms | contiguous / cl3d |")
    print("| --- | --- | --- | --- | --- | --- |")
    memory_format_study()
