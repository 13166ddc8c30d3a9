"""n2n_fast/training/graph_step.py: the training step as a replayed CUDA graph, refused with a reason where it cannot be."""
import importlib

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.training import data as training_data
from n2n_fast.training import graph_step

train_module = importlib.import_module("n2n_fast.training.step")
IMAGES = [np.random.default_rng(0).integers(0, 256, (40, 44, 3), dtype=np.uint8) for _ in range(2)]
TINY = dict(data=IMAGES, noise=n2n_fast.Gaussian((0.0, 0.2)), steps=5, batch_size=2, crop=32, features=8,
            progress=False, plot=False, log_every=1)


def test_graph_true_is_refused_with_the_reason_where_it_cannot_be(tmp_path):
    with pytest.raises(ValueError, match="graph: the step cannot be captured as a CUDA graph: CUDA graphs need a "
                                         "CUDA device, got cpu"):
        n2n_fast.train(out_dir=tmp_path / "a", device="cpu", graph=True, **TINY)
    with pytest.raises(ValueError, match="graph: expected 'auto', True or False"):
        n2n_fast.train(out_dir=tmp_path / "b", graph="yes", **TINY)
    result = n2n_fast.train(out_dir=tmp_path / "c", device="cpu", **TINY)  # "auto" falls back to eager on a CPU
    assert len(result.history) == 5


# the modes whose step-dependent numbers a graph must compute on the device: the step itself (noise, crops), the
# L0 exponent, the Neighbor2Neighbor weight; and the learning rate in each (TINY's 5 steps ramp it down)
GRAPH_MODES = {"n2n": {}, "n2n-l0": dict(noise=n2n_fast.Impulse(0.2), loss="l0"),
               "neighbor": dict(targets="neighbor", noise=n2n_fast.Gaussian(0.1))}
# volumes (train(dims=3)): the crops picked and cut by the crops kernel's VOLUMES form from the device step
VOLUME = np.random.default_rng(1).integers(0, 256, (6, 20, 20), dtype=np.uint8)
VOLUME_RUN = dict(axes="ZYX", dims=3, crop=(4, 16, 16), features=4)
GRAPH_MODES |= {"n2n-3d": dict(data=VOLUME, **VOLUME_RUN), "n2c-3d": dict(data=VOLUME, targets="clean", **VOLUME_RUN),
                "pairs-3d": dict(data=None, pairs=(VOLUME, VOLUME[:, ::-1].copy()), noise=None, **VOLUME_RUN)}


def _real_run(mode, loss, images):
    """The Run train() would build for `mode` and `loss` on `images` (CPU stores: refusal only reads the Run)."""
    stores = [training_data.ImageStore(images, "cpu")]
    if mode == "pairs":
        stores.append(training_data.ImageStore([image[::-1].copy() for image in images], "cpu"))
    noise = n2n_fast.Impulse(0.2) if loss == "l0" else n2n_fast.Gaussian(0.1)
    return train_module.make_run(train_module.new_network(3, 8, 0), stores, mode=mode, noise=noise, loss=loss,
                                 seed=0, steps=5, batch_size=2, crop=32, lr=3e-4, rampdown=0.3,
                                 neighbor_weight=2.0, precision="float32")


@pytest.mark.parametrize("mode", sorted(train_module.OBJECTIVES))
def test_every_mode_but_the_host_owned_ones_is_captured(mode):
    """graph_step.refusal accepts the Run train() builds for every mode and loss on resident images (no GPU
    needed to ask): only torchrun, compile=True and memmaps are refused (test_host_owned_steps_are_refused)."""
    cuda = torch.device("cuda")
    for loss in ("l2", "l1", "l0", "hdr"):
        run = _real_run(mode, loss, IMAGES)
        assert run.device_crops, f"{mode}, {loss}: resident images, yet no on-device crops"
        why = graph_step.refusal(run, cuda, 1, False)
        assert why is None, f"{mode}, {loss}: refused ({why})"


def test_host_owned_steps_are_refused(tmp_path):
    cuda = torch.device("cuda")
    run = _real_run("noisy", "l2", IMAGES)
    assert "CUDA graphs need a CUDA device, got cpu" == graph_step.refusal(run, torch.device("cpu"), 1, False)
    assert "torchrun" in graph_step.refusal(run, cuda, 2, False)
    assert "reduce-overhead" in graph_step.refusal(run, cuda, 1, True)
    np.save(tmp_path / "image.npy", IMAGES[0])
    on_disk = _real_run("noisy", "l2", [np.load(tmp_path / "image.npy", mmap_mode="r"), IMAGES[1]])
    assert "memmaps" in graph_step.refusal(on_disk, cuda, 1, False)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", sorted(GRAPH_MODES))
def test_graph_replays_match_eager_steps_without_host_syncs(tmp_path, monkeypatch, mode):
    """5 replayed steps against 5 eager ones: the same crops and noise (both read the device step), and losses
    equal to float32 rounding with deterministic cuDNN algorithms (rtol 1e-6: a different algorithm choice between
    the two runs would differ at about 1e-4). The replays run under torch.cuda's sync debug mode set to error:
    every one of the 5 steps, each a replay (a loop that stopped calling train_step would watch nothing)."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    real_step = train_module.train_step
    watched = []

    def no_sync(run, step):
        assert run.graphed is not None, "graph=True, yet the step is not captured"
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss = real_step(run, step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        watched.append(step)
        return loss

    kwargs = TINY | GRAPH_MODES[mode]
    eager = n2n_fast.train(out_dir=tmp_path / "eager", graph=False, **kwargs)
    monkeypatch.setattr(train_module, "train_step", no_sync)
    graphed = n2n_fast.train(out_dir=tmp_path / "graph", graph=True, **kwargs)
    assert watched == list(range(TINY["steps"]))
    np.testing.assert_allclose([r["loss"] for r in graphed.history], [r["loss"] for r in eager.history], rtol=1e-6)
