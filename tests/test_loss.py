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
    weight = torch.linspace(-1.0, 2.0, value.numel(), device=value.device).reshape(value.shape).to(value.dtype)
    grad_pred, grad_target = torch.autograd.grad(value, (pred, target), weight)
    return value, grad_pred, grad_target


def _check_against_truth(pred, target, mask, kind, params, reduction):
    """Triton vs the float64 truth; bf16/fp16 gradients bounded by the low-precision reference's own error."""
    fast = _value_and_grads(pred, target, mask, kind, params, reduction, "triton")
    low = _value_and_grads(pred, target, mask, kind, params, reduction, "reference")
    truth = _value_and_grads(pred.double(), target.double(), mask, kind, params, reduction, "reference")
    assert fast[0].dtype == torch.float32 and fast[1].dtype == pred.dtype and fast[2].dtype == target.dtype
    assert_close_to_truth(fast[0], truth[0], fast[0].dtype, low[0])
    # gradients pass two low-precision stores (the forward saves it in pred's dtype, the backward scales it)
    assert_close_to_truth(fast[1], truth[1], fast[1].dtype, low[1], stores=2)
    # the target's gradient is minus the saved pred gradient: it carries pred's precision when that is lower
    if torch.finfo(pred.dtype).eps > torch.finfo(target.dtype).eps:
        assert_close_to_truth(fast[2], truth[2], pred.dtype, -low[1], stores=2)
    else:
        assert_close_to_truth(fast[2], truth[2], target.dtype, low[2], stores=2)


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
    from n2n_fast.triton import buffers, loss as fast

    monkeypatch.setattr(buffers, "POISON", True)
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
    from n2n_fast.triton import buffers, loss as fast

    monkeypatch.setattr(buffers, "POISON", True)
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
    """float64 keeps its precision: the dispatch gives it to the reference, and forcing Triton (which accumulates in
    float32) is refused with the reason."""
    pred, target = (t.double() for t in _inputs(gen))
    got = n2n_fast.l0_loss(pred, target, gamma=1.5)
    assert got.dtype == torch.float64
    assert torch.equal(got, reference.loss(pred, target, kind="l0", gamma=1.5, eps=1e-8))
    with pytest.raises(RuntimeError, match="triton: pred: dtype float64 is not accepted"):
        n2n_fast.l0_loss(pred, target, gamma=1.5, backend="triton")


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
def test_triton_backward_op_passes_opcheck_and_keeps_fp16_subnormals(gen):
    from n2n_fast.triton.loss_backward import scale_grad

    grad = torch.randn((3, 5, 7), generator=gen).half()
    scale = torch.tensor(1.3e-6)  # 1/N for N = 770k: subnormal in fp16, so it must not be cast to fp16 first
    torch.library.opcheck(scale_grad, (grad, torch.tensor(-2.0), scale))
    torch.library.opcheck(scale_grad, (grad, torch.randn((3, 5, 7), generator=gen), scale))
    got = scale_grad(grad, torch.tensor(-2.0), scale)
    assert_close_to_truth(got, grad.double() * -2.0 * 1.3e-6, torch.float16, (grad.double() * -2.6e-6).half())
    wide = torch.randn((3, 1, 7), generator=gen).expand(3, 5, 7)  # stride-0 grad_output, as autograd hands it
    assert_close_to_truth(scale_grad(grad, wide, scale), grad.double() * wide, torch.float16,
                          (grad.float() * wide).half())


@pytest.mark.interpret
def test_triton_compiles_fullgraph_with_autocast(gen):
    """A training step (conv, then every loss, backward) inside torch.compile(fullgraph=True) and CPU autocast:
    bf16 pred, float32 target; its gradient equals the eager reference step's."""
    torch._dynamo.reset()
    with torch.random.fork_rng(devices=[]):  # the conv's init from a fixed seed, not from what ran before
        torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
        conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    clean = torch.rand((2, 3, 9, 11), generator=gen)
    target = torch.rand((2, 3, 9, 11), generator=gen)
    mask = torch.rand((2, 1, 9, 11), generator=gen) > 0.5

    def forward(x, y, backend):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = conv(x)
            return (n2n_fast.l2_loss(pred, y, backend=backend) + n2n_fast.l1_loss(pred, y, mask=mask, backend=backend)
                    + n2n_fast.l0_loss(pred, y, gamma=1.0, backend=backend)
                    # an untrained conv's pred dips below -eps: no range check, the same arithmetic both ways
                    + n2n_fast.hdr_loss(pred, y, reduction="none", backend=backend, check_range=False).mean()), \
                pred.dtype

    def step(fn, backend):
        conv.zero_grad()
        total, dtype = fn(clean, target, backend)
        total.backward()  # the compiled graph's backward (AOTAutograd), through the ops' register_autograd
        assert dtype == torch.bfloat16 and total.dtype == torch.float32
        return total.detach(), conv.weight.grad.clone()

    got = step(torch.compile(forward, fullgraph=True, backend=COMPILE_BACKEND), "triton")
    eager = step(forward, "triton")  # eager Triton path (autograd.Function, not the custom op) under autocast
    want = step(forward, "reference")
    for a, b, c in zip(got, eager, want):
        assert_close(a, c, dtype=torch.bfloat16)  # the same bf16 pred both ways; bf16 conv weight gradients
        assert_close(b, c, dtype=torch.bfloat16)


# ---------------------------------------------------------------- ahead-of-time compile (plain process)

def test_triton_kernels_compile_clean():
    """Every shipped specialisation (kind x mask mode x reduce) for sm_80 and sm_90: no spills, 128-bit access."""
    pytest.importorskip("triton")
    from aot import ARCHES, compile_for

    from n2n_fast.triton.loss import BLOCK, FINISH_BLOCK, NUM_WARPS, _loss_kernel
    from n2n_fast.triton.loss_backward import BLOCK as BACKWARD_BLOCK
    from n2n_fast.triton.loss_backward import NUM_WARPS as BACKWARD_WARPS
    from n2n_fast.triton.loss_backward import _scale_grad_kernel

    from aot import pointer_type

    from n2n_fast._backend import OPS

    pointers = ("pred_ptr", "target_ptr", "mask_ptr", "grad_ptr", "values_ptr", "partial_ptr", "count_ptr")
    scalars = {"out_ptr": "*fp32", "scale_ptr": "*fp32", "ticket_ptr": "*i32", "cols": "i64",
               "channels": "i64", "gamma": "fp32", "gamma_ptr": "*fp32", "eps": "fp32", "need_grad": "i1",
               "gamma_in_memory": "i1", "mean": "i1"}
    combos = [(kind, mode, reduce_) for kind in range(4) for mode in range(3) for reduce_ in (True, False)]
    # fp32 pair for every constexpr combination; every (pred, target) pair of the dispatch's table for one
    accepts = dict(next(impl for impl in OPS["loss"] if impl.backend == "triton").accepts.dtypes)
    dtypes = [(("fp32", "fp32"), combos)] + [
        ((pointer_type(p)[1:], pointer_type(t)[1:]), [(0, 2, True)]) for p in accepts["pred"]
        for t in accepts["target"] if (p, t) != (torch.float32, torch.float32)]
    for arch in ARCHES:
        for (pred_t, target_t), shipped in dtypes:
            types = dict(zip(pointers, (pred_t, target_t, "u8", pred_t, "fp32", "fp32", "i32")))
            signature = {name: "*" + t for name, t in types.items()} | scalars
            for kind, mode, reduce_ in shipped:
                report = compile_for(_loss_kernel, signature,
                                     {"KIND": kind, "MASK_MODE": mode, "REDUCE": reduce_, "BLOCK": BLOCK,
                                      "FINISH_BLOCK": FINISH_BLOCK},
                                     aligned=pointers[:5] + ("cols",), arch=arch, num_warps=NUM_WARPS)
                report.assert_clean(min_vector_loads=2, min_vector_stores=1)
                if reduce_:
                    report.assert_finishes_when_last()
        for grad_t in ("fp32", "bf16", "fp16"):
            for per_element in (True, False):
                report = compile_for(_scale_grad_kernel, {"grad_ptr": f"*{grad_t}", "grad_loss_ptr": "*fp32",
                                                          "scale_ptr": "*fp32", "out_ptr": f"*{grad_t}", "n": "i64"},
                                     {"PER_ELEMENT": per_element, "BLOCK": BACKWARD_BLOCK},
                                     aligned=("grad_ptr", "grad_loss_ptr", "out_ptr", "n"), arch=arch,
                                     num_warps=BACKWARD_WARPS)
                report.assert_clean(min_vector_loads=1, min_vector_stores=1)


# ---------------------------------------------------------------- bad input (plain process)

def test_bad_input_raises_clear_errors(gen):
    pred, target = _inputs(gen, (2, 3, 4, 5))
    bool_mask = lambda *shape: torch.ones(shape, dtype=torch.bool)  # noqa: E731
    cases = [
        (lambda: n2n_fast.l2_loss(pred, target[:, :2]), ValueError, "target: shape"),
        (lambda: n2n_fast.l2_loss(pred.numpy(), target), TypeError, "pred: expected a torch.Tensor"),
        (lambda: n2n_fast.l2_loss(pred, (target * 255).to(torch.uint8)), TypeError, "target: expected a floating"),
        (lambda: n2n_fast.l1_loss(pred.long(), target), TypeError, "pred: expected a floating"),
        (lambda: n2n_fast.l2_loss(pred, target, mask=bool_mask(2, 3, 4)), ValueError, "mask: shape"),
        (lambda: n2n_fast.l2_loss(pred, target, mask=bool_mask(2, 2, 4, 5)), ValueError, "mask: shape"),
        (lambda: n2n_fast.l2_loss(pred, target, mask=torch.ones(2, 1, 4, 5)), TypeError, "mask: expected dtype"),
        (lambda: n2n_fast.l2_loss(pred, target, mask=[True]), TypeError, "mask: expected a bool"),
        (lambda: n2n_fast.l0_loss(pred, target, gamma=-0.5), ValueError, "gamma: must be >= 0"),
        (lambda: n2n_fast.l0_loss(pred, target, gamma=float("nan")), TypeError, "gamma: expected a finite"),
        (lambda: n2n_fast.l0_loss(pred, target, gamma=1.0, eps=0.0), ValueError, "eps: must be > 0"),
        (lambda: n2n_fast.hdr_loss(pred, target, eps=-1e-3), ValueError, "eps: must be > 0"),
        (lambda: n2n_fast.l2_loss(pred[:0], target[:0]), ValueError, "pred: empty tensor"),
        (lambda: n2n_fast.l2_loss(pred, target, reduction="max"), ValueError, "reduction: unknown"),
        (lambda: n2n_fast.l2_loss(pred, target, backend="cuda"), ValueError, "unknown backend"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    with pytest.raises(TypeError):
        n2n_fast.l0_loss(pred, target)  # gamma is required: the annealing schedule lives in train


def test_public_losses_take_the_reference_on_plain_cpu(gen):
    """Without the interpreter, CPU tensors are served by the reference (Triton serves CUDA)."""
    pred, target = _inputs(gen)
    want = reference.loss(pred, target, kind="l1", reduction="sum")
    assert torch.equal(n2n_fast.l1_loss(pred, target, reduction="sum"), want)


# ---------------------------------------------------------------- real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("kind,params", KINDS)
def test_gpu_matches_truth_and_is_deterministic(kind, params, gen):
    for dtypes in DTYPES:
        pred, target = (t.cuda() for t in _inputs(gen, (4, 3, 255, 257), dtypes))
        pixels = (torch.rand((4, 1, 255, 257), generator=gen) > 0.4).cuda()
        for mask in (None, pixels):
            for reduction in REDUCTIONS:
                _check_against_truth(pred, target, mask, kind, params, reduction)
        first = _value_and_grads(pred, target, pixels, kind, params, "mean", "triton")
        again = _value_and_grads(pred, target, pixels, kind, params, "mean", "triton")
        assert all(torch.equal(a, b) for a, b in zip(first, again))  # fixed-order reduction: bitwise
    for shape in [(1,), (7,), (16,)]:  # sizes the runtime specialises (1, divisible by 16)
        pred, target = (t.cuda() for t in _inputs(gen, shape))
        _check_against_truth(pred, target, None, kind, params, "mean")


@pytest.mark.gpu
def test_gpu_inductor_fullgraph(gen):
    torch._dynamo.reset()
    pred, target = (t.cuda() for t in _inputs(gen, (2, 3, 64, 64)))
    mask = (torch.rand((2, 1, 64, 64), generator=gen) > 0.5).cuda()

    def fn(p, t):
        return n2n_fast.l2_loss(p, t, mask=mask) + n2n_fast.l0_loss(p, t, gamma=0.5)

    got = torch.compile(fn, fullgraph=True)(pred, target)
    assert_close(got, fn(pred, target), dtype=torch.float32)
