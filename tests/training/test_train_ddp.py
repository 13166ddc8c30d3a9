"""Multi-process training through torchrun (gloo on the CPU): 2 ranks with batch b each draw exactly the samples of
one process with batch 2b (global sample indices), so their logged losses agree to float32 reduction order; for
images and for volumes (dims=3: the volume crops and the 5-D noise use the same global indices)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tolerance import DDP_LOSS_RTOL

SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
import n2n_fast
import numpy as np
rng = np.random.default_rng(0)
args = json.loads(sys.argv[1])
if args.pop("volumes"):
    data = dict(data=[rng.integers(0, 256, (9, 20, 22), dtype=np.uint8) for _ in range(2)], axes="ZYX", dims=3,
                crop=(4, 16, 16))
else:
    data = dict(data=[rng.integers(0, 256, (40, 46, 3), dtype=np.uint8) for _ in range(3)], crop=32)
n2n_fast.train(**data, noise=n2n_fast.Gaussian((0, 0.2)), steps=STEPS, features=8, precision="float32",
               log_every=1, checkpoint_every=STEPS, progress=False, plot=False, seed=5, device="cpu", **args)
"""
STEPS = 12


def _losses(out_dir):
    return [row["loss"] for row in json.loads((out_dir / "history.json").read_text())]


@pytest.mark.parametrize("volumes", [False, True], ids=["images", "volumes"])
def test_two_ranks_match_one_process(tmp_path, volumes):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.replace("STEPS", str(STEPS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = json.dumps({"batch_size": 4, "out_dir": str(tmp_path / "one"), "volumes": volumes})
    single = subprocess.run([sys.executable, str(script), one], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), json.dumps({"batch_size": 2, "out_dir": str(tmp_path / "two"),
                                                   "volumes": volumes})],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == STEPS
    np.testing.assert_allclose(two, one, rtol=DDP_LOSS_RTOL, atol=0)
    assert one[0] != one[-1]  # the network did train: identical losses are not a vacuous match
