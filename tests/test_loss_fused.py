"""The fused N2N objective: n2n_loss == <kind>_loss(pred, noisy_pair(...)[1], ...) with the Bernoulli mask, on every
kind, noise model and dtype; opcheck; AOT compile of every (kind, model) specialisation; bad input."""
import pytest
import torch

import n2n_fast
from n2n_fast.noise import Bernoulli, Gaussian, Impulse, Poisson, PoissonGaussian
from n2n_fast.reference import loss as reference
from tolerance import assert_close_to_truth

KINDS = [("l2", {}), ("l1", {}), ("l0", {"gamma": 0.8, "eps": 1e-3}), ("hdr", {"eps": 0.05})]
MODELS = [Gaussian((0.0, 0.2)), Poisson((5.0, 60.0)), PoissonGaussian(30.0, (0.01, 0.05)), Bernoulli((0.2, 0.7)),
          Impulse(0.3)]
SHAPE = (2, 3, 7, 9)  # 189 elements per sample: samples straddle nothing, the tail of each block is masked
SEED, STEP, INDEX = 2**63 + 12345, 77, 2**40 + 3  # a seed above 2**63 and an index above 2**32 on purpose


def _outputs(pred, clean, noise, kind, params, reduction, backend, mask=None):
    pred = pred.detach().clone().requires_grad_()
    value = n2n_fast.n2n_loss(pred, clean, noise, seed=SEED, step=STEP, index=INDEX, kind=kind, backend=backend,
                              reduction=reduction, mask=mask, **params)
    weight = torch.linspace(-1.0, 2.0, value.numel(), device=value.device).reshape(value.shape)
    return value, torch.autograd.grad(value, pred, weight)[0]


def _by_definition(pred, clean, noise, kind, params, reduction, mask=None):
    """The specification, literally: the public noisy pair, then the public loss with the Bernoulli mask."""
    pair = n2n_fast.noisy_pair(clean, noise, seed=SEED, step=STEP, index=INDEX)
    if len(pair) == 3:
        mask = pair[2] if mask is None else mask & pair[2]
    loss = {"l2": n2n_fast.l2_loss, "l1": n2n_fast.l1_loss, "l0": n2n_fast.l0_loss, "hdr": n2n_fast.hdr_loss}[kind]
    pred = pred.detach().clone().requires_grad_()
    value = loss(pred, pair[1], mask=mask, reduction=reduction, **params)
    weight = torch.linspace(-1.0, 2.0, value.numel(), device=value.device).reshape(value.shape)
    return value, torch.autograd.grad(value, pred, weight)[0]


@pytest.mark.interpret
@pytest.mark.parametrize("noise", MODELS, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("kind,params", KINDS)
def test_fused_equals_noisy_pair_then_loss(noise, kind, params, gen, monkeypatch):
    from n2n_fast.triton import buffers

    monkeypatch.setattr(buffers, "POISON", True)
    clean = torch.rand(SHAPE, generator=gen)
    cases = [(torch.float32, "mean", None), (torch.bfloat16, "sum", None), (torch.float16, "none", None),
             (torch.float32, "mean", torch.rand((2, 1, 7, 9), generator=gen) > 0.3)]
    for dtype, reduction, mask in cases:
        pred = (clean + 0.1 * torch.randn(SHAPE, generator=gen)).clamp(0, 1).to(dtype)
        fused = _outputs(pred, clean, noise, kind, params, reduction, "triton", mask)
        low = _outputs(pred, clean, noise, kind, params, reduction, "reference", mask)
        truth = _outputs(pred.double(), clean, noise, kind, params, reduction, "reference", mask)
        for got, ref, true, stores in zip(fused, low, truth, (1, 2)):  # the gradient: stored twice (test_loss)
            assert_close_to_truth(got, true, got.dtype, ref, stores)
        for got, want, stores in zip(fused, _by_definition(pred, clean, noise, kind, params, reduction, mask),
                                     (1, 2)):
            assert_close_to_truth(got, want, got.dtype, want, stores)  # same noise arithmetic: ulp-level


@pytest.mark.interpret
def test_fused_uint8_clean_channels_last_and_3d(gen):
    clean = (torch.rand(SHAPE, generator=gen) * 255).to(torch.uint8)
    pred = torch.rand(SHAPE, generator=gen).contiguous(memory_format=torch.channels_last)
    for noise in (Gaussian(0.1), Bernoulli(0.5)):
        got = _outputs(pred, clean, noise, "l2", {}, "mean", "triton")
        want = _outputs(pred.double(), clean, noise, "l2", {}, "mean", "reference")
        assert got[1].is_contiguous(memory_format=torch.channels_last)  # read and written in place, no copy
        for a, b in zip(got, want):
            assert_close_to_truth(a, b, a.dtype)
        got3 = _outputs(pred[0], clean[0], noise, "l1", {}, "none", "triton")  # (C, H, W): a batch of one
        want3 = _by_definition(pred[0], clean[0], noise, "l1", {}, "none")
        for a, b in zip(got3, want3):
            assert_close_to_truth(a, b, a.dtype)


@pytest.mark.interpret
def test_fused_op_passes_opcheck(gen):
    from n2n_fast.triton.loss_fused import _n2n_loss_op

    clean = torch.rand((2, 2, 5, 3), generator=gen)
    pred = torch.rand((2, 2, 5, 3), generator=gen)
    mask = torch.rand((2, 1, 5, 3), generator=gen) > 0.5
    noise = Bernoulli(0.4)
    common = (noise.code, list(noise.parameter_ranges()), -5, 3, 9)
    torch.library.opcheck(_n2n_loss_op, (pred.requires_grad_(), clean, None) + common + ("l1", "mean", 0.0, 0.0, True))
    torch.library.opcheck(_n2n_loss_op, (pred.detach().bfloat16(), clean, mask) + common
                          + ("l0", "none", 0.5, 1e-3, False))
    nhwc = pred.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(_n2n_loss_op, (nhwc, clean, None) + common + ("hdr", "sum", 0.0, 0.01, True))


def test_fused_kernels_compile_clean():
    """Every (kind, noise model) specialisation for sm_80 and sm_90: no spills, 128-bit loads of pred and clean."""
    pytest.importorskip("triton")
    from aot import ARCHES, compile_for

    from n2n_fast.triton.loss import FINISH_BLOCK
    from n2n_fast.triton.loss_fused import MAX_REGISTERS, NUM_WARPS, _n2n_loss_kernel, block_size

    from aot import pointer_type

    from n2n_fast._backend import OPS

    scalars = {"out_ptr": "*fp32", "scale_ptr": "*fp32", "ticket_ptr": "*i32", "cols": "i64",
               "pixels": "i64", "channels": "i64", "in_scale": "fp32", "seed": "u64", "step": "i64",
               "step_ptr": "*i64", "index": "i64", "a_low": "fp32", "a_high": "fp32", "b_low": "fp32", "b_high": "fp32",
               "gamma": "fp32", "gamma_ptr": "*fp32", "eps": "fp32", "need_grad": "i1", "gamma_in_memory": "i1",
               "has_mask": "i1", "reduce": "i1", "mean": "i1", "masked": "i1", "pred_nhwc": "i1"}
    # every (kind, model) with float32 tensors; every (pred, clean) pair of the dispatch's table for l2 + Gaussian
    accepts = dict(next(impl for impl in OPS["n2n_loss"] if impl.backend == "triton").accepts.dtypes)
    cases = [(kind, noise.code, torch.float32, torch.float32) for kind in range(4) for noise in MODELS]
    cases += [(0, MODELS[0].code, p, c) for p in accepts["pred"] for c in accepts["clean"]
              if (p, c) != (torch.float32, torch.float32)]
    for arch in ARCHES:
        for kind, model, pred_dtype, clean_dtype in cases:
            pointers = {"pred_ptr": pointer_type(pred_dtype), "clean_ptr": pointer_type(clean_dtype),
                        "mask_ptr": "*u8", "grad_ptr": pointer_type(pred_dtype), "values_ptr": "*fp32",
                        "partial_ptr": "*fp32", "count_ptr": "*i32"}
            report = compile_for(_n2n_loss_kernel, pointers | scalars,
                                 {"KIND": kind, "MODEL": model, "BLOCK": block_size(model),
                                  "STEP_IN_MEMORY": kind == 0, "FINISH_BLOCK": FINISH_BLOCK},
                                 aligned=("pred_ptr", "clean_ptr", "mask_ptr", "grad_ptr", "values_ptr", "cols",
                                          "pixels"), arch=arch, num_warps=NUM_WARPS, maxnreg=MAX_REGISTERS)
            # 128-bit loads of pred and clean need 16 bytes per thread-chunk of each: 1-byte clean gets 64-bit
            wide = min(pred_dtype.itemsize, clean_dtype.itemsize) >= 2
            report.assert_clean(min_vector_loads=2 if wide else 1, min_vector_stores=1)
            report.assert_finishes_when_last()


def test_fused_bad_input(gen):
    clean = torch.rand(SHAPE, generator=gen)
    pred = torch.rand(SHAPE, generator=gen)
    noise = Gaussian(0.1)
    call = lambda **kw: n2n_fast.n2n_loss(**{"pred": pred, "clean": clean, "noise": noise, "seed": 1, "step": 0,  # noqa
                                             **kw})
    cases = [
        (dict(kind="l3"), ValueError, "kind: unknown"),
        (dict(kind="l2", gamma=1.0), TypeError, "loss_kwargs"),
        (dict(kind="l0"), TypeError, "gamma"),
        (dict(kind="l0", gamma=-1.0), ValueError, "gamma: must be >= 0"),
        (dict(kind="hdr", eps=0.0), ValueError, "eps: must be > 0"),
        (dict(reduction="mean_sum"), ValueError, "reduction: unknown"),
        (dict(clean=clean[:, :2]), ValueError, "clean: shape"),
        (dict(pred=pred.long()), TypeError, "pred: expected a floating"),
        (dict(clean=clean.long()), TypeError, "clean: dtype"),
        (dict(noise="gaussian"), TypeError, "noise: expected one of"),
        (dict(step=-1), ValueError, "step"),
        (dict(mask=torch.ones(SHAPE)), TypeError, "mask: expected dtype"),
        (dict(pred=pred[:0], clean=clean[:0]), ValueError, "empty"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            call(**kwargs)


def test_reference_fused_definition_on_plain_cpu(gen):
    """The reference n2n_loss is the definition: reference noisy pair (its mask for Bernoulli) then the loss."""
    from n2n_fast.reference.noise import noisy_pair

    clean = torch.rand(SHAPE, generator=gen)
    pred = torch.rand(SHAPE, generator=gen)
    noise = Bernoulli(0.5)
    _, target, keep = noisy_pair(clean, noise, seed=SEED, step=STEP, index=INDEX)
    want = reference.loss(pred, target, keep, kind="l1", reduction="mean")
    got = n2n_fast.n2n_loss(pred, clean, noise, seed=SEED, step=STEP, index=INDEX, kind="l1", backend="reference")
    assert torch.equal(got, want) and keep.sum() < keep.numel()


@pytest.mark.gpu
@pytest.mark.parametrize("noise", MODELS, ids=lambda m: type(m).__name__)
def test_gpu_fused_matches_truth(noise, gen):
    """Reductions against the float64 truth (reference noise); per-element values and gradients against the
    definition with the Triton noisy pair: the same noise arithmetic, so Poisson counts agree even in the rare
    boundary cases where GPU and reference transcendentals round a count differently (docs/design.md §2)."""
    clean = torch.rand((4, 3, 129, 131), generator=gen).cuda()
    for kind, params in KINDS:
        for dtype in (torch.float32, torch.bfloat16):
            pred = (clean + 0.1 * torch.randn(clean.shape, generator=gen).cuda()).clamp(0, 1).to(dtype)
            fused = _outputs(pred, clean, noise, kind, params, "mean", "triton")
            truth = _outputs(pred.double(), clean, noise, kind, params, "mean", "reference")
            assert_close_to_truth(fused[0], truth[0], torch.float32)
            fused = _outputs(pred, clean, noise, kind, params, "none", "triton")
            want = _by_definition(pred, clean, noise, kind, params, "none")
            for got, ref, stores in zip(fused, want, (1, 2)):
                assert_close_to_truth(got, ref, got.dtype, ref, stores)


@pytest.mark.interpret
def test_fused_compiles_fullgraph(gen):
    """n2n_loss inside torch.compile(fullgraph=True): no graph break (aot_eager, as in test_loss), same result."""
    torch._dynamo.reset()
    clean = torch.rand(SHAPE, generator=gen)
    pred = torch.rand(SHAPE, generator=gen).requires_grad_()
    noise = Bernoulli(0.5)

    def fn(p, c):
        return n2n_fast.n2n_loss(p, c, noise, seed=SEED, step=STEP, index=INDEX, kind="l1", backend="triton")

    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(pred, clean)
    got.backward()
    grad, pred.grad = pred.grad, None
    want = fn(pred, clean)
    want.backward()
    assert torch.equal(got, want) and torch.equal(grad, pred.grad)



@pytest.mark.interpret
def test_fused_device_step_equals_int_step(gen):
    clean = torch.rand(SHAPE, generator=gen)
    pred = torch.rand(SHAPE, generator=gen)
    noise = Gaussian((0.0, 0.2))
    values = []
    for step in (0, 1, 2):
        by_int = n2n_fast.n2n_loss(pred, clean, noise, seed=3, step=step, reduction="none", backend="triton")
        by_tensor = n2n_fast.n2n_loss(pred, clean, noise, seed=3, step=torch.tensor(step), reduction="none",
                                      backend="triton")
        assert torch.equal(by_int, by_tensor), step
        values.append(by_tensor)
    assert not torch.equal(values[0], values[1]) and not torch.equal(values[1], values[2])
