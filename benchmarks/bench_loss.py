"""Losses, forward + backward: Triton vs the reference vs eager F.mse_loss / F.l1_loss vs torch.compile of those;
and the fused N2N objective vs noisy_pair + loss (docs/design.md §6).

GB/s is measured against the bytes the operation must move, the same floor for every implementation so the
numbers compare directly: a loss step must read pred and target and write pred's gradient (b_pred + b_target +
b_pred per element); the N2N objective must read clean and pred and write the gradient (b_clean + 2 b_pred). The
Triton loss itself moves 8 bytes more per fp32 element (it writes the gradient in the forward and the backward
reads it back; extra_info["design_bytes"]).

    pytest benchmarks/bench_loss.py --benchmark-only                  small sizes
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_loss.py --benchmark-only
Volumes: a (2, 1, 32, 64, 64) batch when full (the 3-D training batch of docs/volumes.md §5), (2, 1, 4, 16, 32)
small: the losses on 5-D tensors and the fused objective through the image view (n2n_fast/noise.py,
volume_as_images), reported as the image rows.
"""
import pytest
import torch
import torch.nn.functional as F

import n2n_fast
from n2n_fast import _backend

from conftest import FULL

SHAPE = (16, 3, 512, 512) if FULL else (2, 3, 64, 64)
SIZE = "x".join(map(str, SHAPE))
VOLUME_SHAPE = (2, 1, 32, 64, 64) if FULL else (2, 1, 4, 16, 32)  # the reference Poisson takes ~40 s at full
LOSSES = {"l2": (n2n_fast.l2_loss, {}), "l1": (n2n_fast.l1_loss, {}), "l0": (n2n_fast.l0_loss, {"gamma": 1.0}),
          "hdr": (n2n_fast.hdr_loss, {})}
EAGER = {"l2": F.mse_loss, "l1": F.l1_loss}
_REFERENCE_SECONDS = {}  # (op, size) -> median of the reference, measured first in the same run


def _triton_serves(device):
    if _backend.triton_reason() is not None:
        return False
    return device.type == "cuda" or _backend.triton_interpreting()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _step(fn, pred, target, device):
    """One forward + backward, finished (the benchmark times the whole of it)."""
    def run():
        pred.grad = None
        fn(pred, target).backward()
        _sync(device)
    return run


def _loss_fn(kind, impl):
    if impl in ("eager", "compile"):
        fn = EAGER[kind]
        return torch.compile(fn) if impl == "compile" else fn
    loss, params = LOSSES[kind]
    return lambda p, t: loss(p, t, backend=impl, **params)


CASES = [(kind, impl) for kind in LOSSES for impl in ("reference", "triton", "eager", "compile")
         if impl not in ("eager", "compile") or kind in EAGER]


DTYPES = {"fp32": (torch.float32, torch.float32), "bf16-fp32": (torch.bfloat16, torch.float32)}


@pytest.mark.parametrize("dtypes", list(DTYPES))
@pytest.mark.parametrize("kind,impl", CASES)
def test_loss_forward_backward(benchmark, record_throughput, device, kind, impl, dtypes):
    _bench_loss(benchmark, record_throughput, device, kind, impl, DTYPES[dtypes], SHAPE)


@pytest.mark.parametrize("dtypes", list(DTYPES))
@pytest.mark.parametrize("kind,impl", [case for case in CASES if case[0] in ("l2", "l1") and case[1] != "compile"])
def test_loss_forward_backward_volumes(benchmark, record_throughput, device, kind, impl, dtypes):
    _bench_loss(benchmark, record_throughput, device, kind, impl, DTYPES[dtypes], VOLUME_SHAPE)


def _bench_loss(benchmark, record_throughput, device, kind, impl, dtypes, shape):
    if impl == "triton" and not _triton_serves(device):
        pytest.skip(f"Triton does not serve {device.type} tensors here")
    if impl in ("eager", "compile") and dtypes[0] != dtypes[1]:
        pytest.skip("F.mse_loss / F.l1_loss need one dtype (they would upcast pred: another op)")
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(shape, generator=gen).to(device, dtypes[0]).requires_grad_()
    target = torch.rand(shape, generator=gen).to(device, dtypes[1])
    step = _step(_loss_fn(kind, impl), pred, target, device)
    step()  # warm-up: Triton / inductor compile outside the timing
    benchmark(step)
    op = f"loss {kind} {'-'.join(str(d).split('.')[-1] for d in dtypes)} fwd+bwd"
    size = "x".join(map(str, shape))
    nbytes = pred.numel() * (2 * pred.element_size() + target.element_size())
    benchmark.extra_info["design_bytes"] = pred.numel() * (4 * pred.element_size() + target.element_size())
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=nbytes,
                                reference_seconds=_REFERENCE_SECONDS.get((op, size)))
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[op, size] = seconds


NOISES = {"gaussian": n2n_fast.Gaussian((0.0, 50 / 255)), "poisson": n2n_fast.Poisson((5.0, 50.0)),
          "bernoulli": n2n_fast.Bernoulli(0.5)}


@pytest.mark.parametrize("impl", ["reference", "unfused", "fused"])
@pytest.mark.parametrize("noise_name", list(NOISES))
def test_n2n_objective(benchmark, record_throughput, device, noise_name, impl):
    """fused: n2n_loss regenerates the target inside the loss kernel. unfused: the fastest noisy_pair, then the
    fastest l2_loss on its target (what a user composes). reference: both on the reference."""
    _bench_objective(benchmark, record_throughput, device, noise_name, impl, SHAPE)


@pytest.mark.parametrize("impl", ["reference", "unfused", "fused"])
@pytest.mark.parametrize("noise_name", ["gaussian", "poisson"])
def test_n2n_objective_volumes(benchmark, record_throughput, device, noise_name, impl):
    """test_n2n_objective on the 5-D batch (the 3-D training step's objective)."""
    _bench_objective(benchmark, record_throughput, device, noise_name, impl, VOLUME_SHAPE)


def _bench_objective(benchmark, record_throughput, device, noise_name, impl, shape):
    if impl != "reference" and not _triton_serves(device):
        pytest.skip(f"Triton does not serve {device.type} tensors here")
    noise = NOISES[noise_name]
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(shape, generator=gen).to(device)
    pred = torch.rand(shape, generator=gen).to(device).requires_grad_()
    backend = "reference" if impl == "reference" else None

    def objective(p, c):
        if impl == "fused":
            return n2n_fast.n2n_loss(p, c, noise, seed=1, step=3, backend="triton")
        pair = n2n_fast.noisy_pair(c, noise, seed=1, step=3, backend=backend, check_finite=False)
        return n2n_fast.l2_loss(p, pair[1], mask=pair[2] if len(pair) == 3 else None, backend=backend)

    step = _step(objective, pred, clean, device)
    step()
    benchmark(step)
    op = f"n2n objective l2 {noise_name} fp32 fwd+bwd"
    size = "x".join(map(str, shape))
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=pred.numel() * 12,
                                reference_seconds=_REFERENCE_SECONDS.get((op, size)))
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[op, size] = seconds
