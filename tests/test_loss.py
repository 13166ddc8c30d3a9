"""Losses: the reference against hand-checked values and gradcheck; Triton (interpreter) against a float64 truth
over odd sizes, layouts, masks, reductions and mixed dtypes; opcheck, torch.compile, autocast; AOT; bad input."""
import pytest
import torch

import n2n_fast
from n2n_fast.reference import loss as reference
from tolerance import assert_close, assert_close_to_truth

KINDS = [("l2", {}), ("l1", {}), ("l0", {"gamma": 0.6, "eps": 1e-3}), ("hdr", {"eps": 0.01})]
PUBLIC = {"l2": n2n_fast.l2_loss, "l1": n2n_fast.l1_loss, "l0": n2n_fast.l0_loss, "hdr": n2n_fast.hdr_loss}
REDUCTIONS = ("mean", "sum", "none")
# (pred dtype, target dtype): same precision, and what autocast produces (low-precision pred, float32 target)
DTYPES = [(torch.float32, torch.float32), (torch.bfloat16, torch.float32), (torch.float16, torch.float16),
          (torch.float32, torch.bfloat16)]
# "aot_eager" traces with fake tensors and AOTAutograd like inductor but skips its C++ codegen (minutes on 2
# shared cores); the graph capture (fullgraph: no breaks) and the custom op's fake/autograd are what is under test
COMPILE_BACKEND = "aot_eager"
SHAPE = (2, 3, 17, 19)  # 1938 elements: not a multiple of the block, rows of 323 (not a multiple of 16)


def _inputs(gen, shape=SHAPE, dtypes=(torch.float32, torch.float32)):
    pred = torch.rand(shape, generator=gen).to(dtypes[0])
    target = (torch.rand(shape, generator=gen) * 1.2 - 0.1).to(dtypes[1])
    return pred, target


def _value_and_grads(pred, target, mask, kind, params, reduction, backend):
    """Loss value, gradient of pred and of target for a fixed random grad_output (also for "none")."""
    pred = pred.detach().clone().requires_grad_()
    target = target.detach().clone().requires_grad_()
    value = PUBLIC[kind](pred, target, mask=mask, reduction=reduction, backend=backend, **params)
    weight = torch.linspace(-1.0, 2.0, value.numel()).reshape(value.shape).to(value.dtype)
    grad_pred, grad_target = torch.autograd.grad(value, (pred, target), weight)
    return value, grad_pred, grad_target


def _check_against_truth(pred, target, mask, kind, params, reduction):
    """Triton vs the float64 truth; bf16/fp16 gradients bounded by the low-precision reference's own error."""
    fast = _value_and_grads(pred, target, mask, kind, params, reduction, "triton")
    low = _value_and_grads(pred, target, mask, kind, params, reduction, "reference")
    truth = _value_and_grads(pred.double(), target.double(), mask, kind, params, reduction, "reference")
    assert fast[0].dtype == torch.float32 and fast[1].dtype == pred.dtype and fast[2].dtype == target.dtype
    for got, ref, true in zip(fast[:2], low, truth):
        assert_close_to_truth(got, true, got.dtype, ref)
    # the target's gradient is minus the saved pred gradient: it carries pred's precision when that is lower
    if torch.finfo(pred.dtype).eps > torch.finfo(target.dtype).eps:
        assert_close_to_truth(fast[2], truth[2], pred.dtype, -low[1])
    else:
        assert_close_to_truth(fast[2], truth[2], target.dtype, low[2])


# ---------------------------------------------------------------- reference (plain process)

def test_reference_hand_checked_values():
    pred = torch.tensor([[0.5, 1.0], [0.0, 0.25]])
    target = torch.tensor([[0.0, 1.5], [0.0, 0.75]])
    mask = torch.tensor([[True, True], [False, True]])
    assert float(n2n_fast.l2_loss(pred, target, backend="reference")) == pytest.approx(0.75 / 4)
    assert float(n2n_fast.l1_loss(pred, target, mask=mask, backend="reference")) == pytest.approx(1.5 / 3)
    assert float(n2n_fast.l1_loss(pred, target, mask=mask, reduction="sum", backend="reference")) == 1.5
    l0 = n2n_fast.l0_loss(pred, target, gamma=0.5, eps=1e-8, reduction="none", backend="reference")
    torch.testing.assert_close(l0, (torch.tensor([[0.5, 0.5], [0.0, 0.5]]) + 1e-8) ** 0.5)
    hdr = n2n_fast.hdr_loss(pred, target, eps=0.5, reduction="none", backend="reference")
    torch.testing.assert_close(hdr, torch.tensor([[0.25, 0.25], [0.0, 0.25]]) / (pred + 0.5) ** 2)
    nothing = torch.zeros_like(mask)
    assert float(n2n_fast.l2_loss(pred, target, mask=nothing, backend="reference")) == 0.0  # not NaN


@pytest.mark.parametrize("kind,params", KINDS)
def test_reference_gradcheck_float64(kind, params, gen):
    pred, target = (t.double() for t in _inputs(gen, (2, 2, 3, 5)))
    mask = torch.rand((2, 1, 3, 5), generator=gen) > 0.3
    for reduction in REDUCTIONS:
        def fn(p, t):
            return reference.loss(p, t, mask, kind=kind, reduction=reduction, **params)

        # hdr's denominator is detached, so only the target's gradient is the full derivative numerically; the
        # pred's is checked by hand below
        inputs = (pred.clone().requires_grad_(kind != "hdr"), target.clone().requires_grad_())
        assert torch.autograd.gradcheck(fn, inputs)


def test_reference_hdr_gradient_ignores_denominator():
    pred = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    n2n_fast.hdr_loss(pred, torch.tensor([0.0], dtype=torch.float64), eps=0.5, backend="reference").backward()
    assert float(pred.grad) == pytest.approx(2 * 0.5 / 1.0**2)


# ---------------------------------------------------------------- Triton under the interpreter

@pytest.mark.interpret
@pytest.mark.parametrize("kind,params", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triton_matches_truth_dtypes_and_masks(kind, params, reduction, gen, monkeypatch):
    from n2n_fast.triton import loss as fast

    monkeypatch.setattr(fast, "POISON", True)
    for dtypes in DTYPES:
        pred, target = _inputs(gen, dtypes=dtypes)
        pixels = torch.rand((SHAPE[0], 1) + SHAPE[2:], generator=gen) > 0.4
        elements = torch.rand(SHAPE, generator=gen) > 0.5
        for mask in (None, pixels, elements):
            _check_against_truth(pred, target, mask, kind, params, reduction)


@pytest.mark.interpret
@pytest.mark.parametrize("kind,params", KINDS)
def test_triton_layouts(kind, params, gen, monkeypatch):
    """Dense permuted and channels_last inputs are read in place, strided views are copied; masks follow."""
    from n2n_fast.triton import loss as fast

    monkeypatch.setattr(fast, "POISON", True)
    pred, target = _inputs(gen, (3, 5, 9, 7))
    pixels = torch.rand((3, 1, 9, 7), generator=gen) > 0.5
    cases = [
        (pred.transpose(2, 3), target.transpose(2, 3), pixels.transpose(2, 3)),  # dense permuted, strided mask
        (pred.contiguous(memory_format=torch.channels_last), target, pixels),  # channels_last pred, NCHW target
        (pred[:, ::2, 1:], target[:, ::2, 1:], pixels[:, :, 1:]),  # non-dense views
        (pred[1:2, 1:2], target[1:2, 1:2], None),  # one channel, offset storage
        (pred, target, pixels[:1]),  # one (1, 1, H, W) mask for every sample: expanded
        (pred[0], target[0], pixels[0]),  # (C, H, W) with a (1, H, W) mask
    ]
    for p, t, mask in cases:
        for reduction in ("mean", "none"):
            _check_against_truth(p, t, mask, kind, params, reduction)


@pytest.mark.interpret
def test_triton_edge_sizes_and_empty_mask(gen):
    for shape in [(1,), (5,), (4096,), (4097,), (2, 1, 1, 1), (1, 2, 33, 129)]:
        pred, target = _inputs(gen, shape)
        _check_against_truth(pred, target, None, "l2", {}, "mean")
    pred, target = _inputs(gen)
    pred.requires_grad_()
    loss = n2n_fast.l1_loss(pred, target, mask=torch.zeros((2, 1, 17, 19), dtype=torch.bool), backend="triton")
    loss.backward()
    assert float(loss) == 0.0 and not pred.grad.any()


@pytest.mark.interpret
def test_triton_skips_gradient_when_not_needed(gen, monkeypatch):
    from n2n_fast.triton import loss as fast

    pred, target = _inputs(gen)
    seen = []
    original = fast.launch
    monkeypatch.setattr(fast, "launch", lambda *a: seen.append(a[-1]) or original(*a))
    with torch.no_grad():
        n2n_fast.l2_loss(pred.requires_grad_(), target, backend="triton")
    n2n_fast.l2_loss(pred, target, backend="triton")
    assert seen == [False, True]


@pytest.mark.interpret
def test_triton_float64_goes_to_reference(gen):
    pred, target = (t.double() for t in _inputs(gen))
    got = n2n_fast.l0_loss(pred, target, gamma=1.5, backend="triton")
    assert got.dtype == torch.float64
    assert torch.equal(got, reference.loss(pred, target, kind="l0", gamma=1.5, eps=1e-8))


@pytest.mark.interpret
@pytest.mark.parametrize("kind,params", KINDS)
def test_triton_op_passes_opcheck(kind, params, gen):
    from n2n_fast.triton.loss import _loss_op

    pred, target = _inputs(gen, (2, 3, 5, 7), (torch.bfloat16, torch.float32))
    mask = torch.rand((2, 1, 5, 7), generator=gen) > 0.5
    gamma, eps = params.get("gamma", 0.0), params.get("eps", 0.0)
    for args in [(pred.requires_grad_(), target, mask, kind, "mean", gamma, eps, True),
                 (pred.float(), target.requires_grad_(), None, kind, "none", gamma, eps, True),
                 (pred.detach(), target.detach(), mask, kind, "sum", gamma, eps, False)]:
        torch.library.opcheck(_loss_op, args)


@pytest.mark.interpret
def test_triton_compiles_fullgraph_with_autocast(gen):
    """A training step (conv, then every loss, backward) inside torch.compile(fullgraph=True) and CPU autocast:
    bf16 pred, float32 target; its gradient equals the eager reference step's."""
    torch._dynamo.reset()
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    clean = torch.rand((2, 3, 9, 11), generator=gen)
    target = torch.rand((2, 3, 9, 11), generator=gen)
    mask = torch.rand((2, 1, 9, 11), generator=gen) > 0.5

    def forward(x, y, backend):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = conv(x)
            return (n2n_fast.l2_loss(pred, y, backend=backend) + n2n_fast.l1_loss(pred, y, mask=mask, backend=backend)
                    + n2n_fast.l0_loss(pred, y, gamma=1.0, backend=backend)
                    + n2n_fast.hdr_loss(pred, y, reduction="none", backend=backend).mean()), pred.dtype

    def step(fn, backend):
        conv.zero_grad()
        total, dtype = fn(clean, target, backend)
        total.backward()  # the compiled graph's backward (AOTAutograd), through the ops' register_autograd
        assert dtype == torch.bfloat16 and total.dtype == torch.float32
        return total.detach(), conv.weight.grad.clone()

    got = step(torch.compile(forward, fullgraph=True, backend=COMPILE_BACKEND), "triton")
    want = step(forward, "reference")
    for a, b in zip(got, want):
        assert_close(a, b, dtype=torch.bfloat16)  # the same bf16 pred both ways; bf16 conv weight gradients
