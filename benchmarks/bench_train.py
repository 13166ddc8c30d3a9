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

"bytes" is a floor no step can beat: the clean batch read once, and Adam reading parameters, gradients and both
moments and writing parameters and moments (7 x 4 bytes per parameter). Images/s is the number to read on a GPU;
there `host_us_per_step` is the time a step takes to return before its work is done (the host's share; for the graph,
one fill and one replay). Launches per step are counted without a GPU by benchmarks/bench_dryrun.py.

    pytest benchmarks/bench_train.py --benchmark-only                      small: 2x3x64x64
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_train.py --benchmark-only  4x3x128x128 and 4x3x256x256
"""
import inspect
import time

import pytest
import torch
import torch.nn.functional as F

import n2n_fast
from n2n_fast.training.data import ImageStore
from n2n_fast.noise import noisy_pair
from n2n_fast.training.step import autocast_dtype, capture, make_run, train_step

from conftest import FULL

SHAPES = [(4, 3, 128, 128), (4, 3, 256, 256)] if FULL else [(2, 3, 64, 64)]
NOISE = n2n_fast.Gaussian((0, 50 / 255))
TRAIN_DEFAULTS = {name: p.default for name, p in inspect.signature(n2n_fast.train).parameters.items()}
_REFERENCE_SECONDS = {}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reference_step(model, clean, device):
    optimizer = torch.optim.Adam(model.parameters())
    state = {"step": 0}

    def run():
        y1, y2 = noisy_pair(clean, NOISE, seed=0, step=state["step"], backend="reference")
        loss = n2n_fast.l2_loss(model(y1), y2, backend="reference")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["step"] += 1
    return run


def _default_step(model, clean, device, compiled, graph=False):
    """train()'s own step (n2n_fast.training.step.train_step) on a store holding the batch's images, as train() sets it up
    for synthetic N2N with its defaults; `graph`: captured as train(graph="auto") does on CUDA."""
    images = [image.permute(1, 2, 0).cpu().numpy() for image in clean]
    batch, _, crop, _ = clean.shape
    defaults = {name: TRAIN_DEFAULTS[name] for name in ("loss", "lr", "rampdown", "neighbor_weight", "precision",
                                                        "channels_last", "seed")}
    run = make_run(model, [ImageStore(images, device)], mode="noisy", noise=NOISE, steps=10**5, batch_size=batch,
                   crop=crop, compile=compiled, **defaults)
    if graph:
        capture(run, True, device, 1, False, 0)
    state = {"step": 0}

    def step():
        train_step(run, state["step"])
        state["step"] += 1
    return step


def _user_step(model, clean, device, tuned, compiled=False):
    """What a user writes by hand (docs/design.md §6): naive = float32, `x + sigma * randn_like(x)` twice, F.mse_loss,
    Adam; tuned = the same with bf16 autocast where native, channels_last and fused Adam; compiled = torch.compile
    (mode="reduce-overhead", which also replays CUDA graphs) of the tuned step."""
    amp = autocast_dtype("auto", device) if tuned else None
    memory_format = torch.channels_last if tuned else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, fused=tuned)
    sigma = 25 / 255

    def forward_backward(x):
        noisy, target = x + sigma * torch.randn_like(x), x + sigma * torch.randn_like(x)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.mse_loss(model(noisy.contiguous(memory_format=memory_format)).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    run = torch.compile(forward_backward, mode="reduce-overhead") if compiled else forward_backward

    def step():
        run(clean)
    return step


IMPLS = (["reference", "defaults"] + (["graph"] if torch.cuda.is_available() else []) + ["naive", "tuned"]
         + (["compile", "tuned-compile"] if FULL else []))


def _host_seconds(step, device, repeat=5):
    """Median time a step takes to return (its work may still be queued on the GPU), each after a sync."""
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    _sync(device)
    return sorted(times)[len(times) // 2]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step(benchmark, record_throughput, device, impl, shape):
    size = "x".join(map(str, shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = n2n_fast.UNet(shape[1]).to(device)
        clean = torch.rand(shape).to(device)
    if impl == "reference":
        step = _reference_step(model, clean, device)
    elif impl in ("naive", "tuned", "tuned-compile"):
        step = _user_step(model, clean, device, tuned=impl != "naive", compiled=impl == "tuned-compile")
    else:
        step = _default_step(model, clean, device, compiled=impl == "compile", graph=impl == "graph")
    step()  # warm-up: oneDNN primitives, autotuning, compilation outside the timing
    step()

    def synced_step():
        step()
        _sync(device)

    benchmark.pedantic(synced_step, rounds=3 if not FULL else 10, iterations=1, warmup_rounds=0)
    op = "train step n2n l2 (paper U-Net)"
    params = sum(p.numel() for p in model.parameters())
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=clean.nbytes + 28 * params,
                                reference_seconds=_REFERENCE_SECONDS.get((op, size)))
    if seconds:
        benchmark.extra_info["images_per_s"] = shape[0] / seconds
        if device.type == "cuda":
            benchmark.extra_info["host_us_per_step"] = _host_seconds(step, device) * 1e6
        if impl == "reference":
            _REFERENCE_SECONDS[(op, size)] = seconds
