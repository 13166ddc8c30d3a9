"""Bad input across the public API and the CLI, from tables: every case must raise a clear error (ValueError /
TypeError / FileNotFoundError / FileExistsError / FloatingPointError) whose message names the argument, file or
option, before any work is done; on the CLI a non-zero exit with one such line and no traceback."""
import os

import numpy as np
import pytest
import torch

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
from n2n_fast import Gaussian
from n2n_fast.cli import main

CLEAR = (ValueError, TypeError, FileNotFoundError, FileExistsError)
RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, (40, 44, 3), dtype=np.uint8)]
SMALL = dict(steps=1, batch_size=2, crop=32, features=8, progress=False, plot=False)


def _train(tmp, **kwargs):
    args = {"data": IMAGES, "noise": Gaussian(0.1), "out_dir": tmp / "run", **SMALL, **kwargs}
    return n2n_fast.train(**args)


def _checkpoint(tmp, weights=None, args=None):
    net = n2n_fast.UNet(3, features=8)
    state = net.state_dict() if weights is None else weights(net.state_dict())
    return str(save_model(net, tmp / "c.pt", model=state, model_args=args or net.arguments(), step=1))


def _nan_weights(state):
    state = dict(state)
    key = next(iter(state))
    state[key] = state[key].clone().fill_(float("nan"))
    return state


# (id, call(tmp) -> anything, expected message fragment)
API_CASES = [
    ("train: noise sigma overflows float32", lambda t: _train(t, noise=Gaussian(1e40)), "sigma"),
    ("train: device gpu", lambda t: _train(t, device="gpu"), "device"),
    ("train: device tpu", lambda t: _train(t, device="tpu"), "device"),
    ("train: cuda without a GPU", lambda t: _train(t, device="cuda") if not torch.cuda.is_available()
     else _train(t, device="tpu"), "device"),
    ("train: absurd features", lambda t: _train(t, features=10**5), "features"),
    ("train: negative steps", lambda t: _train(t, steps=-1), "steps"),
    ("train: float steps", lambda t: _train(t, steps=2.5), "steps"),
    ("train: crop larger than images", lambda t: _train(t, crop=64), "crop"),
    ("train: unknown loss", lambda t: _train(t, loss="l3"), "loss"),
    ("train: unknown targets", lambda t: _train(t, targets="both"), "targets"),
    ("train: unknown precision", lambda t: _train(t, precision="fp8"), "precision"),
    ("train: graph on a CPU", lambda t: _train(t, device="cpu", graph=True), "graph"),
    ("train: identical pairs", lambda t: _train(t, data=None, noise=None, pairs=(IMAGES, IMAGES)), "pairs"),
    ("train: empty list", lambda t: _train(t, data=[]), "data"),
    ("train: object array", lambda t: _train(t, data=np.array([{}], dtype=object)), "data"),
    ("train: int32 image", lambda t: _train(t, data=[IMAGES[0].astype(np.int32)]), "data"),
    ("train: NaN image", lambda t: _train(t, data=[np.full((40, 44), np.nan, np.float32)]), "data"),
    ("train: 0-255 floats without value_range", lambda t: _train(t, data=[IMAGES[0].astype(np.float32)]),
     "value_range=(low, high)"),
    ("train: value_range high below low", lambda t: _train(t, data=[IMAGES[0] / 255.0], value_range=(1, 0)),
     "value_range: got (1, 0)"),
    ("train: value_range with uint8 data", lambda t: _train(t, value_range=(0, 255)),
     "value_range: (0.0, 255.0) was given but data[0] holds uint8"),
    ("train: missing folder", lambda t: _train(t, data=str(t / "nowhere")), "data"),
    ("train: ambiguous stack", lambda t: _train(t, data=np.zeros((4, 40, 44, 5), np.uint8)[..., 0][..., None]
                                                  .squeeze(-1)), "could be a stack"),
    ("train: bad axes", lambda t: _train(t, axes="ZZYX"), "axes"),
    ("train: overwrite not a bool", lambda t: _train(t, overwrite="yes"), "overwrite"),
    ("train: plot not a bool", lambda t: _train(t, plot="yes"), "plot"),
    ("noise: Poisson peak underflows", lambda t: n2n_fast.Poisson(1e-46), "peak"),
    ("noise: bool sigma", lambda t: Gaussian(True), "sigma"),
    ("noise: low > high", lambda t: Gaussian((0.3, 0.1)), "sigma"),
    ("noisy_pair: float64 input", lambda t: n2n_fast.noisy_pair(torch.zeros(1, 1, 4, 4, dtype=torch.float64),
                                                                Gaussian(0.1), seed=0), "clean"),
    ("noisy_pair: rank 2", lambda t: n2n_fast.noisy_pair(torch.zeros(4, 4), Gaussian(0.1), seed=0), "clean"),
    ("noisy_pair: bad step tensor", lambda t: n2n_fast.noisy_pair(torch.zeros(1, 1, 4, 4), Gaussian(0.1), seed=0,
                                                                  step=torch.tensor(1.0)), "step"),
    ("loss: int pred", lambda t: n2n_fast.l2_loss(torch.zeros(3, dtype=torch.int64), torch.zeros(3)), "pred"),
    ("loss: shape mismatch", lambda t: n2n_fast.l2_loss(torch.zeros(3), torch.zeros(4)), "target"),
    ("loss: bad reduction", lambda t: n2n_fast.l1_loss(torch.zeros(3), torch.zeros(3), reduction="max"),
     "reduction"),
    ("UNet: uint8 tensor", lambda t: n2n_fast.UNet(3)(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), "UNet"),
    ("UNet: numpy array", lambda t: n2n_fast.UNet(3)(np.zeros((1, 3, 8, 8), np.float32)), "UNet"),
    ("UNet: empty batch", lambda t: n2n_fast.UNet(3)(torch.zeros(0, 3, 8, 8)), "UNet"),
    ("load: None", lambda t: n2n_fast.load(None), "path"),
    ("load: a folder", lambda t: n2n_fast.load(str(t)), "path"),
    ("load: not a checkpoint", lambda t: (t / "x.pt").write_bytes(b"junk") and n2n_fast.load(str(t / "x.pt")),
     "path"),
    ("load: NaN weights", lambda t: n2n_fast.load(_checkpoint(t, weights=_nan_weights)), "non-finite"),
    ("load: arguments do not fit weights", lambda t: n2n_fast.load(
        _checkpoint(t, args={"in_channels": 1, "out_channels": 1, "features": 8})), "do not fit"),
    ("write_image: int32", lambda t: n2n_fast.write_image(str(t / "a.tif"), np.zeros((4, 4)), dtype=np.int32),
     "dtype"),
    ("write_image: NaN to uint8", lambda t: n2n_fast.write_image(str(t / "a.png"), np.full((4, 4), np.nan)),
     "pixels"),
    ("write_image: unknown suffix", lambda t: n2n_fast.write_image(str(t / "a.xyz"), np.zeros((4, 4))), "path"),
    ("read_image: missing file", lambda t: n2n_fast.read_image(str(t / "none.png")), "path"),
    ("read_image: object npy", lambda t: (np.save(t / "o.npy", np.array([{}], dtype=object), allow_pickle=True),
                                          n2n_fast.read_image(str(t / "o.npy"))), "path"),
    ("read_image: corrupt png", lambda t: ((t / "c.png").write_bytes(b"\x89PNG broken"),
                                           n2n_fast.read_image(str(t / "c.png"))), "c.png"),
    ("denoise: empty image", lambda t: n2n_fast.denoise(n2n_fast.UNet(1, features=8), np.zeros((0, 5))),
     "image"),
    ("denoise: 0-255 floats without value_range", lambda t: n2n_fast.denoise(
        n2n_fast.UNet(3, features=8), IMAGES[0].astype(np.float32)), "value_range=(low, high)"),
    ("denoise: value_range not a pair", lambda t: n2n_fast.denoise(
        n2n_fast.UNet(3, features=8), IMAGES[0] / 255.0, value_range=255), "value_range: got 255"),
    ("denoise: bad batch size", lambda t: n2n_fast.denoise(n2n_fast.UNet(1, features=8), np.zeros((8, 8)),
                                                           batch_size=0), "batch_size"),
]


@pytest.mark.parametrize("case,call,fragment", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_clear_error(tmp_path, case, call, fragment):
    with pytest.raises(CLEAR) as raised:
        call(tmp_path)
    assert fragment in str(raised.value), f"{case}: {raised.value}"
    run = tmp_path / "run"
    assert not run.exists() or not any(run.iterdir()), f"{case}: a failed call left files in out_dir"


def _folder(tmp):
    folder = tmp / "data"
    folder.mkdir(exist_ok=True)
    n2n_fast.write_image(str(folder / "a.png"), IMAGES[0] / 255.0)
    return str(folder)


CLI_CASES = [
    ("train: pairs and noise", lambda t: ["train", "--pairs", _folder(t), _folder(t), "--noise", "gaussian:25",
                                          "--steps", "1", "--out", str(t / "o")], "--noise"),
    ("train: unknown noise model", lambda t: ["train", "--data", _folder(t), "--noise", "speckle:3", "--steps", "1",
                                              "--out", str(t / "o")], "--noise"),
    ("train: crop too large", lambda t: ["train", "--data", _folder(t), "--noise", "gaussian:25", "--steps", "1",
                                         "--crop", "128", "--out", str(t / "o")], "crop"),
    ("train: threads 0", lambda t: ["train", "--data", _folder(t), "--noise", "gaussian:25", "--steps", "1",
                                    "--threads", "0", "--out", str(t / "o")], "--threads"),
    ("train: missing data", lambda t: ["train", "--data", str(t / "none"), "--noise", "gaussian:25", "--steps", "1",
                                       "--out", str(t / "o")], "data"),
    ("train: bad axes", lambda t: ["train", "--data", _folder(t), "--noise", "gaussian:25", "--steps", "1",
                                   "--axes", "QQ", "--out", str(t / "o")], "axes"),
    ("train: gpu device", lambda t: ["train", "--data", _folder(t), "--noise", "gaussian:25", "--steps", "1",
                                     "--device", "gpu", "--out", str(t / "o")], "device"),
    ("train: bad --range", lambda t: ["train", "--data", _folder(t), "--noise", "gaussian:25", "--steps", "1",
                                      "--range", "255,0", "--out", str(t / "o")], "--range: got (255.0, 0.0)"),
    ("train: --range on 8-bit images", lambda t: ["train", "--data", _folder(t), "--noise", "gaussian:25",
                                                  "--steps", "1", "--crop", "32", "--range", "0,255", "--out",
                                                  str(t / "o")], "was given but data[0] ("),
    ("denoise: bad --range", lambda t: ["denoise", "--checkpoint", _checkpoint(t), "--range", "low,high",
                                        os.path.join(_folder(t), "a.png"), str(t / "out.png")],
     "--range: expected LOW,HIGH"),
    ("denoise: missing checkpoint", lambda t: ["denoise", "--checkpoint", str(t / "none.pt"),
                                               os.path.join(_folder(t), "a.png"), str(t / "out.png")], "checkpoint"),
]


@pytest.mark.parametrize("case,argv,fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_exits_nonzero_with_one_line(tmp_path, capsys, case, argv, fragment):
    code = main(argv(tmp_path))
    err = capsys.readouterr().err.strip()
    assert code != 0 and fragment in err and "Traceback" not in err and len(err.splitlines()) == 1, (case, err)
