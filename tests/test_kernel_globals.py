"""The Triton kernels read conventions' constants as module attributes, so a launch compares one global, not 17
(n2n_fast/triton/constants.py says why), while a changed constant still changes Triton's cache key."""
import importlib

import pytest

triton = pytest.importorskip("triton")
from triton.runtime.jit import JITFunction  # noqa: E402

MODULES = ("crops", "loss", "loss_backward", "loss_fused", "noise", "noise_models", "philox")


def _jit_functions():
    for name in MODULES:
        module = importlib.import_module(f"n2n_fast.triton.{name}")
        for attr, value in vars(module).items():
            if isinstance(value, JITFunction) and value.__module__ == module.__name__:
                yield f"{name}.{attr}", value


@pytest.mark.parametrize("name,fn", list(_jit_functions()), ids=lambda v: v if isinstance(v, str) else "")
def test_kernels_read_no_constexpr_global_but_the_digest(name, fn):
    fn.cache_key  # computes the dependencies, as the first launch does
    read = sorted({var for var, _ in fn.used_global_vals})
    assert read in ([], ["DIGEST"]), f"{name} reads constexpr globals by name (compared at every launch): {read}"


def test_noise_kernels_key_on_the_digest():
    from n2n_fast.triton import noise, noise_models

    for fn in (noise._noisy_pair_kernel, noise_models.draw):
        fn.cache_key
        assert [var for var, _ in fn.used_global_vals] == ["DIGEST"]


def test_digest_follows_every_constant():
    import triton.language as tl

    from n2n_fast.triton import constants

    namespace = {name: value for name, value in vars(constants).items() if isinstance(value, tl.constexpr)}
    assert constants.DIGEST.value == constants.digest_of(namespace)
    for name in namespace:
        if name == "DIGEST":
            continue
        changed = dict(namespace, **{name: tl.constexpr(namespace[name].value + 1)})
        assert constants.digest_of(changed) != constants.DIGEST.value, name
