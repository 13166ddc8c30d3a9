"""n2n_fast/triton/launch.py: the direct launch picks the compiled kernel Triton's JIT picks, for every argument fact
Triton specialises on (tensor dtype and 16-byte alignment, ints equal to 1, divisible by 16, past int32), and hands
the launcher what the JIT hands it. Through the GPU dry run (Triton's real binder, compiler and launcher)."""
import pytest
import torch

from n2n_fast.triton import launch

pytestmark = pytest.mark.dryrun


@pytest.fixture(scope="module")
def dry_run():
    import dryrun

    dryrun.install()
    return dryrun


def _cases():
    """(name, args) of _scale_grad_kernel: grad, grad_loss, scale, out, n."""
    def tensors(dtype, offset):
        base = torch.rand(64 + offset).to(dtype)
        grad = base[offset:]  # offset 1: a pointer 2 or 4 bytes past a 16-byte boundary
        return grad, torch.ones(()), torch.ones(()), torch.empty_like(grad)

    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        for offset in (0, 1):
            for n in (1, 16, 17, 48):
                cases.append((f"{dtype}-offset{offset}-n{n}", tensors(dtype, offset) + (n,)))
    cases.append(("int64-n", tensors(torch.float32, 0) + (2 ** 31 + 16,)))
    return cases


def test_the_direct_launch_picks_the_jit_s_kernel_and_launches_the_same(dry_run):
    from n2n_fast.triton.loss_backward import _scale_grad_kernel

    assert launch.available() is None, launch.available()
    direct = launch.DirectLaunch(_scale_grad_kernel)
    kw = dict(PER_ELEMENT=False, BLOCK=64, num_warps=2)
    picked = {}
    for name, args in _cases():
        grid = (1,) if args[-1] < 2 ** 31 else (2,)
        with dry_run.recording() as by_jit:
            expected = _scale_grad_kernel[grid](*args, **kw)
        direct[grid](*args, **kw)  # the first call with this key goes through the JIT
        with dry_run.recording() as by_direct:
            got = direct[grid](*args, **kw)  # served from the direct path's cache
        assert got is expected, name
        assert by_direct == by_jit, name
        picked[name] = got
    # the facts split the kernels as Triton does: per dtype and grad's alignment, n == 1 / n % 16 == 0 (16 and 48
    # share one) / neither, and n past int32: 2 x 2 x 3 + 1
    assert len({id(k) for k in picked.values()}) == len(direct.cache) == 13


def test_the_direct_launch_steps_aside_where_it_is_not_checked(monkeypatch):
    monkeypatch.setenv("N2N_FAST_DIRECT_LAUNCH", "0")
    assert launch.available() == "N2N_FAST_DIRECT_LAUNCH=0"
    monkeypatch.delenv("N2N_FAST_DIRECT_LAUNCH")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "interpreter" in launch.available()
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(launch.triton, "__version__", "3.6.0")
    assert "checked on" in launch.available()
    assert launch.cdiv(17, 16) == 2 and launch.cdiv(16, 16) == 1 and launch.cdiv(0, 16) == 0


def test_a_rebound_kernel_global_goes_back_through_the_jit(dry_run, monkeypatch):
    """The JIT refuses to launch a kernel whose globals changed since it was compiled; so does the direct path."""
    import triton.language as tl

    import n2n_fast
    from n2n_fast.triton import noise_models

    x = torch.rand(1, 1, 8, 8)
    for _ in range(2):  # compiled, then served by the direct path
        n2n_fast.noisy_pair(x, n2n_fast.Gaussian(0.1), seed=0, step=3, check_finite=False)
    monkeypatch.setattr(noise_models, "DIGEST", tl.constexpr(noise_models.DIGEST.value + "x"))
    with pytest.raises(RuntimeError, match="Global variable DIGEST has changed"):
        n2n_fast.noisy_pair(x, n2n_fast.Gaussian(0.1), seed=0, step=3, check_finite=False)
