"""One Noise2Noise training step on the paper U-Net: the defaults of n2n_fast.train against the pinned reference
step (docs/design.md §6), same model initialisation and clean batch, in one run.

reference: float32, NCHW, eager, noisy_pair(backend="reference"), l2_loss(backend="reference"), torch.optim.Adam
           with default settings.
defaults:  train()'s own step (n2n_fast.training.step.train_step): crops cut from a store of the batch's images, bf16
           autocast where native (precision="auto"), channels_last, add_noise on the fastest backend for the input
           and n2n_loss (fused where a kernel serves the device, else noisy_pair + the loss, decided inside
           n2n_loss), fused Adam with the paper's betas.
graph:     train()'s step captured as a CUDA graph and replayed (graph="auto" on CUDA, n2n_fast/training/graph_step.py);
           CUDA only.
compile:   the defaults with the network under torch.compile (full size only: compiling takes minutes on a CPU).
naive, tuned, tuned-compile: what users write by hand (_user_step); the product's speed claim is against "tuned".
typical:   the loop most N2N code runs (the popular PyTorch re-implementations of the paper): a Dataset cuts a random
           crop and adds NumPy noise (float64 draws, as `np.random.normal` / `np.random.poisson` give) to each
           sample in DataLoader workers (`num_workers` in extra_info: NUM_WORKERS below), the batch is copied to
           the device and trained with the tuned step's model part (bf16 autocast where native, channels_last,
           fused Adam), so the difference from "tuned" is the data path alone.

The sweep: batch {1, 4, 16, 64} x crop {128, 256} with Gaussian noise, plus batch 16 x 256² with Poisson noise (the
paper's other synthetic model, the one NumPy draws slowest), at full size; a CI subset (2 x 64², both noises)
otherwise. "compile" and "tuned-compile" run at 4 x 128² and 4 x 256² only (compiling takes minutes).

"bytes" is a floor no step can beat: the clean batch read once, and Adam reading parameters, gradients and both
moments and writing parameters and moments (7 x 4 bytes per parameter). Images/s is the number to read on a GPU;
there `host_us_per_step` is the time a step takes to return before its work is done (the host's share; for the graph,
one fill and one replay). Launches per step are counted without a GPU by benchmarks/bench_dryrun.py.

    pytest benchmarks/bench_train.py --benchmark-only                      small: 2x3x64x64
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_train.py --benchmark-only  the sweep
"""
import inspect
import os
import time

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.training.data import ImageStore
from n2n_fast.training.step import autocast_dtype, capture, make_run, train_step

from conftest import FULL, hand_written_step, reference_step, sync

NOISES = {"gaussian": n2n_fast.Gaussian((0, 50 / 255)), "poisson": n2n_fast.Poisson((0.001, 50.0))}  # the paper's
CASES = ([((b, 3, c, c), "gaussian") for c in (128, 256) for b in (1, 4, 16, 64)] + [((16, 3, 256, 256), "poisson")]
         if FULL else [((2, 3, 64, 64), "gaussian"), ((2, 3, 64, 64), "poisson")])
COMPILE_SHAPES = {(4, 3, 128, 128), (4, 3, 256, 256)}
# DataLoader workers of the typical loop: the machine's cores less one for the main process (which runs the step),
# at most 8 (what those implementations set); N2N_FAST_BENCH_WORKERS overrides (0: the main process draws the noise)
NUM_WORKERS = (int(os.environ["N2N_FAST_BENCH_WORKERS"]) if os.environ.get("N2N_FAST_BENCH_WORKERS")
               else max(1, min(8, len(os.sched_getaffinity(0)) - 1)))
TRAIN_DEFAULTS = {name: p.default for name, p in inspect.signature(n2n_fast.train).parameters.items()}
_REFERENCE_SECONDS = {}


def _default_step(model, clean, device, noise, compiled, graph=False):
    """train()'s own step (n2n_fast.training.step.train_step) on a store holding the batch's images, as train()
    sets it up (training/step.make_run) for synthetic N2N with its defaults, on the caller's network (the reference
    step's, so without the normalisation map: it costs 0.01% of a step, docs/normalisation.md §3); `graph`:
    captured as train(graph="auto") does on CUDA."""
    images = [image.permute(1, 2, 0).cpu().numpy() for image in clean]
    batch, _, crop, _ = clean.shape
    defaults = {name: TRAIN_DEFAULTS[name] for name in ("loss", "lr", "rampdown", "neighbor_weight", "precision",
                                                        "channels_last", "seed")}
    run = make_run(model, [ImageStore(images, device)], mode="noisy", noise=noise, steps=10**5, batch_size=batch,
                   crop=crop, compile=compiled, **defaults)
    if graph:
        capture(run, True, device, 1, False, 0)
    state = {"step": 0}

    def step():
        train_step(run, state["step"])
        state["step"] += 1
    return step


def _hand_noise(x, noise):
    """The noise a user writes in torch: `x + sigma * randn_like(x)`, or `poisson(peak * x) / peak` with one peak per
    sample drawn from the model's range."""
    if noise == "gaussian":
        return x + 25 / 255 * torch.randn_like(x)
    low, high = NOISES["poisson"].peak
    peak = torch.empty(x.shape[0], 1, 1, 1, device=x.device).uniform_(low, high)
    return torch.poisson(x * peak) / peak


def _model_step(model, device, tuned):
    """(noisy, target) -> None: forward, F.mse_loss, backward, Adam; tuned = bf16 autocast where native,
    channels_last and fused Adam (what the tuned and the typical steps share)."""
    return hand_written_step(model, device, autocast_dtype("auto", device) if tuned else None,
                             torch.channels_last if tuned else torch.contiguous_format, fused=tuned)


def _user_step(model, clean, device, noise, tuned, compiled=False):
    """What a user writes by hand (docs/design.md §6): naive = float32, `x + sigma * randn_like(x)` twice,
    F.mse_loss, Adam; tuned = the same with bf16 autocast where native, channels_last and fused Adam; compiled = torch.compile
    (mode="reduce-overhead", which also replays CUDA graphs) of the tuned step."""
    model_step = _model_step(model, device, tuned)

    def forward_backward(x):
        model_step(_hand_noise(x, noise), _hand_noise(x, noise))

    run = torch.compile(forward_backward, mode="reduce-overhead") if compiled else forward_backward

    def step():
        run(clean)
    return step


class TypicalN2NDataset(torch.utils.data.Dataset):
    """The Dataset of the popular re-implementations: a random crop of a clean image and two noisy copies drawn
    with NumPy in float64 (Gaussian: sigma uniform in [0, 50/255] per copy; Poisson: peak uniform in [0.001, 50]
    per copy), as CHW float32 tensors. Each worker seeds its own generator (worker_init_fn)."""

    def __init__(self, images, crop, noise, length=10**9):
        self.images, self.crop, self.noise, self.length = images, crop, noise, length
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return self.length

    def _noisy(self, image):
        if self.noise == "gaussian":
            return image + self.rng.normal(0.0, self.rng.uniform(0, 50 / 255), image.shape)
        peak = self.rng.uniform(0.001, 50.0)
        return self.rng.poisson(peak * image) / peak

    def __getitem__(self, index):
        image = self.images[self.rng.integers(len(self.images))]
        top = self.rng.integers(image.shape[0] - self.crop + 1)
        left = self.rng.integers(image.shape[1] - self.crop + 1)
        crop = image[top:top + self.crop, left:left + self.crop]
        return tuple(torch.from_numpy(np.ascontiguousarray(self._noisy(crop).astype(np.float32).transpose(2, 0, 1)))
                     for _ in range(2))


def _seed_worker(worker_id):
    dataset = torch.utils.data.get_worker_info().dataset
    dataset.rng = np.random.default_rng(1 + worker_id)


def _typical_step(model, clean, device, noise):
    """The typical loop (module docstring): the DataLoader serves (noisy, target) batches cut from the batch's
    images (HWC float32, as those Datasets hold them); one step = the next batch to the device + the tuned step."""
    images = [image.permute(1, 2, 0).cpu().numpy() for image in clean]
    batch, _, crop, _ = clean.shape
    loader = torch.utils.data.DataLoader(TypicalN2NDataset(images, crop, noise), batch_size=batch,
                                         num_workers=NUM_WORKERS, pin_memory=device.type == "cuda",
                                         worker_init_fn=_seed_worker, persistent_workers=NUM_WORKERS > 0,
                                         prefetch_factor=2 if NUM_WORKERS else None)
    batches, model_step = iter(loader), _model_step(model, device, tuned=True)

    def step():
        noisy, target = next(batches)
        model_step(noisy.to(device, non_blocking=True), target.to(device, non_blocking=True))
    return step


IMPLS = (["reference", "defaults"] + (["graph"] if torch.cuda.is_available() else []) + ["naive", "tuned", "typical"]
         + (["compile", "tuned-compile"] if FULL else []))


def _host_seconds(step, device, repeat=5):
    """Median time a step takes to return (its work may still be queued on the GPU), each after a sync."""
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    sync(device)
    return sorted(times)[len(times) // 2]


def _case_id(case):
    shape, noise = case
    return "x".join(map(str, shape)) + "-" + noise


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step(benchmark, record_throughput, device, impl, case):
    shape, noise = case
    if impl in ("compile", "tuned-compile") and (shape not in COMPILE_SHAPES or noise != "gaussian"):
        pytest.skip("torch.compile runs at 4 x 128² and 4 x 256² with Gaussian noise only (minutes per compile)")
    if impl == "naive" and FULL and noise == "gaussian" and shape[0] not in (4, 16):
        pytest.skip("naive: batches 4 and 16 (the sweep's other batches compare the tuned step)")
    size = "x".join(map(str, shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = n2n_fast.UNet(shape[1]).to(device)
        clean = torch.rand(shape).to(device)
    if impl == "reference":
        step = reference_step(model, clean, NOISES[noise])
    elif impl in ("naive", "tuned", "tuned-compile"):
        step = _user_step(model, clean, device, noise, tuned=impl != "naive", compiled=impl == "tuned-compile")
    elif impl == "typical":
        step = _typical_step(model, clean, device, noise)
        benchmark.extra_info["num_workers"] = NUM_WORKERS
    else:
        step = _default_step(model, clean, device, NOISES[noise], compiled=impl == "compile", graph=impl == "graph")
    step()  # warm-up: oneDNN primitives, autotuning, compilation, DataLoader workers outside the timing
    step()

    def synced_step():
        step()
        sync(device)

    benchmark.pedantic(synced_step, rounds=3 if not FULL else 10, iterations=1, warmup_rounds=0)
    op = "train step n2n l2 (paper U-Net)" if noise == "gaussian" else f"train step n2n l2 {noise} (paper U-Net)"
    params = sum(p.numel() for p in model.parameters())
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=clean.nbytes + 28 * params,
                                reference_seconds=_REFERENCE_SECONDS.get((op, size)))
    benchmark.extra_info.update(batch=shape[0], crop=shape[-1], noise=noise)
    if seconds:
        benchmark.extra_info["images_per_s"] = shape[0] / seconds
        benchmark.extra_info["ms_per_step"] = seconds * 1e3
        if device.type == "cuda":
            benchmark.extra_info["host_us_per_step"] = _host_seconds(step, device) * 1e6
        if impl == "reference":
            _REFERENCE_SECONDS[(op, size)] = seconds
