"""The L0 exponent as a 0-d float32 device tensor (what train() anneals on the device, so a CUDA graph can replay
the L0 step): bit for bit the loss and gradient of the same exponent given as a float, on every backend that
serves the loss and the fused objective (Triton under the interpreter, the reference), with odd sizes and masks."""
import re

import pytest
import torch

import n2n_fast
from n2n_fast import Gaussian, Poisson

SHAPE = (2, 3, 17, 19)
GAMMAS = (0.0, 0.37, 1.0, 1.999)


def _both(fn, pred, gamma):
    """(value, pred's gradient) of fn(pred, gamma) with gamma as a float and as a tensor."""
    out = []
    for g in (gamma, torch.tensor(gamma, dtype=torch.float32)):
        p = pred.detach().clone().requires_grad_()
        value = fn(p, g)
        value.backward(torch.ones_like(value))
        out.append((value.detach(), p.grad))
    return out


def _assert_bitwise(pair):
    (v0, g0), (v1, g1) = pair
    assert torch.equal(v0, v1) and torch.equal(g0, g1)


@pytest.mark.interpret
@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_l0_loss_tensor_gamma_equals_float_gamma(backend, reduction):
    gen = torch.Generator().manual_seed(11)
    pred, target = torch.rand(SHAPE, generator=gen), torch.rand(SHAPE, generator=gen)
    mask = torch.rand(SHAPE[0], 1, *SHAPE[2:], generator=gen) > 0.3
    for gamma in GAMMAS:
        _assert_bitwise(_both(lambda p, g: n2n_fast.l0_loss(p, target, gamma=g, mask=mask, reduction=reduction,
                                                            backend=backend), pred, gamma))


@pytest.mark.interpret
@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("noise", [Gaussian(0.1), Poisson(20.0)], ids=["gaussian", "poisson"])
def test_fused_l0_tensor_gamma_equals_float_gamma(backend, noise):
    gen = torch.Generator().manual_seed(12)
    clean = torch.rand(SHAPE, generator=gen)
    pred = torch.rand(SHAPE, generator=gen).bfloat16()
    for gamma in GAMMAS:
        _assert_bitwise(_both(lambda p, g: n2n_fast.n2n_loss(p, clean, noise, seed=4, step=9, kind="l0", gamma=g,
                                                             backend=backend), pred, gamma))


@pytest.mark.interpret
def test_tensor_gamma_is_read_not_ignored():
    """A kernel that ignored the tensor would give the same loss for every exponent."""
    gen = torch.Generator().manual_seed(13)
    pred, target = torch.rand(SHAPE, generator=gen), torch.rand(SHAPE, generator=gen)
    values = {float(n2n_fast.l0_loss(pred, target, gamma=torch.tensor(g), backend="triton")) for g in GAMMAS}
    assert len(values) == len(GAMMAS)


@pytest.mark.parametrize("gamma,received", [
    (torch.tensor([1.0]), "torch.float32 of shape (1,) on cpu"),
    (torch.tensor(1.0, dtype=torch.float64), "torch.float64 of shape () on cpu"),
    (torch.tensor(1), "torch.int64 of shape () on cpu"),
    (torch.tensor(1.0, device="meta"), "torch.float32 of shape () on meta"),  # another device than pred's
])
def test_bad_tensor_gamma_is_refused_by_name(gamma, received):
    """l0_loss and the fused objective both name the argument, what it must be and what it got."""
    pred = torch.rand(1, 1, 4, 4)
    message = rf"^gamma: .*0-d float32 tensor on cpu\b.*got {re.escape(received)}"
    with pytest.raises(TypeError, match=message):
        n2n_fast.l0_loss(pred, pred, gamma=gamma)
    with pytest.raises(TypeError, match=message):
        n2n_fast.n2n_loss(pred, pred, Gaussian(0.1), seed=0, step=0, kind="l0", gamma=gamma)
