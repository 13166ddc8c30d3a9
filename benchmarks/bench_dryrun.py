"""Host cost of the training step's fast paths, measured through the GPU dry run (tests/dryrun.py).

In the dry run Triton's real binder, cache lookup and C launcher run on CPU tensors and the launch itself is a
no-op, so the time measured is the host work a GPU step pays before its kernels can run: Python, custom-op dispatch,
Triton's argument binding. What a GPU would spend in the kernels is not here. Reported, never asserted.

    pytest -m dryrun benchmarks/bench_dryrun.py --benchmark-only        own process: the dry run changes it

Rows: the ops of one synthetic N2N step outside the network (input noise, fused objective forward and backward) at
the paper's batch 4x3x128x128 in bf16 (what autocast hands the loss), with the Triton launches they make; and one
whole train() step of a tiny U-Net (features 8 on 4x3x32x32, where the network's CPU time is small), whose launches
per step are what a CUDA graph would capture; and the per-call host cost of the eager public ops on 1x1x8x8
tensors (launch overhead only), each beside what a user writes by hand, timed in the same test: `noisy_pair` beside
`x + sigma * torch.randn_like(x)` twice, `l2_loss` forward+backward beside `F.mse_loss`'s, `n2n_loss` beside
`l2_loss` (docs/design.md §7's targets: 40 us, +20 us, +20 us), the bf16 `l2_loss` (whose backward is a launch) and
the floor (`_Floor`: the least a Python autograd.Function around one Triton launch costs) beside `F.mse_loss`.
`extra_info` holds host_us, the baseline's, the difference, and host_us_through_jit: the same calls with every
launch through Triton's `kernel[grid](...)` (n2n_fast/triton/launch.py off).
"""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

import n2n_fast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import dryrun  # noqa: E402

pytestmark = pytest.mark.dryrun
NOISE = n2n_fast.Gaussian((0, 50 / 255))


@pytest.fixture(scope="module", autouse=True)
def installed():
    dryrun.install()


def test_step_ops_host_time(benchmark):
    torch.set_num_threads(1)
    clean = torch.rand(4, 3, 128, 128)
    pred = torch.rand(4, 3, 128, 128).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()

    def step_ops():
        n2n_fast.add_noise(clean, NOISE, seed=0, step=5, check_finite=False)
        n2n_fast.n2n_loss(pred, clean, NOISE, seed=0, step=5).backward()

    step_ops()  # compile outside the timing
    with dryrun.recording() as made:
        step_ops()
    benchmark(step_ops)
    benchmark.extra_info.update(op="step ops (noise + fused loss fwd+bwd), dry run", size="4x3x128x128",
                                impl="triton", device="dry run", launches=len(made))


# ops that launch nothing on a GPU (views, allocations) or that belong to the network and autocast's weight casts
_NO_LAUNCH = {"view", "_unsafe_view", "expand", "select", "slice", "unsqueeze", "squeeze", "permute", "t",
              "transpose", "as_strided", "alias", "detach", "_reshape_alias", "reshape", "unbind", "split", "empty",
              "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh",
              "_record_function_enter_new", "_record_function_exit"}
_NETWORK = {"_to_copy", "convolution", "convolution_backward", "leaky_relu", "leaky_relu_backward", "cat",
            "max_pool2d_with_indices", "max_pool2d_with_indices_backward", "upsample_nearest2d",
            "upsample_nearest2d_backward"}


class _DeviceOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten ops that would each be a kernel launch on a GPU, outside the network."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.count += name not in _NO_LAUNCH | _NETWORK | {"zero_"}  # zero_: the harness zeroes small outputs
        return func(*args, **(kwargs or {}))


def test_train_step_launches(benchmark, tmp_path, monkeypatch):
    """Per step after the first two: Triton launches and the other device ops outside the network (a graph
    captures both; eagerly each is a launch with its host cost)."""
    import importlib

    torch.set_num_threads(1)
    train_module = importlib.import_module("n2n_fast.training.step")
    images = [torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8).numpy() for _ in range(2)]
    runs, counted, real_step = {"count": 0}, [], train_module.train_step

    def counting_step(run, step):
        if step < 2:
            return real_step(run, step)
        with dryrun.recording() as made, _DeviceOps() as ops:
            loss = real_step(run, step)
        counted.append((len(made), ops.count))
        return loss

    def train(steps):
        runs["count"] += 1
        n2n_fast.train(data=images, noise=NOISE, steps=steps, batch_size=4, crop=32, features=8,
                       out_dir=tmp_path / str(runs["count"]), progress=False, plot=False, log_every=1000)

    monkeypatch.setattr(train_module, "train_step", counting_step)
    train(4)
    monkeypatch.setattr(train_module, "train_step", real_step)
    benchmark.pedantic(train, args=(4,), rounds=3, iterations=1)
    assert counted[0] == counted[1]
    benchmark.extra_info.update(op="train() steps of a tiny U-Net, dry run (4 steps per round)", size="4x3x32x32",
                                impl="defaults", device="dry run", triton_launches_per_step=counted[0][0],
                                other_device_ops_per_step=counted[0][1])


class _Floor(torch.autograd.Function):
    """The least an eager Triton loss can cost the host from Python: an autograd.Function whose forward is one
    launch of the loss kernel into buffers allocated once (no checks, no dispatch, no allocation) and whose backward
    is PyTorch's multiply, as a float32 loss's is. Not a product path: the yardstick for the target."""

    buffers = None

    @staticmethod
    def forward(ctx, pred, target):
        from n2n_fast.triton.loss import BLOCK, FINISH_BLOCK, NUM_WARPS, _LOSS

        if _Floor.buffers is None:
            _Floor.buffers = (torch.empty_like(pred), torch.empty(1), torch.empty(()), torch.empty(()),
                              torch.zeros(1, dtype=torch.int32))
        grad, partials, out, scale, ticket = _Floor.buffers
        pred = pred.detach()
        _LOSS[(1, 1)](pred, target, pred, grad, pred, partials, partials, out, scale, ticket,
                      pred.numel(), 1, 0.0, pred, 0.0, True, False, True, KIND=0, MASK_MODE=0, REDUCE=True,
                      BLOCK=BLOCK, FINISH_BLOCK=FINISH_BLOCK, num_warps=NUM_WARPS)
        ctx.save_for_backward(grad, scale)
        return out.clone()

    @staticmethod
    def backward(ctx, grad_loss):
        grad, scale = ctx.saved_tensors
        return grad * (grad_loss * scale), None


_X = torch.rand(1, 1, 8, 8)
_PRED = torch.rand(1, 1, 8, 8, requires_grad=True)
_TARGET = torch.rand(1, 1, 8, 8)
_PRED_BF16 = torch.rand(1, 1, 8, 8).bfloat16().requires_grad_()  # what autocast hands the loss: a scaling launch
_SIGMA = 25 / 255
_GAUSSIAN = n2n_fast.Gaussian(_SIGMA)  # built once, as a training loop does: the op's cost, not its argument's
_HOST_OPS = {
    "randn_like pair": lambda: (_X + _SIGMA * torch.randn_like(_X), _X + _SIGMA * torch.randn_like(_X)),
    "noisy_pair": lambda: n2n_fast.noisy_pair(_X, _GAUSSIAN, seed=0, step=3, check_finite=False),
    "F.mse_loss fwd+bwd": lambda: F.mse_loss(_PRED, _TARGET).backward(),
    "l2_loss fwd+bwd": lambda: n2n_fast.l2_loss(_PRED, _TARGET).backward(),
    "n2n_loss fwd+bwd": lambda: n2n_fast.n2n_loss(_PRED, _X, _GAUSSIAN, seed=0, step=3).backward(),
    "bf16 l2_loss fwd+bwd": lambda: n2n_fast.l2_loss(_PRED_BF16, _TARGET).backward(),
    "floor fwd+bwd": lambda: _Floor.apply(_PRED, _TARGET).backward(),
}
_BASELINE = {"noisy_pair": "randn_like pair", "l2_loss fwd+bwd": "F.mse_loss fwd+bwd",
             "n2n_loss fwd+bwd": "l2_loss fwd+bwd", "bf16 l2_loss fwd+bwd": "F.mse_loss fwd+bwd",
             "floor fwd+bwd": "F.mse_loss fwd+bwd"}


@pytest.mark.parametrize("op", sorted(_BASELINE))
def test_op_host_time(benchmark, op):
    torch.set_num_threads(1)
    run, baseline = _HOST_OPS[op], _HOST_OPS[_BASELINE[op]]
    with dryrun.recording() as made:
        run()  # compiles outside the timing
    with dryrun.quiet():
        benchmark.pedantic(run, rounds=200, iterations=5, warmup_rounds=20)
        baseline_us, host_us, jit_us = _interleaved_us((baseline, run, _through_the_jit(run)))
    benchmark.extra_info.update(op=f"{op}, host time per call, dry run", size="1x1x8x8", impl="triton",
                                device="dry run", launches=len(made), host_us=host_us,
                                baseline=_BASELINE[op], baseline_us=baseline_us, excess_us=host_us - baseline_us,
                                host_us_through_jit=jit_us)


def _interleaved_us(calls, rounds=15, repeat=200):
    """Host microseconds per call of each of `calls`: the minimum over `rounds` of the median of `repeat` calls,
    the calls taking turns round by round, so that a noisy stretch of a shared machine (these figures moved 2x
    from run to run with one median each) slows all of them alike and the quietest round is kept."""
    best = [float("inf")] * len(calls)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            best[i] = min(best[i], dryrun.host_seconds(call, repeat=repeat) * 1e6)
    return best


def _through_the_jit(run):
    """`run` with every launch through Triton's `kernel[grid](...)` instead of n2n_fast/triton/launch.py's direct
    path."""
    from n2n_fast.triton import launch

    def through_the_jit():
        previous, launch._WHY_NOT = launch._WHY_NOT, "measuring the JIT's own launch path"
        try:
            run()
        finally:
            launch._WHY_NOT = previous

    return through_the_jit
