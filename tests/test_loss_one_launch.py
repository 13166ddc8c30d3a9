"""The losses' one-launch reduction (triton/loss.py `finish_when_last`, triton/tickets.py): the program that
arrives last sums every program's partial, and leaves the stream's ticket at 0 for the next launch.

The other loss tests use inputs of one or two programs; these use several, with the finishing loop also cut into
steps of 2 partials (FINISH_BLOCK patched), for the plain losses in every mask mode and the fused objective with
and without Bernoulli's kept-pixel mask. Interpreter: the programs run one after another, so the logic (who
finishes, what is summed, the reset) is proven here; the ordering on a GPU is the PTX memory model's (the kernel's
docstring) and is exercised by the GPU tests below (`pytest -m gpu`)."""
import pytest
import torch

import n2n_fast
from n2n_fast.noise import Bernoulli, Gaussian
from tolerance import assert_close_to_truth

PLAIN_SHAPE = (2, 3, 37, 61)  # 13542 elements: 4 programs of 4096 unmasked, 6 rows of 2257 with a (2, 1, ...) mask
FUSED_SHAPE = (3, 3, 23, 29)  # 2001 per sample: 2 blocks of 1024 per sample, 6 programs
SEED, STEP = 11, 5


def _counters_zero():
    from n2n_fast.triton import tickets

    return all(int(counter.sum()) == 0 for counter in tickets._COUNTERS.values())


def _plain(pred, target, mask, reduction, backend):
    return n2n_fast.l2_loss(pred, target, mask=mask, reduction=reduction, backend=backend)


def _fused(pred, clean, noise, reduction, backend):
    return n2n_fast.n2n_loss(pred, clean, noise, seed=SEED, step=STEP, reduction=reduction, backend=backend)


@pytest.mark.interpret
@pytest.mark.parametrize("finish_block", [2, None], ids=["finish-steps-of-2", "finish-default"])
@pytest.mark.parametrize("mask_kind", ["none", "full", "rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_plain_loss_sums_every_program(gen, monkeypatch, finish_block, mask_kind, reduction):
    from n2n_fast.triton import buffers, loss

    monkeypatch.setattr(buffers, "POISON", True)  # a partial the finish reads before it is written is NaN
    if finish_block:
        monkeypatch.setattr(loss, "FINISH_BLOCK", finish_block)
    pred = torch.rand(PLAIN_SHAPE, generator=gen)
    target = torch.rand(PLAIN_SHAPE, generator=gen)
    mask = {"none": None, "full": torch.rand(PLAIN_SHAPE, generator=gen) > 0.4,
            "rows": torch.rand((2, 1) + PLAIN_SHAPE[2:], generator=gen) > 0.4}[mask_kind]
    first = _plain(pred, target, mask, reduction, "triton")
    assert _counters_zero()
    again = _plain(pred, target, mask, reduction, "triton")  # the reset ticket serves the next launch
    truth = _plain(pred.double(), target.double(), mask, reduction, "reference")
    assert_close_to_truth(first, truth, torch.float32)
    assert torch.equal(first, again) and _counters_zero()


@pytest.mark.interpret
@pytest.mark.parametrize("finish_block", [2, None], ids=["finish-steps-of-2", "finish-default"])
@pytest.mark.parametrize("noise", [Gaussian(0.1), Bernoulli(0.5)], ids=["gaussian", "bernoulli-masked"])
def test_fused_loss_sums_every_program(gen, monkeypatch, finish_block, noise):
    from n2n_fast.triton import buffers, loss

    monkeypatch.setattr(buffers, "POISON", True)
    if finish_block:
        monkeypatch.setattr(loss, "FINISH_BLOCK", finish_block)
    clean = torch.rand(FUSED_SHAPE, generator=gen)
    pred = torch.rand(FUSED_SHAPE, generator=gen).requires_grad_()
    for reduction in ("mean", "sum"):
        value = _fused(pred, clean, noise, reduction, "triton")
        assert _counters_zero()
        value.backward()
        truth = _fused(pred.detach().double(), clean, noise, reduction, "reference")
        assert_close_to_truth(value.detach(), truth, torch.float32)
    assert torch.equal(_fused(pred, clean, noise, "mean", "triton"), _fused(pred, clean, noise, "mean", "triton"))


@pytest.mark.interpret
def test_none_reduction_writes_its_scale(gen, monkeypatch):
    """reduction="none" takes no ticket; its kernel writes the scale 1 (no fill launch) that the backward reads."""
    from n2n_fast.triton import buffers
    from n2n_fast.triton.loss import launch

    monkeypatch.setattr(buffers, "POISON", True)
    pred, target = torch.rand(PLAIN_SHAPE, generator=gen), torch.rand(PLAIN_SHAPE, generator=gen)
    values, grad, scale = launch(pred, target, None, "l2", "none", 0.0, 0.0, True)
    assert float(scale) == 1.0 and torch.equal(values, (pred - target) ** 2) and torch.equal(grad, 2 * (pred - target))


@pytest.mark.interpret
@pytest.mark.parametrize("per_element", [False, True], ids=["0-d", "per-element"])
def test_float32_backward_is_the_kernel_bit_for_bit(gen, per_element):
    """A float32 gradient is scaled by PyTorch's multiplies (cheaper on the host than a launch) with the kernel's
    arithmetic: grad * (grad_output * scale), or grad * grad_output per element, each rounded once in float32."""
    from n2n_fast.triton.loss_backward import scale_grad_eager, scaled_grad

    grad = torch.randn(PLAIN_SHAPE, generator=gen)
    scale = torch.tensor(1 / 13542.0)
    grad_loss = (torch.randn((2, 1) + PLAIN_SHAPE[2:], generator=gen).expand(PLAIN_SHAPE) if per_element
                 else torch.tensor(-2.7))
    assert torch.equal(scaled_grad(grad, grad_loss, scale, eager=True), scale_grad_eager(grad, grad_loss, scale))


# ---------------------------------------------------------------- on a GPU

@pytest.mark.gpu
def test_gpu_many_programs_repeat_bitwise_and_match_truth(gen):
    """3072 programs (16x3x512x512), masked and not, 20 runs each: every run bitwise equal, within the float32
    tolerance of the float64 truth, and the ticket back at 0."""
    pred = torch.rand((16, 3, 512, 512), generator=gen).cuda()
    target = torch.rand((16, 3, 512, 512), generator=gen).cuda()
    mask = (torch.rand((16, 1, 512, 512), generator=gen) > 0.5).cuda()
    for m in (None, mask):
        runs = [_plain(pred, target, m, "mean", "triton") for _ in range(20)]
        truth = _plain(pred.double(), target.double(), m, "mean", "reference")
        assert all(torch.equal(run, runs[0]) for run in runs)
        assert_close_to_truth(runs[0], truth, torch.float32)
    torch.cuda.synchronize()
    assert _counters_zero()


@pytest.mark.gpu
def test_gpu_concurrent_streams_and_graph_replay(gen):
    """Losses on two streams at once use two tickets; a captured loss zeroes its own ticket at every replay:
    the values equal the serial eager ones bit for bit."""
    pred = torch.rand((8, 3, 256, 256), generator=gen).cuda()
    targets = [torch.rand((8, 3, 256, 256), generator=gen).cuda() for _ in range(2)]
    want = [_plain(pred, t, None, "mean", "triton") for t in targets]
    streams = [torch.cuda.Stream() for _ in targets]
    torch.cuda.synchronize()
    got = [[], []]
    for _ in range(50):
        for i, (stream, target) in enumerate(zip(streams, targets)):
            with torch.cuda.stream(stream):
                got[i].append(_plain(pred, target, None, "mean", "triton"))
    torch.cuda.synchronize()
    assert all(torch.equal(value, want[i]) for i in range(2) for value in got[i])
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _plain(pred, targets[0], None, "mean", "triton")
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, want[0])
    assert _counters_zero()
