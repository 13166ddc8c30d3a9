"""Per-dtype tolerances, in one place (STYLE: never a bare atol in a test)."""
import torch

# float32 comparisons of fast paths against the reference: same math, different operation order.
RTOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
ATOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 1e-3}


def _mantissa(dtype):
    return {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10, torch.float64: 52}[dtype]


def assert_within_ulp(actual, expected, dtype, ulps=1):
    """|actual - expected| <= ulps units in the last place of `dtype` at the expected value (docs/design.md §2,
    §4: the interpreter truncates float32 -> bf16 stores, so low-precision outputs may differ by one ulp)."""
    spacing = torch.exp2(torch.floor(torch.log2(torch.clamp(expected.float().abs(), min=torch.finfo(dtype).tiny)))
                         - _mantissa(dtype))
    err = (actual.float() - expected.float()).abs()
    bad = err > ulps * spacing
    assert not bad.any(), (f"{int(bad.sum())} of {bad.numel()} elements differ by more than {ulps} ulp of {dtype}; "
                           f"worst {float(err.max()):.3g}")


def assert_close(actual, expected, dtype=None, scale=1.0):
    """torch.testing.assert_close with the tolerance of `dtype` (default: actual's), widened by `scale`."""
    dtype = dtype or actual.dtype
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=scale * RTOL[dtype],
                               atol=scale * ATOL[dtype])


def ulp(values, dtype):
    """One unit in the last place of `dtype` at each of `values` (float tensor)."""
    return torch.exp2(torch.floor(torch.log2(torch.clamp(values.double().abs(), min=torch.finfo(dtype).tiny)))
                      - _mantissa(dtype))


def assert_close_to_truth(actual, truth, dtype, reference=None, stores=1):
    """A fast path against a float64 truth (losses, docs/design.md §2): float32 within RTOL[float32] of the largest
    |truth|; bf16/fp16 within twice the error of `reference` (the pure-PyTorch twin at the same low precision) plus
    one ulp per low-precision store the value went through (`stores`: the interpreter truncates float32 ->
    bf16/fp16 stores, docs/design.md §4)."""
    actual, truth = actual.detach().double(), truth.detach().double()
    assert actual.shape == truth.shape, (actual.shape, truth.shape)
    top = float(truth.abs().max()) or 1.0
    if dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(actual / top, truth / top, rtol=RTOL[torch.float32], atol=RTOL[torch.float32])
        return
    allowed = 2 * float((reference.detach().double() - truth).abs().max()) + stores * ulp(truth, dtype)
    err = (actual - truth).abs()
    bad = ~(err <= allowed)  # NaN counts as bad
    assert not bad.any(), (f"{int(bad.sum())} of {bad.numel()} {dtype} elements beyond twice the reference's error "
                           f"plus one ulp; worst excess {float((err - allowed).max()):.3g}")

# Noise parity (docs/design.md §2): float32 outputs of fast paths vs the reference within NOISE_F32_REL * max(1, |y|)
# (transcendentals differ by an ulp); low-precision outputs within one ulp; Poisson counts may differ on at most
# this fraction of elements (a boundary case of an acceptance test or of the inversion search).
NOISE_F32_REL = 1e-6
POISSON_MISMATCH_FRACTION = 1e-4

# Training: a 2-rank DDP run (batch b per rank) against one process with batch 2b, float32 on the CPU. The gradient
# all-reduce sums in another order, and Adam's normalisation carries that rounding forward: 1e-5 relative over 20
# steps (docs/design.md §2).
DDP_LOSS_RTOL = 1e-5
