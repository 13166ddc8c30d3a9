"""Volumes (B, C, D, H, W) through the noise and loss ops: the counter layout for 3-D positions (n2n_fast/noise.py).

A volume's voxel (c, d, h, w) draws at position c*D*H*W + d*H*W + h*W + w of its sample: exactly the image layout
of the (B, C, D*H, W) view, so every implementation proven on images (tests/test_noise.py, tests/test_loss*.py)
serves volumes through that view. These tests pin the layout (bitwise against the view and against a volume cut
alone from a batch), every input and output dtype of the dispatch table, every backend that serves here, and the
fused objective on volumes against its definition.
"""
import pytest
import torch
from tolerance import assert_close

import n2n_fast
from n2n_fast import _backend
from n2n_fast import noise as nz

SHAPE = (3, 2, 5, 7, 9)  # odd sizes: D*H = 35 rows of 9
MODELS = {"gaussian": nz.Gaussian((0.0, 0.5)), "poisson": nz.Poisson((0.5, 60.0)),
          "poisson_gaussian": nz.PoissonGaussian(30.0, 0.05), "bernoulli": nz.Bernoulli(0.3),
          "impulse": nz.Impulse(0.2)}


def _volumes(gen, dtype, shape=SHAPE):
    if dtype in (torch.uint8, torch.uint16):
        top = 256 if dtype == torch.uint8 else 65536
        return torch.randint(0, top, shape, generator=gen, dtype=torch.int32).to(dtype)
    return torch.rand(shape, generator=gen).to(dtype)


def _as_images(x):
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], x.shape[4])


def _backends(op, **tensors):
    """The implementations that serve these CPU tensors in this process (the extension and the reference here;
    Triton under the interpreter)."""
    return [name for name in _backend.BACKENDS if _serves(op, name, tensors)]


def _serves(op, name, tensors):
    try:
        _backend.choose(op, torch.device("cpu"), name, **tensors)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("in_dtype", _backend.NOISE_INPUTS, ids=str)
@pytest.mark.parametrize("out_dtype", _backend.NOISE_OUTPUTS, ids=str)
def test_a_volume_draws_the_noise_of_its_image_view(gen, model, in_dtype, out_dtype):
    clean = _volumes(gen, in_dtype)
    for backend in _backends("noisy_pair", clean=_as_images(clean), out_dtype=out_dtype):
        pair = n2n_fast.noisy_pair(clean, MODELS[model], seed=11, step=7, index=5, out_dtype=out_dtype,
                                   backend=backend)
        view = n2n_fast.noisy_pair(_as_images(clean), MODELS[model], seed=11, step=7, index=5, out_dtype=out_dtype,
                                   backend=backend)
        assert pair[0].shape == SHAPE and pair[0].dtype == out_dtype, backend
        for got, expected in zip(pair, view):
            assert torch.equal(got, expected.reshape(got.shape)), (backend, model)
        if model == "bernoulli":  # the kept-voxel mask of the target: one per voxel, all channels together
            assert pair[2].shape == (SHAPE[0], 1) + SHAPE[2:]


@pytest.mark.parametrize("model", MODELS)
def test_a_voxel_s_noise_depends_on_its_sample_not_on_the_batch(gen, model):
    clean = _volumes(gen, torch.float32)
    whole = n2n_fast.noisy_pair(clean, MODELS[model], seed=2, step=3, index=10)
    for b in range(SHAPE[0]):
        alone = n2n_fast.noisy_pair(clean[b:b + 1], MODELS[model], seed=2, step=3, index=10 + b)
        assert all(torch.equal(w[b:b + 1], a) for w, a in zip(whole, alone)), (model, b)
    one_copy = n2n_fast.add_noise(clean, MODELS[model], seed=2, step=3, index=10, stream=1)
    assert torch.equal(one_copy, whole[1])


def test_volumes_with_a_different_depth_split_draw_different_noise(gen):
    """The layout is positional: the same voxels arranged as (D, H) = (5, 7) or (7, 5) are different volumes, and
    the first 5*7*9 positions of each agree (the counter is the flat position, nothing else)."""
    clean = _volumes(gen, torch.float32, (1, 1, 5, 7, 9))
    noisy = n2n_fast.add_noise(clean, MODELS["gaussian"], seed=4)
    other = n2n_fast.add_noise(clean.reshape(1, 1, 7, 5, 9), MODELS["gaussian"], seed=4)
    assert torch.equal(noisy.reshape(-1), other.reshape(-1))


KINDS = {"l2": {}, "l1": {}, "l0": {"gamma": 1.3}, "hdr": {}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_fused_objective_on_volumes_is_its_definition(gen, kind, model, reduction):
    clean = _volumes(gen, torch.float32)
    pred = torch.rand(SHAPE, generator=gen, requires_grad=True)
    mask = torch.rand((SHAPE[0], 1, 1) + SHAPE[3:], generator=gen) > 0.3  # broadcast over channels and depth
    noise = MODELS[model]
    got = n2n_fast.n2n_loss(pred, clean, noise, seed=9, step=4, index=2, kind=kind, mask=mask, reduction=reduction,
                            **KINDS[kind])
    pair = n2n_fast.noisy_pair(clean, noise, seed=9, step=4, index=2)
    full_mask = mask.expand(SHAPE[0], 1, *SHAPE[2:])
    if len(pair) == 3:
        full_mask = full_mask & pair[2]
    loss = getattr(n2n_fast, f"{kind}_loss")
    expected = loss(pred, pair[1], mask=full_mask, reduction=reduction, **KINDS[kind])
    assert got.shape == expected.shape
    assert_close(got, expected)
    (grad,) = torch.autograd.grad(got.sum(), pred)
    (expected_grad,) = torch.autograd.grad(expected.sum(), pred)
    assert_close(grad, expected_grad)


@pytest.mark.interpret
@pytest.mark.parametrize("model", MODELS)
def test_triton_serves_volumes_through_the_image_view(gen, model):
    """Under the interpreter: Triton's noise on a volume equals the reference's, bit for bit for uniform-driven
    models and within the Gaussian tolerance of the noise tests (same kernels as images, tests/test_noise.py)."""
    clean = _volumes(gen, torch.float32)
    fast = n2n_fast.noisy_pair(clean, MODELS[model], seed=5, step=1, backend="triton")
    reference = n2n_fast.noisy_pair(clean, MODELS[model], seed=5, step=1, backend="reference")
    for got, expected in zip(fast, reference):
        if got.dtype == torch.bool or model in ("bernoulli", "impulse"):
            assert torch.equal(got, expected)
        elif model.startswith("poisson"):
            assert (got != expected).float().mean() < 1e-3  # rare boundary cases of the sampler (docs/design.md §2)
        else:
            assert_close(got, expected)
