"""Bad input across the public API and the CLI, from tables: every case must raise a clear error (ValueError /
TypeError / FileNotFoundError / FileExistsError / FloatingPointError) whose message names the argument, file or
option (a path as the user gave it, never a temporary file), before any work is done; on the CLI a non-zero exit
with one such line and no traceback. A third table holds what must not warn or fail: ordinary calls that printed
noise, and an optional extra that breaks at the end of a run."""
import contextlib
import logging
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
import n2n_fast.demo
from n2n_fast import Gaussian
from n2n_fast.cli import main
from n2n_fast.extras import MissingExtra
from n2n_fast.inference.denoise import denoise_plan

CLEAR = (ValueError, TypeError, FileNotFoundError, FileExistsError, MissingExtra)
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


def _file(tmp):
    """A plain file, for writes whose parent folder is a file."""
    (tmp / "plain.txt").write_text("a file, not a folder")
    return tmp / "plain.txt"


def _read_only(tmp):
    """A folder that refuses new files: mode 0o500, or /sys where root ignores modes."""
    if os.geteuid() == 0:
        return "/sys"
    folder = tmp / "locked"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o500)
    return str(folder)


def _images(tmp, *arrays):
    """A folder of PNGs a.png, b.png, ... holding `arrays` (uint8)."""
    from PIL import Image

    folder = tmp / "images"
    folder.mkdir(exist_ok=True)
    for letter, array in zip("abcdefgh", arrays):
        Image.fromarray(array).save(folder / f"{letter}.png")
    return str(folder)


GREY = RNG.integers(0, 256, (40, 44), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (40, 44, 4), dtype=np.uint8)


def _zarr_source(tmp):
    pytest.importorskip("zarr")
    import zarr

    zarr.create_array(str(tmp / "in.zarr"), shape=(40, 44), chunks=(20, 44), dtype="float32",
                      dimension_names=["y", "x"])[:] = np.zeros((40, 44), np.float32)
    return str(tmp / "in.zarr")


def _no_gpu(device):
    """`device` where no CUDA GPU is visible; where one is, a device that no machine has."""
    return device if not torch.cuda.is_available() else "tpu"


def _denoise(image=None, **kwargs):
    return n2n_fast.denoise(n2n_fast.UNet(1, features=8), np.zeros((40, 44), np.float32) if image is None else image,
                            **kwargs)


def _without(*modules):
    """A context where importing `modules` fails (as when an optional extra is not installed)."""
    return mock.patch.dict(sys.modules, {name: None for name in modules})


def _save_checkpoint(path):
    from n2n_fast import checkpoint

    return checkpoint.save({"model": {}}, path)


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
    # one device check at every entry point that takes a device (n2n_fast/devices.py)
    ("denoise: device gpu", lambda t: _denoise(device="gpu"), "device: 'gpu'"),
    ("denoise: cuda without a GPU", lambda t: _denoise(device=_no_gpu("cuda")), "device:"),
    ("denoise: cuda:3 without a GPU", lambda t: _denoise(device=_no_gpu("cuda:3")), "device:"),
    ("denoise_plan: device tpu", lambda t: denoise_plan(n2n_fast.UNet(1, features=8), np.zeros((8, 8)),
                                                        device="tpu"), "device:"),
    ("denoise with axes: device gpu", lambda t: _denoise(np.zeros((2, 40, 44), np.float32), axes="ZYX",
                                                         device="gpu"), "device:"),
    ("denoise_zarr: device gpu, before the output exists", lambda t: n2n_fast.denoise_zarr(
        n2n_fast.UNet(1, features=8), str(t / "in.zarr"), str(t / "out.zarr"), device="gpu"), "device:"),
    # tile and overlap: checked where they enter, with the accepted values
    ("denoise: negative tile", lambda t: _denoise(tile=-32), "tile: must be a positive multiple"),
    ("denoise: overlap larger than the tile the image fits", lambda t: _denoise(overlap=1000),
     "overlap: must be smaller than half the tile"),
    ("denoise: overlap the budget's tiles cannot hold", lambda t: _denoise(
        np.zeros((300, 300), np.float32), overlap=200, memory_budget=20e6), "overlap: 200 px needs tiles"),
    ("denoise: float64 model", lambda t: n2n_fast.denoise(n2n_fast.UNet(1, features=8).double(),
                                                          np.zeros((8, 8), np.float32)), "model: its parameters"),
    ("denoise_zarr: unknown option", lambda t: n2n_fast.denoise_zarr(
        n2n_fast.UNet(1, features=8), str(t / "in.zarr"), str(t / "out.zarr"), tiles=64), "tiles"),
    ("denoise_zarr: overwrite not a bool", lambda t: n2n_fast.denoise_zarr(
        n2n_fast.UNet(1, features=8), str(t / "in.zarr"), str(t / "out.zarr"), overwrite="yes"), "overwrite"),
    ("denoise_zarr: bad tile, before the output exists", lambda t: n2n_fast.denoise_zarr(
        n2n_fast.UNet(1, features=8), _zarr_source(t), str(t / "out.zarr"), tile=-32), "tile:"),
    # one path check for every writer: the user's path in the message, never a temporary file
    ("write_image: parent is a file", lambda t: n2n_fast.write_image(str(_file(t) / "a.png"), GREY / 255),
     "plain.txt' is a file, not a folder, so"),
    ("write_image: read-only folder", lambda t: n2n_fast.write_image(os.path.join(_read_only(t), "a.png"),
                                                                     GREY / 255), "does not accept new files"),
    ("write_image: missing folder", lambda t: n2n_fast.write_image(str(t / "none" / "a.png"), GREY / 255),
     "does not exist"),
    ("write_image: path None", lambda t: n2n_fast.write_image(None, GREY / 255), "path: expected a file path"),
    ("checkpoint save: parent is a file", lambda t: _save_checkpoint(_file(t) / "c.pt"), "is a file, not a folder"),
    ("checkpoint save: read-only folder", lambda t: _save_checkpoint(os.path.join(_read_only(t), "c.pt")),
     "does not accept new files"),
    ("export: parent is a file", lambda t: n2n_fast.export(n2n_fast.UNet(1, features=8), _file(t) / "m.onnx"),
     "is a file, not a folder"),
    ("export: read-only folder", lambda t: n2n_fast.export(n2n_fast.UNet(1, features=8),
                                                           os.path.join(_read_only(t), "m.onnx")),
     "does not accept new files"),
    ("export: overwrite not a bool", lambda t: n2n_fast.export(n2n_fast.UNet(1, features=8), t / "m.onnx",
                                                               overwrite=1), "overwrite"),
    ("export: unknown package option", lambda t: n2n_fast.export(n2n_fast.UNet(1, features=8), t / "m.zip",
                                                                 colour="red"), "unknown option(s) colour"),
    ("export: name not a string", lambda t: n2n_fast.export(n2n_fast.UNet(1, features=8), t / "m.zip", name=5),
     "name: expected a non-empty string"),
    ("denoise_zarr: output in a folder that is a file", lambda t: n2n_fast.denoise_zarr(
        n2n_fast.UNet(1, features=8), _zarr_source(t), str(_file(t) / "out.zarr")), "is a file, not a folder"),
    ("denoise_zarr: output in a read-only folder", lambda t: n2n_fast.denoise_zarr(
        n2n_fast.UNet(1, features=8), _zarr_source(t), os.path.join(_read_only(t), "out.zarr")),
     "does not accept new files"),
    ("train: out_dir inside a file", lambda t: _train(t, out_dir=_file(t) / "run"), "out_dir"),
    ("train: out_dir not a path", lambda t: _train(t, out_dir=5), "out_dir: expected a folder path"),
    # image formats: what each suffix stores, and what to use instead
    ("write_image: RGBA to .jpg", lambda t: n2n_fast.write_image(str(t / "a.jpg"), RGBA / 255),
     ".jpg cannot store uint8 RGBA images"),
    ("write_image: 16-bit to .jpg", lambda t: n2n_fast.write_image(str(t / "a.jpg"), GREY / 255, dtype=np.uint16),
     "Use .png or .tif"),
    ("write_image: grey to .webp (would come back RGB)", lambda t: n2n_fast.write_image(str(t / "a.webp"),
                                                                                        GREY / 255), ".webp"),
    ("write_image: RGBA to .bmp (would drop alpha)", lambda t: n2n_fast.write_image(str(t / "a.bmp"), RGBA / 255),
     ".bmp cannot store"),
    # training data: the file named, and how to proceed
    ("train: a grey image among RGB ones", lambda t: _train(t, data=_images(t, IMAGES[0], IMAGES[0], GREY)),
     "c.png) has 1"),
    ("train: an RGBA PNG", lambda t: _train(t, data=_images(t, RGBA)), "a.png' is RGBA"),
    ("train: a grey + alpha PNG", lambda t: _train(t, data=_images(t, np.stack([GREY, GREY], -1))),
     "is grey + alpha"),
    ("demo: without scikit-image names the extra", lambda t: _demo_without_skimage(t), "[demo] extra"),
    ("demo: device gpu", lambda t: n2n_fast.demo.demo(str(t / "demo"), steps=1, device="gpu"), "device:"),
    ("train: plot=True without matplotlib names the extra", lambda t: _train_without_matplotlib(t), "the [plot] extra"),
    # parameters checked where they enter, with the accepted range
    ("hdr_loss: pred at -eps", lambda t: n2n_fast.hdr_loss(torch.full((4,), -0.01), torch.zeros(4)),
     "pred: hdr_loss takes pred > -eps"),
    ("n2n_loss hdr: pred at -eps", lambda t: n2n_fast.n2n_loss(torch.full((1, 1, 4, 4), -0.01), torch.zeros(
        1, 1, 4, 4), Gaussian(0.1), seed=0, step=0, kind="hdr"), "pred: hdr_loss takes pred > -eps"),
    ("hdr_loss: NaN pred", lambda t: n2n_fast.hdr_loss(torch.full((4,), float("nan")), torch.zeros(4)), "pred:"),
    ("hdr_loss: eps beyond float32", lambda t: n2n_fast.hdr_loss(torch.zeros(4), torch.zeros(4), eps=1e300),
     "eps:"),
    ("l0_loss: eps below float32", lambda t: n2n_fast.l0_loss(torch.zeros(4), torch.zeros(4), gamma=1, eps=1e-300),
     "eps:"),
    ("noise: Gaussian sigma 3.4e38", lambda t: Gaussian(3.4e38), "sigma: every value must be finite and >= 0 and "
                                                                  "<= 10000"),
    ("noise: PoissonGaussian sigma 1e30", lambda t: n2n_fast.PoissonGaussian(30, (0, 1e30)), "sigma:"),
    ("UNet: float64 input", lambda t: n2n_fast.UNet(1, features=8)(torch.zeros(1, 1, 32, 32, dtype=torch.float64)),
     "UNet: input is torch.float64"),
    ("UNet: input on another device", lambda t: n2n_fast.UNet(1, features=8)(torch.zeros(1, 1, 32, 32,
                                                                                           device="meta")), "UNet:"),
    ("UNet: absurd features", lambda t: n2n_fast.UNet(3, features=10**6), "UNet: features"),
]


def _demo_without_skimage(tmp):
    import n2n_fast.demo

    with _without("skimage", "skimage.data"):
        return n2n_fast.demo.demo(str(tmp / "demo"), steps=1)


def _train_without_matplotlib(tmp):
    with _without("matplotlib"):
        return _train(tmp, plot=True)


@pytest.mark.parametrize("case,call,fragment", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_clear_error(tmp_path, case, call, fragment):
    with pytest.raises(CLEAR) as raised:
        call(tmp_path)
    assert fragment in str(raised.value), f"{case}: {raised.value}"
    assert ".tmp" not in str(raised.value), f"{case}: names a temporary file: {raised.value}"
    assert not (tmp_path / "out.zarr").exists(), f"{case}: a failed call left its output behind"
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


def _warnings_of(code):
    """stderr of `code` run in a fresh interpreter with UserWarnings as errors: torch warns about a read-only
    array once per process, so only a process of its own shows whether a call triggers it."""
    run = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stderr


_TRAIN = ("import numpy as np, n2n_fast; n2n_fast.train(data={data}, noise=n2n_fast.Gaussian(0.1), out_dir={out!r}, "
          "steps=1, batch_size=2, crop=32, features=8, progress=False, plot=False)")


def _train_png_folder(tmp):
    return _warnings_of(_TRAIN.format(data=repr(_images(tmp, IMAGES[0], IMAGES[0])), out=str(tmp / "run")))


def _train_read_only_arrays(tmp):
    data = "[np.frombuffer(np.arange(40 * 44 * 3, dtype=np.uint8).tobytes(), np.uint8).reshape(40, 44, 3)]"
    return _warnings_of(_TRAIN.format(data=data, out=str(tmp / "run")))


@contextlib.contextmanager
def _pyplot_unimportable():
    """`from matplotlib import pyplot` fails: blocked in sys.modules and, when an earlier test imported it, taken
    off the matplotlib package too (the from-import reads that attribute first, so the block alone leaves this
    test depending on which tests ran before it)."""
    package = sys.modules.get("matplotlib")
    pyplot = getattr(package, "pyplot", None)
    if pyplot is not None:
        del package.pyplot
    try:
        with _without("matplotlib.pyplot"):
            yield
    finally:
        if pyplot is not None:
            package.pyplot = pyplot


def _train_with_broken_matplotlib(tmp):
    """matplotlib is found (plot=None draws the figure) but fails to import at the end of the run."""
    with _pyplot_unimportable():
        result = _train(tmp, plot=None)
    assert result.checkpoint and os.path.isfile(result.checkpoint)
    return result


def _export_onnx(tmp):
    pytest.importorskip("onnxscript")
    return n2n_fast.export(n2n_fast.UNet(1, features=8), tmp / "m.onnx")


# (id, call(tmp) -> anything, warning categories that must not appear (None: none at all) or the one warning that
# must, what must not appear on stderr or in the log)
QUIET_CASES = [
    ("train on a folder of PNGs: no non-writable-array warning", _train_png_folder, (UserWarning,), "not writable"),
    ("train on read-only arrays: no non-writable-array warning", _train_read_only_arrays, (UserWarning,),
     "not writable"),
    ("export to ONNX: no torchvision lines", _export_onnx, (), "torchvision"),
    ("matplotlib breaks at the end of a run: the run completes, a warning names the extra",
     _train_with_broken_matplotlib, "[plot]", "Traceback"),
]


@pytest.mark.parametrize("case,call,warnings_,noise", QUIET_CASES, ids=[c[0] for c in QUIET_CASES])
def test_ordinary_calls_are_quiet(tmp_path, capfd, caplog, recwarn, case, call, warnings_, noise):
    with caplog.at_level(logging.WARNING):
        printed = call(tmp_path)
    seen = [str(w.message) for w in recwarn]
    if isinstance(warnings_, str):
        assert any(warnings_ in message for message in seen), (case, seen)
    else:
        assert not [w for w in recwarn if isinstance(w.message, warnings_)], (case, seen)
    out, err = capfd.readouterr()
    printed = printed if isinstance(printed, str) else ""  # a subprocess's stderr
    assert noise not in err + out + caplog.text + printed and not any(noise in m for m in seen), (case, err[-2000:])
