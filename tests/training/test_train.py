"""n2n_fast.train / load: bad input, every mode, the N2N claim on real photographs, exact resume after SIGKILL."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import Bernoulli, Gaussian, Impulse, Poisson, _backend
from n2n_fast import checkpoint as ckpt
from n2n_fast.training import schedule
from n2n_fast.training import step as steps_module
from n2n_fast.training.interrupt import TrainingInterrupted

TINY = dict(steps=3, batch_size=2, crop=32, features=8, progress=False, precision="float32", plot=False)


def _photos():
    from skimage import data
    from skimage.color import rgb2gray

    grey = lambda a: np.rint(rgb2gray(a) * 255).astype(np.uint8)  # noqa: E731
    train = [data.camera(), grey(data.astronaut()), grey(data.rocket()), data.brick(),
             grey(data.immunohistochemistry())]
    held_out = [grey(data.chelsea())[:256, :256], grey(data.coffee())[:256, :256]]
    return train, held_out


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on this shared 2-core machine two threads under load run several times slower, and a
    fixed thread count is what bitwise reproducibility is promised for."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 44, 3), dtype=np.uint8), rng.integers(0, 256, (36, 50, 3), dtype=np.uint8)]


# ---- bad input: clear errors before any training, nothing left behind -------------------------------------------
def _bad(tmp_path, error, match, **kwargs):
    out = tmp_path / "out"
    args = {**TINY, "noise": Gaussian(0.1), "out_dir": out, **kwargs}
    with pytest.raises(error, match=match):
        n2n_fast.train(**args)
    assert not out.exists() or not any(out.iterdir()), "a failed call left files behind"


def test_bad_input(tmp_path, small):
    _bad(tmp_path, ValueError, "data, pairs: give exactly one", data=None)
    _bad(tmp_path, ValueError, "data, pairs: give exactly one", data=small, pairs=(small, small))
    _bad(tmp_path, ValueError, "loss: expected one of", data=small, loss="l3")
    _bad(tmp_path, ValueError, "targets: expected one of", data=small, targets="self")
    _bad(tmp_path, ValueError, "noise: targets='noisy' .* needs a noise model", data=small, noise=None)
    _bad(tmp_path, TypeError, "noise: expected one of", data=small, noise="gaussian")
    _bad(tmp_path, ValueError, r"data\[1\]: image of 36x50 is smaller than the crop 40x40", data=small, crop=40)
    _bad(tmp_path, ValueError, "holds no images", data=tmp_path)
    _bad(tmp_path, ValueError, r"pairs\[1\]: 1 images", pairs=(small, small[:1]))
    _bad(tmp_path, ValueError, r"pairs\[1\]: 2 images of shapes", pairs=(small, [small[0], small[0]]))
    _bad(tmp_path, ValueError, "steps: must be >= 1", data=small, steps=0)
    _bad(tmp_path, TypeError, "batch_size: expected an int", data=small, batch_size=2.0)
    _bad(tmp_path, ValueError, "crop must be even", data=small, targets="neighbor", crop=31)
    _bad(tmp_path, ValueError, "precision: expected one of", data=small, precision="fp8")
    _bad(tmp_path, ValueError, r"val: images have 1 channels", data=small, val=[np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="sigma"):  # the noise model checks its level when built
        Gaussian(-0.1)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="out_dir: cannot write"):
        n2n_fast.train(data=small, noise=Gaussian(0.1), out_dir=blocker / "sub", **TINY)


def test_corrupt_checkpoint_on_resume(tmp_path, small):
    (tmp_path / "last.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(ValueError, match="resume: .* not a readable n2n_fast checkpoint"):
        n2n_fast.train(data=small, noise=Gaussian(0.1), out_dir=tmp_path, resume=True, **TINY)
    with pytest.raises(ValueError, match="path: no checkpoint file"):
        n2n_fast.load(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an n2n_fast checkpoint"):
        n2n_fast.load(tmp_path / "other.pt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = ckpt.save({"step": 1}, tmp_path / "last.pt")

    def broken(obj, file):
        with open(file, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ---- schedules ---------------------------------------------------------------------------------------------------
def test_schedules():
    assert schedule.learning_rate(0, 100, 3e-4) == schedule.learning_rate(69, 100, 3e-4) == 3e-4
    assert schedule.learning_rate(85, 100, 3e-4) == pytest.approx(3e-4 * math.cos(math.pi / 4) ** 2)
    lrs = [schedule.learning_rate(s, 100, 1.0) for s in range(70, 100)]
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.01
    assert schedule.l0_gamma(0, 10) == 2.0 and schedule.l0_gamma(5, 10) == 1.0


# ---- every mode runs what it names, writes its files, and load() returns the trained network ---------------------
def _record_steps(monkeypatch):
    """What the training steps run, seen from inside: the objective of each call (by its function's name), and,
    while an objective runs, the loss kinds and prediction dtypes reaching a loss implementation and the noise
    models drawn (train()'s argument check and validation draw noise outside the objective: not counted)."""
    seen = {"objectives": [], "kinds": set(), "pred_dtypes": set(), "noises": set()}
    inside = []

    def watched_objective(objective):
        def run(*args):
            seen["objectives"].append(objective.__name__)
            inside.append(objective)
            try:
                return objective(*args)
            finally:
                inside.pop()
        return run

    def watched_impl(op, impl):
        def run(*args, **kwargs):
            if inside and op in ("loss", "n2n_loss"):
                seen["kinds"].add(kwargs["kind"])
                seen["pred_dtypes"].add(args[0].dtype)
            if inside and op in ("noisy_pair", "n2n_loss"):
                seen["noises"].add(type(args[1 if op == "noisy_pair" else 2]).__name__)
            return impl(*args, **kwargs)
        return run

    real_choose = _backend.choose

    def choose(op, *args, **kwargs):
        name, impl = real_choose(op, *args, **kwargs)
        return name, watched_impl(op, impl)

    for name, objective in steps_module.OBJECTIVES.items():
        monkeypatch.setitem(steps_module.OBJECTIVES, name, watched_objective(objective))
    monkeypatch.setattr(_backend, "choose", choose)
    return seen


# mode -> (the objective its steps run, the loss kinds they compute, the noise models they draw)
MODE_STEPS = {"clean": ("_noise2clean", {"l2"}, {"Gaussian"}),
              "pairs3": ("_real_pairs", {"l2"}, set()),  # the target is another realisation: no noise drawn
              "neighbor": ("_neighbor2neighbor", {"l2"}, set()),  # already noisy data
              "neighbor-synthetic": ("_neighbor2neighbor", {"l2"}, {"Gaussian"}),
              "l1": ("_synthetic_n2n", {"l1"}, {"Gaussian"}),
              "l0": ("_synthetic_n2n", {"l0"}, {"Impulse"}),
              "hdr": ("_synthetic_n2n", {"hdr"}, {"Gaussian"}),
              "bernoulli": ("_synthetic_n2n", {"l2"}, {"Bernoulli"}),
              "poisson": ("_synthetic_n2n", {"l2"}, {"Poisson"}),
              "impulse-bf16": ("_synthetic_n2n", {"l2"}, {"Impulse"}),
              "impulse-bf16-unmapped": ("_synthetic_n2n", {"l2"}, {"Impulse"})}
# the prediction dtype reaching the loss: bf16 autocast's output, but float32 out of the normalisation map (a bf16
# y * scale + offset would lose the offset's precision: docs/normalisation.md)
PRED_DTYPES = {"impulse-bf16-unmapped": torch.bfloat16}


@pytest.mark.parametrize("mode", list(MODE_STEPS))
def test_modes(tmp_path, small, mode, monkeypatch):
    rng = np.random.default_rng(3)
    noisy = [[np.clip(i + rng.normal(0, 20, i.shape), 0, 255).astype(np.uint8) for i in small] for _ in range(3)]
    kwargs = {"clean": dict(data=small, noise=Gaussian((0, 0.2)), targets="clean"),
              "pairs3": dict(pairs=tuple(noisy), val=(noisy[0][0], small[0])),
              "neighbor": dict(data=noisy[0], targets="neighbor"),
              "neighbor-synthetic": dict(data=small, noise=Gaussian(0.1), targets="neighbor", val=small[:1]),
              "l1": dict(data=small, noise=Gaussian(0.1), loss="l1"),
              "l0": dict(data=small, noise=Impulse(0.3), loss="l0"),
              "hdr": dict(data=small, noise=Gaussian(0.1), loss="hdr"),
              "bernoulli": dict(data=small, noise=Bernoulli(0.5), val=small),
              "poisson": dict(data=small, noise=Poisson((5, 50))),
              "impulse-bf16": dict(data=small, noise=Impulse(0.2), precision="bfloat16"),
              "impulse-bf16-unmapped": dict(data=small, noise=Impulse(0.2), precision="bfloat16",
                                            normalisation=None)}[mode]
    plot = mode == "clean"  # matplotlib costs seconds here: draw the curves once
    seen = _record_steps(monkeypatch)
    result = n2n_fast.train(out_dir=tmp_path, **{**TINY, "log_every": 1, "plot": plot, **kwargs})
    objective, kinds, noises = MODE_STEPS[mode]
    assert seen["objectives"] == [objective] * 3
    assert (seen["kinds"], seen["noises"]) == (kinds, noises)
    assert seen["pred_dtypes"] == {PRED_DTYPES.get(mode, torch.float32)}
    assert [row["step"] for row in result.history] == [1, 2, 3]
    assert all(math.isfinite(row["loss"]) and row["loss"] > 0 for row in result.history)
    assert {"history.json", "history.csv", "last.pt"} | ({"history.png"} if plot else set()) <= {
        p.name for p in tmp_path.iterdir()}
    assert (result.best_checkpoint is not None) == ("val" in kwargs)
    model = n2n_fast.load(result.checkpoint)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model.cpu().float()(x))


# ---- the N2N claim on real photographs --------------------------------------------------------------------------
def _psnr(model, images, noise):
    from n2n_fast.noise import add_noise

    out = []
    for i, image in enumerate(images):
        clean = torch.from_numpy(image).float().div(255)[None, None]
        noisy = add_noise(clean, noise, seed=777, index=i)  # noise unseen in training and validation
        with torch.no_grad():
            pred = model(noisy)
        out.append((-10 * torch.log10(torch.mean((pred.clamp(0, 1) - clean) ** 2)).item(),
                    -10 * torch.log10(torch.mean((noisy - clean) ** 2)).item()))
    return np.mean(out, axis=0)


def test_n2n_matches_n2c_on_photographs(tmp_path):
    """Gaussian sigma 25/255, five grey photographs, two held out. The budget is small (200 steps of 8 crops of
    64x64, a 16-feature U-Net instead of the paper's 48, lr 1.5e-3 so it converges in the budget): measured here
    N2N and N2C both about 26.9 dB against 20.2 dB for the noisy input, the gap within +-0.05 dB."""
    train, held_out = _photos()
    noise = Gaussian(25 / 255)
    common = dict(data=train, noise=noise, steps=200, batch_size=8, crop=64, features=16, lr=1.5e-3, seed=1,
                  progress=False, log_every=50, plot=False)
    n2n = n2n_fast.train(targets="noisy", out_dir=tmp_path / "n2n", **common)
    n2c = n2n_fast.train(targets="clean", out_dir=tmp_path / "n2c", **common)
    (psnr_n2n, psnr_noisy), (psnr_n2c, _) = _psnr(n2n.model.cpu(), held_out, noise), _psnr(n2c.model.cpu(), held_out,
                                                                                           noise)
    print(f"held-out PSNR: noisy {psnr_noisy:.2f}, N2N {psnr_n2n:.2f}, N2C {psnr_n2c:.2f} dB")
    assert psnr_n2c - psnr_n2n <= 0.5
    assert psnr_n2n >= psnr_noisy + 6.0


# ---- exact resume after SIGKILL ----------------------------------------------------------------------------------
SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
import n2n_fast
import numpy as np
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (48, 52, 3), dtype=np.uint8) for _ in range(3)]
kwargs = json.loads(sys.argv[1])
n2n_fast.train(data=images, noise=n2n_fast.Gaussian((0, 0.2)), **kwargs)
"""


def _run(tmp_path, **kwargs):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), json.dumps(kwargs)], stdout=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_resume_after_sigkill_is_bitwise(tmp_path):
    args = dict(steps=40, batch_size=2, crop=32, features=8, precision="float32", log_every=1, checkpoint_every=5,
                progress=False, seed=3, plot=False)
    assert _run(tmp_path, out_dir=str(tmp_path / "whole"), **args).wait(timeout=300) == 0
    killed = _run(tmp_path, out_dir=str(tmp_path / "killed"), **args)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run finished before it could be killed: raise steps"
    stopped_at = n2n_fast.checkpoint.read(last)["step"]
    assert 0 < stopped_at < args["steps"]
    assert _run(tmp_path, out_dir=str(tmp_path / "killed"), resume=True, **args).wait(timeout=300) == 0
    whole = json.loads((tmp_path / "whole" / "history.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [r["step"] for r in resumed] == list(range(1, 41))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]  # bitwise (JSON keeps every float exactly)
    a, b = n2n_fast.load(tmp_path / "whole" / "last.pt"), n2n_fast.load(last)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_refuses_other_arguments(tmp_path, small):
    n2n_fast.train(data=small, noise=Gaussian(0.1), out_dir=tmp_path, **TINY)
    with pytest.raises(ValueError, match="resume: .* different arguments .*lr"):
        n2n_fast.train(data=small, noise=Gaussian(0.1), out_dir=tmp_path, resume=True, **{**TINY, "lr": 1e-3})


@pytest.mark.gpu
def test_cuda_steps_match_cpu(tmp_path, small):
    """A few float32 steps on CUDA against the same steps on the CPU (same data, noise, init): the losses agree to
    the tolerance of float32 convolutions computed in a different order (TF32 off)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    args = dict(data=small, noise=Gaussian(0.1), **{**TINY, "steps": 5, "log_every": 1})
    cpu = n2n_fast.train(out_dir=tmp_path / "cpu", device="cpu", **args)
    gpu = n2n_fast.train(out_dir=tmp_path / "gpu", device="cuda", **args)
    np.testing.assert_allclose([r["loss"] for r in gpu.history], [r["loss"] for r in cpu.history], rtol=1e-3)


# ---- command line ------------------------------------------------------------------------------------------------
def test_cli_noise_and_train(tmp_path, small, capsys):
    from n2n_fast.cli import main  # the noise text itself: tests/test_noise_units.py

    from PIL import Image

    for i, image in enumerate(small):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--noise", "gaussian:0-50", "--steps", "2", "--crop", "32",
                 "--features", "8", "--batch-size", "2", "--out", str(out), "--quiet", "--precision", "float32",
                 "--val", str(tmp_path / "0.png")]) == 0
    assert "trained 2 steps" in capsys.readouterr().out and (out / "best.pt").exists()
    assert main(["train", "--data", str(tmp_path), "--noise", "gaussian:0-50", "--steps", "2",
                 "--out", str(tmp_path / "other"), "--crop", "64"]) == 2
    assert "smaller than the crop" in capsys.readouterr().err


def test_demo_writes_figure_and_table(tmp_path):
    from n2n_fast.demo import HELD_OUT, demo

    table = demo(tmp_path, steps=2, features=8, crop=32, batch_size=2, n2c=True, progress=False)
    assert sorted(table) == sorted(HELD_OUT) and all(set(row) == {"noisy", "n2n", "n2c"} for row in table.values())
    assert all(15 < row["noisy"] < 25 for row in table.values())  # sigma 25/255 on photographs: about 20 dB
    figure = n2n_fast.read_image(tmp_path / "demo.png")[0]
    assert figure.shape[1] == 4 * 600 and figure.shape[2] == 3  # noisy | N2N | N2C | clean, widest is coffee
    assert "| mean |" in (tmp_path / "psnr.md").read_text() and (tmp_path / "psnr.csv").exists()


@pytest.mark.gpu
def test_cuda_defaults_track_float32(tmp_path, small):
    """train() with its defaults on CUDA (bf16 autocast, channels_last, the fused Triton objective) against the same
    20 steps in float32. One bf16 step perturbs the loss by about 2**-8 relative (8-bit mantissa of the activations,
    float32 accumulation); over 20 steps the trajectories drift apart slowly, so each step's loss must agree within
    5% (a loss computed on the wrong target or without noise would be off by far more: its scale is sigma**2)."""
    args = dict(data=small, noise=Gaussian(0.1), steps=20, batch_size=2, crop=32, features=8, progress=False,
                plot=False, log_every=1, device="cuda")
    fast = n2n_fast.train(out_dir=tmp_path / "defaults", **args)
    exact = n2n_fast.train(out_dir=tmp_path / "fp32", precision="float32", channels_last=False, **args)
    assert fast.model.enc_conv0.weight.dtype == torch.float32  # autocast, not a bf16 model
    np.testing.assert_allclose([r["loss"] for r in fast.history], [r["loss"] for r in exact.history], rtol=0.05)


# ---- users' data is safe: no clobbered run, Ctrl-C checkpoints, extend, divergence, optional extras -------------
def test_folder_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path, small):
    args = dict(data=small, noise=Gaussian(0.1), **TINY)
    n2n_fast.train(out_dir=tmp_path, val=small[:1], val_every=1, **args)
    assert (tmp_path / "best.pt").exists()
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run .*last.pt.*resume=True.*overwrite=True"):
        n2n_fast.train(out_dir=tmp_path, **args)
    assert (tmp_path / "last.pt").read_bytes() == before  # untouched
    n2n_fast.train(out_dir=tmp_path, overwrite=True, **{**args, "features": 4})
    assert not (tmp_path / "best.pt").exists()  # the stale best.pt of the replaced run went with it
    assert ckpt.read(tmp_path / "last.pt")["model_args"]["features"] == 4


@pytest.fixture
def callers_handlers():
    """SIGINT and SIGTERM handlers of the caller's own, installed for the test: train() must give back the ones
    it found, whatever they are (Python's default, or SIG_IGN in a shell's background job, where a check against
    the default would fail for no fault of train())."""
    def callers_sigint(signum, frame):
        raise AssertionError("the caller's SIGINT handler ran while train() owned SIGINT")

    def callers_sigterm(signum, frame):
        raise AssertionError("the caller's SIGTERM handler ran while train() owned SIGTERM")

    before = {sig: signal.signal(sig, handler)
              for sig, handler in ((signal.SIGINT, callers_sigint), (signal.SIGTERM, callers_sigterm))}
    yield {signal.SIGINT: callers_sigint, signal.SIGTERM: callers_sigterm}
    for sig, handler in before.items():
        signal.signal(sig, handler)


def _handlers():
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def test_interrupt_checkpoints_at_a_step_boundary_and_resumes_bitwise(tmp_path, small, monkeypatch,
                                                                      callers_handlers):
    import importlib

    train_module = importlib.import_module("n2n_fast.training.step")

    args = dict(data=small, noise=Gaussian(0.1), **{**TINY, "steps": 6, "log_every": 1})
    whole = n2n_fast.train(out_dir=tmp_path / "whole", **args)
    assert _handlers() == callers_handlers  # restored after a run that ends normally
    real_step = train_module.train_step
    sent = []

    def step_then_ctrl_c(run, step):
        loss = real_step(run, step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-run; the loop stops before step 3
            sent.append(step)
        return loss

    monkeypatch.setattr(train_module, "train_step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="stopped at step 3") as stopped:
        n2n_fast.train(out_dir=tmp_path / "cut", **args)
    assert sent == [2]
    assert _handlers() == callers_handlers  # restored on the way out of an interrupted run too
    assert ckpt.read(stopped.value.checkpoint)["step"] == 3
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = n2n_fast.train(out_dir=tmp_path / "cut", resume=True, **args)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert _handlers() == callers_handlers


def test_resume_with_more_steps_extends_a_finished_run(tmp_path, small):
    args = dict(data=small, noise=Gaussian(0.1), out_dir=tmp_path, **{**TINY, "log_every": 1})
    n2n_fast.train(**args)
    longer = n2n_fast.train(resume=True, **{**args, "steps": 5})
    assert [row["step"] for row in longer.history] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="steps: the run in out_dir already made 5 steps"):
        n2n_fast.train(resume=True, **{**args, "steps": 4})


def test_non_finite_loss_stops_keeping_the_last_good_checkpoint(tmp_path, small):
    args = dict(data=small, noise=Gaussian(0.1), **{**TINY, "steps": 8, "log_every": 1, "checkpoint_every": 1})
    with pytest.raises(FloatingPointError, match="training diverged: loss (nan|inf)"):
        n2n_fast.train(out_dir=tmp_path, lr=1e30, **args)
    state = ckpt.read(tmp_path / "last.pt")
    assert all(math.isfinite(row["loss"]) for row in state["history"]) and state["step"] < 8


def test_core_install_trains_without_matplotlib_scipy_and_skimage(tmp_path):
    """The optional extras only add features: train and denoise with their defaults when they are missing."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('matplotlib', 'scipy', 'skimage'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, n2n_fast\n"
        "images = [np.random.default_rng(0).integers(0, 256, (40, 44, 3), dtype=np.uint8)]\n"
        f"result = n2n_fast.train(data=images, noise=n2n_fast.Gaussian(0.1), steps=2, batch_size=2, crop=32,\n"
        f"                        features=8, out_dir={str(tmp_path)!r}, progress=False)\n"
        "out = n2n_fast.denoise(result.model, images[0])\n"
        "assert out.shape == images[0].shape and out.dtype == np.uint8\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    assert (tmp_path / "last.pt").exists() and not (tmp_path / "history.png").exists()


def test_pairs_of_identical_images_are_refused(tmp_path, small):
    with pytest.raises(ValueError, match="pairs\\[1\\]: the same images as pairs\\[0\\]"):
        n2n_fast.train(pairs=(small, [a.copy() for a in small]), out_dir=tmp_path, **TINY)


def test_cli_version_threads_overwrite_and_pairs_with_noise(tmp_path, small, capsys):
    from n2n_fast.cli import main

    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("n2n_fast ")
    folder = tmp_path / "data"
    folder.mkdir()
    for i, image in enumerate(small):
        n2n_fast.write_image(str(folder / f"{i}.png"), image / 255.0)
    base = ["train", "--data", str(folder), "--noise", "gaussian:25", "--steps", "2", "--batch-size", "2",
            "--crop", "32", "--features", "8", "--precision", "float32", "--quiet", "--threads", "1",
            "--out", str(tmp_path / "run")]
    assert main(base) == 0
    assert main(base) == 2 and "already holds a run" in capsys.readouterr().err
    assert main(base + ["--overwrite"]) == 0
    pairs = ["train", "--pairs", str(folder), str(folder), "--noise", "gaussian:25", "--steps", "1",
             "--out", str(tmp_path / "p")]
    assert main(pairs) == 2 and "--noise: 'gaussian:25' would be ignored" in capsys.readouterr().err


def test_validation_uses_one_fixed_level_and_the_datas_range(tmp_path):
    from n2n_fast.training.data import validation_noise

    assert validation_noise(Gaussian((0.0, 0.2))) == Gaussian(0.1)
    assert validation_noise(n2n_fast.PoissonGaussian((10.0, 30.0), 0.01)) == n2n_fast.PoissonGaussian(20.0, 0.01)
    # 16-bit counts of 100-4000: PSNR relative to the full 65535 scale would flatter a useless model
    rng = np.random.default_rng(0)
    dim = [rng.integers(100, 4000, (40, 44), dtype=np.uint16) for _ in range(2)]
    result = n2n_fast.train(data=dim, noise=Poisson(30.0), val=dim[:1], val_every=1, out_dir=tmp_path,
                            **{**TINY, "steps": 1, "crop": 32})
    # measured 4.5 dB; relative to the full scale (the old behaviour) the same output scored 24.5 dB more
    assert result.history[-1]["val_psnr"] < 15


def test_cli_noise_in_the_datas_units_and_gain(tmp_path, small, capsys):
    """16-bit data: sigma in 16-bit counts by default, a Poisson peak from the gain; what was used is printed."""
    from n2n_fast.cli import main

    folder = tmp_path / "counts"
    folder.mkdir()
    for i, image in enumerate(small):
        n2n_fast.write_image(str(folder / f"{i}.tif"), image[..., 0] / 255.0 * 0.06, dtype=np.uint16)
    base = ["train", "--data", str(folder), "--steps", "1", "--crop", "32", "--features", "8", "--batch-size", "2",
            "--quiet", "--precision", "float32"]
    assert main(base + ["--noise", "gaussian:100", "--out", str(tmp_path / "a")]) == 0
    assert "Gaussian(sigma=0.00152" in capsys.readouterr().out  # 100 / 65535, read in 16bit units
    assert main(base + ["--noise", "poisson", "--gain", "2", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "Poisson(peak=32767.5)" in out and "full scale 65535 / gain 2" in out
    assert main(base + ["--noise", "gaussian:25", "--gain", "2", "--out", str(tmp_path / "c")]) == 2
