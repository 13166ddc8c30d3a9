"""The per-element noise helpers of n2n_fast/triton/noise_models.py: the one-copy helper the fused loss uses gives,
bit for bit, the copy the pair helper gives (every model, Poisson in all three regimes), under the interpreter."""
import pytest
import torch

from test_noise import BIG_INDEX, MODELS

triton = pytest.importorskip("triton")  # optional (the [triton] extra): without it there is nothing to test here
import triton.language as tl  # noqa: E402

from n2n_fast.triton.noise_models import noisy_copy_values, noisy_pair_values  # noqa: E402

SEED, STEP = 2**63 + 987, 5


@triton.jit
def _both_helpers(x_ptr, y0_ptr, y1_ptr, k1_ptr, y_ptr, k_ptr, n, pixels, seed, step, index, a_low, a_high, b_low,
                  b_high, MODEL: tl.constexpr, COPY: tl.constexpr, BLOCK: tl.constexpr):
    pos = tl.arange(0, BLOCK).to(tl.int64)
    inside = pos < n
    x = tl.load(x_ptr + pos, mask=inside, other=0.0)
    sample = tl.zeros([], tl.int64) + index
    y0, y1, k1 = noisy_pair_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high)
    y, k = noisy_copy_values(x, pos, sample, pixels, seed, step, MODEL, a_low, a_high, b_low, b_high, COPY)
    tl.store(y0_ptr + pos, y0, mask=inside)
    tl.store(y1_ptr + pos, y1, mask=inside)
    tl.store(k1_ptr + pos, k1.to(tl.int8), mask=inside)
    tl.store(y_ptr + pos, y, mask=inside)
    tl.store(k_ptr + pos, k.to(tl.int8), mask=inside)


def _run_helpers(x, noise, copy):
    """(y0, y1, keep1 of the pair helper; y, keep of the one-copy helper for `copy`) on a 1-D float32 block."""
    outs = [torch.full_like(x, float("nan")) for _ in range(2)] + [torch.full(x.shape, -1, dtype=torch.int8)]
    outs += [torch.full_like(x, float("nan")), torch.full(x.shape, -1, dtype=torch.int8)]
    _both_helpers[(1,)](x, *outs, x.numel(), 37, SEED, STEP, BIG_INDEX, *noise.parameter_ranges(), MODEL=noise.code,
               COPY=copy, BLOCK=triton.next_power_of_2(x.numel()))
    return outs


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("copy", [0, 1])
def test_one_copy_equals_that_copy_of_the_pair(name, copy, gen):
    x = torch.rand(3 * 37, generator=gen)  # 3 channels of 37 pixels: not a power of two, whole-pixel decisions
    y0, y1, keep1, y, keep = _run_helpers(x, MODELS[name], copy)
    want = (y0, y1)[copy]
    assert torch.equal(y.view(torch.int32), want.view(torch.int32)), f"{name} copy {copy}: values differ"
    if copy == 1:
        assert torch.equal(keep, keep1)
    assert not torch.equal(y0, y1) or name == "bernoulli"  # the two copies are independent draws
