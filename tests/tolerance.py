"""Per-dtype tolerances, in one place (STYLE: never a bare atol in a test)."""
import torch

# float32 comparisons of fast paths against the reference: same math, different operation order.
RTOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
ATOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 1e-3}


def _mantissa(dtype):
    return {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10, torch.float64: 52}[dtype]


def assert_within_ulp(actual, expected, dtype, ulps=1):
    """|actual - expected| <= ulps units in the last place of `dtype` at the expected value (SPEC §4, §5: the
    interpreter truncates float32 -> bf16 stores, so low-precision outputs may differ by one ulp)."""
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
