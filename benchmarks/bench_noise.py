"""Noisy pair per model and dtype: the fused fast path (Triton on CUDA, the C++ kernel on the CPU) vs the
reference vs eager `x + sigma * torch.randn_like(x)` (twice) vs torch.compile of that (docs/design.md §6).

GB/s is measured against the floor every implementation shares: read the clean batch once, write both copies once
(N (b_in + 2 b_out), plus the Bernoulli mask's N / C bytes). Ratios are against the reference of the same op.

    pytest benchmarks/bench_noise.py --benchmark-only                      small sizes
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_noise.py --benchmark-only
    (full: 16x3x512x512 on a GPU; 4x3x128x128 on the CPU, the CPU training batch)
Volumes: a (2, 1, 32, 64, 64) batch when full (the 3-D training batch of docs/volumes.md §5), (2, 1, 4, 16, 32)
small, drawn through the image view (n2n_fast/noise.py, volume_as_images), Gaussian and Poisson, reported as the
image rows.
"""
import pytest
import torch

import n2n_fast
from n2n_fast import _backend, _ext

from conftest import FULL, bench_device

SHAPE = ((16, 3, 512, 512) if bench_device().type == "cuda" else (4, 3, 128, 128)) if FULL else (2, 3, 32, 32)
SIZE = "x".join(map(str, SHAPE))
VOLUME_SHAPE = (2, 1, 32, 64, 64) if FULL else (2, 1, 4, 16, 32)  # the reference Poisson takes ~40 s at full
SIGMA = 25 / 255
NOISES = {"gaussian": n2n_fast.Gaussian((0.0, 50 / 255)), "gaussian_fixed": n2n_fast.Gaussian(SIGMA),
          "poisson": n2n_fast.Poisson((0.001, 50.0)), "poisson_gaussian": n2n_fast.PoissonGaussian(30.0, 0.02),
          "bernoulli": n2n_fast.Bernoulli(0.5), "impulse": n2n_fast.Impulse(0.3)}
DTYPES = {"fp32": (torch.float32, torch.float32), "u8-bf16": (torch.uint8, torch.bfloat16)}
_REFERENCE_SECONDS = {}  # (op, size) -> median of the reference, measured first in the same run


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _refusal(impl, device, noise_name, dtypes):
    """Why `impl` cannot run here, or None."""
    if impl == "triton":
        reason = _backend.OPS["noisy_pair"][0].refusal(device)
        return reason and f"Triton: {reason}"
    if impl == "cpp":
        if device.type != "cpu":
            return "the C++ kernel serves CPU tensors (Triton serves CUDA)"
        return None if _ext.has_op("noisy_pair") else f"extension not built: {_ext.reason()}"
    if impl in ("eager", "compile") and (noise_name != "gaussian_fixed" or dtypes != "fp32"):
        return "eager torch.randn_like noise is the Gaussian fp32 baseline only"
    return None


def _pair_fn(impl, noise, out_dtype):
    if impl == "eager" or impl == "compile":
        def eager(x):
            return x + SIGMA * torch.randn_like(x), x + SIGMA * torch.randn_like(x)
        return torch.compile(eager) if impl == "compile" else eager
    backend = {"cpp": "extension"}.get(impl, impl)
    return lambda x: n2n_fast.noisy_pair(x, noise, seed=1, step=7, out_dtype=out_dtype, backend=backend,
                                         check_finite=False)


@pytest.mark.parametrize("impl", ["reference", "triton", "cpp", "eager", "compile"])
@pytest.mark.parametrize("dtypes", list(DTYPES))
@pytest.mark.parametrize("noise_name", list(NOISES))
def test_noisy_pair(benchmark, record_throughput, device, noise_name, dtypes, impl):
    _bench_pair(benchmark, record_throughput, device, noise_name, dtypes, impl, SHAPE)


@pytest.mark.parametrize("impl", ["reference", "triton", "cpp", "eager"])
@pytest.mark.parametrize("dtypes", list(DTYPES))
@pytest.mark.parametrize("noise_name", ["gaussian_fixed", "poisson"])
def test_noisy_pair_volumes(benchmark, record_throughput, device, noise_name, dtypes, impl):
    _bench_pair(benchmark, record_throughput, device, noise_name, dtypes, impl, VOLUME_SHAPE)


def _bench_pair(benchmark, record_throughput, device, noise_name, dtypes, impl, shape):
    reason = _refusal(impl, device, noise_name, dtypes)
    if reason:
        pytest.skip(reason)
    in_dtype, out_dtype = DTYPES[dtypes]
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(shape, generator=gen)
    clean = (clean * 255).to(torch.uint8) if in_dtype == torch.uint8 else clean
    clean = clean.to(device)
    fn = _pair_fn(impl, NOISES[noise_name], out_dtype)

    def run():
        out = fn(clean)
        _sync(device)
        return out

    run()  # warm-up: Triton / inductor compile outside the timing
    benchmark(run)
    op = f"noisy_pair {noise_name} {dtypes}"
    size = "x".join(map(str, shape))
    numel = clean.numel()
    nbytes = numel * (clean.element_size() + 2 * torch.empty((), dtype=out_dtype).element_size())
    if noise_name == "bernoulli":
        nbytes += numel // shape[1]
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=nbytes,
                                reference_seconds=_REFERENCE_SECONDS.get((op, size)))
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[op, size] = seconds
