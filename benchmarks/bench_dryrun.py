"""Host cost of the training step's fast paths, measured through the GPU dry run (tests/dryrun.py).

In the dry run Triton's real binder, cache lookup and C launcher run on CPU tensors and the launch itself is a
no-op, so the time measured is the host work a GPU step pays before its kernels can run: Python, custom-op dispatch,
Triton's argument binding. What a GPU would spend in the kernels is not here. Reported, never asserted.

    pytest -m dryrun benchmarks/bench_dryrun.py --benchmark-only        own process: the dry run changes it

Rows: the ops of one synthetic N2N step outside the network (input noise, fused objective forward and backward) at
the paper's batch 4x3x128x128 in bf16 (what autocast hands the loss), with the Triton launches they make; and one
whole train() step of a tiny U-Net (features 8 on 4x3x32x32, where the network's CPU time is small), whose launches
per step are what a CUDA graph would capture.
"""
import os
import sys

import pytest
import torch

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


def test_train_step_launches(benchmark, tmp_path):
    torch.set_num_threads(1)
    images = [torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8).numpy() for _ in range(2)]
    runs = {"count": 0}

    def train(steps):
        runs["count"] += 1
        n2n_fast.train(data=images, noise=NOISE, steps=steps, batch_size=4, crop=32, features=8,
                       out_dir=tmp_path / str(runs["count"]), progress=False, plot=False, log_every=1000)

    train(1)
    with dryrun.recording() as made:
        train(4)
    benchmark.pedantic(train, args=(4,), rounds=3, iterations=1)
    benchmark.extra_info.update(op="train() steps of a tiny U-Net, dry run (4 steps per round)", size="4x3x32x32",
                                impl="defaults", device="dry run",
                                launches_per_step=len(made) / 4)  # includes train()'s one noise-model probe
