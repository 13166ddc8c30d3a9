"""n2n_fast.train(): the Noise2Noise training loop, one read from top to bottom.

Modes (docs/design.md §1): synthetic N2N (`data` clean + `noise`: the target is a second, independent noisy copy), N2C
(`targets="clean"`, the baseline), real noisy pairs (`pairs=(a, b, ...)`), Neighbor2Neighbor
(`targets="neighbor"` on single noisy images). Every random choice is Philox keyed by the seed and counted by
(step, global sample index) (data.py, noise.py), so the run is a pure function of its arguments: resuming from a
checkpoint continues the exact trajectory, and N ranks with batch b draw what one process with batch N*b draws.
Under torchrun each rank trains on its own samples through DistributedDataParallel; rank 0 logs and writes.
"""
import contextlib
import importlib.util
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import distributed as dist
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import data as training_data
from . import graph_step, schedule
from . import history as history_files
from . import loss as losses
from .conventions import LOSS_KINDS as LOSSES
from .conventions import TRAIN_TARGETS as TARGETS
from .conventions import precision_name, psnr
from .device_crops import DeviceCrops
from .noise import add_noise, noisy_pair
from .unet import UNet
from .value_range import check_value_range

VAL_SEED = 2018  # validation noise is fixed across runs and seeds, so PSNR curves are comparable
BETAS, EPS = (0.9, 0.99), 1e-8  # the paper's Adam settings


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained network, eval mode, on the training device
    history: list  # one dict per log step: step, loss, lr, images_per_s, seconds (+ val_psnr when validated)
    checkpoint: str  # path of the last checkpoint
    best_checkpoint: str = None  # path of the best-by-validation-PSNR checkpoint (None without val)


def _check(name, value, kind, low=None):
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value!r}")


def _autocast_dtype(precision, device):
    """bf16 where the hardware computes it natively (CUDA with bf16; CPUs with AVX512-BF16 or AMX), else None."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return None


def check_device(device, name="device"):
    """A torch.device from None / "cpu" / "cuda" / "cuda:N" / a torch.device, or a ValueError naming `name`."""
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name}: {device!r} is not a device; accepted: 'cpu', 'cuda', 'cuda:N'") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: {device.type!r} devices are not supported; accepted: 'cpu', 'cuda', 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: {str(device)!r} asked for, but no CUDA GPU is visible (use 'cpu')")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{name}: {str(device)!r}, but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def _distributed(device):
    """(rank, world size, device, whether we started the process group) under torchrun, else (0, 1, device, False)."""
    device = check_device(device)
    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = str(device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
        started = True
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":  # kernels launch on the current device: make it this run's (cuda:1, torchrun ranks)
        torch.cuda.set_device(device)
    return rank, world, device, started


def _writable(out_dir):
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise ValueError(f"out_dir: cannot write to {str(out_dir)!r} ({exc.strerror or exc})") from exc


@torch.no_grad()
def _val_psnr(net, val, autocast, memory_format):
    """Mean PSNR (dB) of the network's outputs, clipped to [0, 1], over the validation (noisy, clean) pairs, each
    relative to its clean image's own range (max - min): 16-bit data holding counts of 100-4000 out of 65535 would
    otherwise score ~45 dB while worse than its input."""
    net.eval()
    total = 0.0
    for noisy, clean in val:
        with autocast():
            pred = net(noisy.contiguous(memory_format=memory_format))
        data_range = max(float(clean.max() - clean.min()), 1e-6)
        total += psnr(torch.mean((pred.float().clamp(0, 1) - clean) ** 2).item(), peak=data_range)
    net.train()
    return total / len(val)


@dataclass
class Run:
    """Everything one training step reads: the model, its optimizer and the data, fixed before the loop."""
    net: torch.nn.Module  # the U-Net itself (checkpoints, validation, the Neighbor2Neighbor no-grad pass)
    model: torch.nn.Module  # what the step calls: net, or net wrapped by DDP / torch.compile
    optimizer: torch.optim.Optimizer
    objective: object  # one of OBJECTIVES: (run, step, index, picks, extra) -> loss tensor
    stores: list  # data.ImageStore per realisation (one unless pairs=)
    noise: object
    loss: str
    seed: int
    steps: int
    batch_size: int
    crop: int
    lr: float
    rampdown: float
    neighbor_weight: float
    rank: int
    memory_format: torch.memory_format
    autocast: object  # a context-manager factory: bf16 autocast or nothing
    step_t: torch.Tensor = None  # 0-d int64 on the device: the step the kernels and the crop picks read
    one: torch.Tensor = None  # 0-d float32 1 on the device: the objective's backward seed
    device_crops: list = None  # DeviceCrops per store, or None when a store is not resident (memmaps)
    graphed: object = None  # a graph_step.GraphedStep once the step is captured
    capturing: bool = False  # warming up or capturing: gradients are zeroed in place, never freed

    def __post_init__(self):
        device = self.stores[0].device
        self.step_t = torch.zeros((), dtype=torch.int64, device=device)
        self.one = torch.ones((), dtype=torch.float32, device=device)  # not a ones_like (a launch) at every step
        usable = all(DeviceCrops.usable(store) for store in self.stores)
        self.device_crops = ([DeviceCrops(store, training_data.DATA_KEY, training_data.SAMPLE)
                              for store in self.stores] if usable else None)

    def picks(self, step, index):
        """This step's crop picks: on the host when the images are not resident; on the device, what the picks are
        drawn from where they are cut (DeviceCrops.crops: one launch on Triton)."""
        if self.device_crops:
            return self.seed, self.step_t, index, self.batch_size
        return training_data.draw_crops(self.seed, step, index, self.batch_size, self.stores[0].sizes, self.crop)

    def cut(self, realisation, picks):
        if self.device_crops:
            return self.device_crops[realisation].crops(*picks, self.crop)
        return self.stores[realisation].crops(picks, self.crop)

    def loss_fn(self, pred, target, **extra):
        return getattr(losses, f"{self.loss}_loss")(pred, target, **extra)

    def network_input(self, batch):
        return batch.contiguous(memory_format=self.memory_format)


# ---- the objectives, one per mode: (run, step, index of the rank's first sample, crop picks, loss extras) -> loss
def _synthetic_n2n(run, step, index, picks, extra):
    """Input and target are independent noisy copies of the same clean crops; the fused objective regenerates the
    target inside the loss (n2n_fast.n2n_loss decides fused or not)."""
    clean = run.cut(0, picks)
    noisy = add_noise(clean, run.noise, seed=run.seed, step=run.step_t, index=index, check_finite=False)
    pred = run.model(run.network_input(noisy))
    return losses.n2n_loss(pred, clean, run.noise, seed=run.seed, step=run.step_t, index=index, kind=run.loss,
                           **extra)


def _noise2clean(run, step, index, picks, extra):
    """The baseline: noisy input, clean target."""
    clean = run.cut(0, picks)
    noisy = add_noise(clean, run.noise, seed=run.seed, step=run.step_t, index=index, check_finite=False)
    return run.loss_fn(run.model(run.network_input(noisy)), clean, **extra)


def _real_pairs(run, step, index, picks, extra):
    """Two different realisations of the same crop: one the input, the other the target."""
    if run.device_crops:
        first, second = run.device_crops[0].realisation_pairs(run.seed, run.step_t, index, run.batch_size,
                                                              len(run.stores), training_data.PAIR)
        every = torch.stack([run.cut(k, picks) for k in range(len(run.stores))])  # (R, B, C, H, W)
        rows = torch.arange(run.batch_size, device=every.device)
        inputs, target = every[first, rows], every[second, rows]
    else:
        which = training_data.draw_realisations(run.seed, step, index, len(picks), len(run.stores))
        inputs, target = training_data.cut_pairs(run.stores, picks, which, run.crop)
    return run.loss_fn(run.model(run.network_input(inputs)), target, **extra)


def _neighbor2neighbor(run, step, index, picks, extra):
    """Neighbor2Neighbor on single noisy images: two sub-images of neighbouring pixels, plus its regulariser."""
    noisy = run.cut(0, picks)
    if run.noise is not None:
        noisy = add_noise(noisy, run.noise, seed=run.seed, step=run.step_t, index=index, check_finite=False)
    choice = training_data.neighbor_choice(noisy.shape, run.seed, run.step_t, index, noisy.device)
    g1, g2 = training_data.neighbor_split(noisy, choice)
    with torch.no_grad():  # the regulariser's g1(f(y)) - g2(f(y)) is a fixed target (stop gradient)
        f1, f2 = training_data.neighbor_split(run.net(run.network_input(noisy)).float(), choice)
    pred = run.model(run.network_input(g1))
    # the weight from the device step: a replayed graph computes each step's own
    weight = schedule.neighbor_weight_on_device(run.step_t, run.steps, run.neighbor_weight)
    return run.loss_fn(pred, g2, **extra) + weight * losses.l2_loss(pred, g2 + (f1 - f2))


OBJECTIVES = {"noisy": _synthetic_n2n, "clean": _noise2clean, "pairs": _real_pairs, "neighbor": _neighbor2neighbor}


def train_step(run, step):
    """One optimisation step at `step`; returns the loss as a 0-d device tensor (no host sync)."""
    if run.graphed is not None:
        return run.graphed(step)
    lr_now = schedule.learning_rate(step, run.steps, run.lr, run.rampdown)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_now
    run.step_t.fill_(step)  # the kernels and the crop picks read the step from device memory
    return step_body(run, step)


def step_body(run, step):
    """The step after its learning rate and run.step_t are set: what a CUDA graph captures (graph_step.py)."""
    # the annealed exponent from the device step (read by the loss kernels): a replayed graph anneals it too
    extra = {"gamma": schedule.l0_gamma_on_device(run.step_t, run.steps)} if run.loss == "l0" else {}
    index = run.rank * run.batch_size  # global index of this rank's first sample in the step
    picks = run.picks(step, index)
    run.optimizer.zero_grad(set_to_none=run.graphed is None and not run.capturing)
    with run.autocast():
        objective = run.objective(run, step, index, picks, extra)
    objective.backward(run.one)
    run.optimizer.step()
    return objective.detach()


def _check_arguments(a):
    """Every argument check of train(), before anything is loaded or written; returns the normalised precision."""
    if (a["data"] is None) == (a["pairs"] is None):
        raise ValueError("data, pairs: give exactly one (data: clean or noisy images; pairs: aligned noisy "
                         f"realisations), got {'both' if a['data'] is not None else 'neither'}")
    for name, accepted in (("targets", TARGETS), ("loss", LOSSES)):
        if a[name] not in accepted:
            raise ValueError(f"{name}: expected one of {accepted}, got {a[name]!r}")
    precision = precision_name(a["precision"])
    for name, kind, low in (("steps", int, 1), ("batch_size", int, 1), ("crop", int, 2), ("lr", float, 0),
                            ("seed", int, 0), ("features", int, 1), ("rampdown", float, 0),
                            ("neighbor_weight", float, 0), ("log_every", int, 1), ("checkpoint_every", int, 1)):
        _check(name, a[name], kind, low)
    if a["features"] > 1024:  # 10**5 would allocate hundreds of GB after the data loaded
        raise ValueError(f"features: expected at most 1024 (the paper uses 48), got {a['features']}")
    check_device(a["device"])
    if a["val_every"] is not None:
        _check("val_every", a["val_every"], int, 1)
    if a["seed"] >= 2**63 or a["rampdown"] > 1 or a["lr"] == 0:
        raise ValueError(f"seed must be < 2**63, rampdown <= 1, lr > 0; got seed={a['seed']}, "
                         f"rampdown={a['rampdown']}, lr={a['lr']}")
    for name in ("resume", "compile", "progress"):
        if not isinstance(a[name], bool):
            raise TypeError(f"{name}: expected a bool, got {type(a[name]).__name__} {a[name]!r}")
    if a["channels_last"] is not None and not isinstance(a["channels_last"], bool):
        raise TypeError(f"channels_last: expected None (auto) or a bool, got {a['channels_last']!r}")
    if a["pairs"] is not None and a["targets"] != "noisy":
        raise ValueError(f"targets: pairs train noisy -> noisy; targets={a['targets']!r} needs data=")
    if a["data"] is not None and a["noise"] is None and a["targets"] != "neighbor":
        raise ValueError(f"noise: targets={a['targets']!r} synthesises noisy inputs from clean data, so it needs a "
                         "noise model (e.g. n2n_fast.Gaussian((0, 50 / 255)))")
    if a["targets"] == "neighbor" and a["crop"] % 2:
        raise ValueError(f"crop: Neighbor2Neighbor splits 2x2 cells, so crop must be even, got {a['crop']}")
    if a["out_dir"] is None:
        raise ValueError("out_dir: required (checkpoints and history go there)")
    val = a["val"]
    if val is not None and a["noise"] is None and not (isinstance(val, tuple) and len(val) == 2):
        raise ValueError("val: without a noise model, give val=(noisy, clean)")
    return precision


def _capture(run, graph, device, world, compiled, first_step):
    """Capture the step as a CUDA graph when `graph` asks for it and it can be (graph_step.refusal)."""
    if graph not in ("auto", True, False):
        raise ValueError(f"graph: expected 'auto', True or False, got {graph!r}")
    why_not = graph_step.refusal(run, device, world, compiled)
    if graph is True and why_not:
        raise ValueError(f"graph: the step cannot be captured as a CUDA graph: {why_not}")
    if graph is False or why_not or first_step >= run.steps:
        return
    run.capturing = True
    run.graphed = graph_step.GraphedStep(run, first_step, step_body)
    run.capturing = False


def _model(channels, features, seed, device, memory_format):
    with torch.random.fork_rng(devices=[]):  # He init from the seed, leaving the caller's RNG alone
        torch.manual_seed(seed)
        net = UNet(channels, features=features)
    return net.to(device=device, memory_format=memory_format)


def _resume(net, optimizer, path, train_args):
    """(start step, history, best PSNR) from the checkpoint at `path`, refusing one made with other arguments."""
    state = ckpt.read(path, "resume")
    if train_args["steps"] < state["step"]:
        raise ValueError(f"steps: the run in out_dir already made {state['step']} steps; steps={train_args['steps']} "
                         "would go back (give at least as many to resume or extend it)")
    # more steps than the checkpoint's run extends it: every other argument must match
    differ = {k: (state["train_args"].get(k), v) for k, v in train_args.items()
              if k != "steps" and state["train_args"].get(k) != v}
    if differ:
        raise ValueError("resume: the checkpoint in out_dir was made with different arguments (checkpoint, now): "
                         + "; ".join(f"{k}: {a!r}, {b!r}" for k, (a, b) in differ.items()))
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["history"], state.get("best_psnr")


def _history_row(run, window_mean, window_steps, window_start, world, done):
    """A history row for the steps since the last one; the loss is averaged over ranks (one host sync)."""
    if world > 1:
        dist.all_reduce(window_mean)
        window_mean = window_mean / world
    elapsed = time.perf_counter() - window_start
    return {"step": done, "loss": window_mean.item(), "lr": schedule.learning_rate(done - 1, run.steps, run.lr,
                                                                                    run.rampdown),
            "images_per_s": window_steps * run.batch_size * world / max(elapsed, 1e-9), "seconds": elapsed}


def _save(run, train_args, history, best_psnr, done, out_dir, improved):
    state = {"model": {k: v.detach().cpu() for k, v in run.net.state_dict().items()},
             "model_args": run.net.arguments(), "train_args": train_args, "step": done,
             "optimizer": run.optimizer.state_dict(),
             "rng": {"seed": run.seed, "step": done, "data_key": training_data.DATA_KEY},
             "history": history, "best_psnr": best_psnr}
    ckpt.save(state, out_dir / "last.pt")
    if improved:
        ckpt.save(state, out_dir / "best.pt")
    history_files.write(history, out_dir)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped train() at a step boundary, after writing a checkpoint there."""

    def __init__(self, step, checkpoint):
        super().__init__(f"training stopped at step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, str(checkpoint)


class _StopRequest:
    """While training: the first SIGINT/SIGTERM asks the loop to stop at the next step boundary (a half-made
    optimizer step must not be checkpointed); a second SIGINT interrupts at once."""

    def __init__(self):
        self.requested, self._previous = False, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


RUN_FILES = ("last.pt", "best.pt", "history.json", "history.csv", "history.png")


def _check_run_folder(out_dir, resume, overwrite):
    """A folder holding a run is never overwritten by accident."""
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__} {overwrite!r}")
    if out_dir is None or not Path(out_dir).is_dir():
        return
    found = [name for name in RUN_FILES if (Path(out_dir) / name).exists()]
    if found and not resume and not overwrite:
        raise FileExistsError(f"out_dir: {str(out_dir)!r} already holds a run ({', '.join(found)}); resume=True "
                              "continues it, overwrite=True replaces it, or choose another folder")


def _remove_run(out_dir):
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _plot_wanted(plot):
    """Whether to write history.png: None means when matplotlib is installed (an optional extra)."""
    if plot is not None and not isinstance(plot, bool):
        raise TypeError(f"plot: expected None (when matplotlib is installed) or a bool, got {plot!r}")
    try:
        installed = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as missing
        installed = False
    if plot and not installed:
        raise ValueError("plot: True needs matplotlib, which is not installed (pip install 'n2n_fast[plot]' or "
                         "matplotlib); plot=None skips the figure when it is missing")
    return installed if plot is None else plot


def _loop(run, train_args, history, best_psnr, start, out_dir, val_pairs, world, every, progress):
    """Steps start .. run.steps - 1, each followed by logging, validation and checkpoints when due (the only host
    syncs); appends to `history`; returns the best validation PSNR."""
    bar = tqdm(total=run.steps, initial=start, disable=not progress or run.rank != 0, unit="step",
               dynamic_ncols=True)
    window, window_steps, window_start = torch.zeros((), device=run.stores[0].device), 0, time.perf_counter()
    with _StopRequest() as stop:
        for step in range(start, run.steps):
            if stop.requested:  # Ctrl-C / SIGTERM: leave at a step boundary with a checkpoint there
                _save(run, train_args, history, best_psnr, step, out_dir, improved=False)
                raise TrainingInterrupted(step, out_dir / "last.pt")
            window += train_step(run, step)
            window_steps += 1
            done = step + 1
            is_ckpt = done % every["checkpoint"] == 0 or done == run.steps
            is_val = bool(val_pairs) and (done % every["val"] == 0 or done == run.steps)
            if done % every["log"] == 0 or is_ckpt or is_val:
                row = _history_row(run, window / window_steps, window_steps, window_start, world, done)
                if not math.isfinite(row["loss"]):
                    raise FloatingPointError(
                        f"training diverged: loss {row['loss']} in the steps up to {done}; the last checkpoint in "
                        f"{str(out_dir)!r} (written while the loss was finite) is kept. Lower lr= (now {run.lr}) or "
                        "check the data")
                if is_val and run.rank == 0:
                    row["val_psnr"] = _val_psnr(run.net, val_pairs, run.autocast, run.memory_format)
                history.append(row)
                bar.set_postfix({k: f"{row[k]:.4g}" for k in ("loss", "val_psnr", "images_per_s") if k in row})
                window.zero_()
                window_steps, window_start = 0, time.perf_counter()
            bar.update(1)
            if is_ckpt and run.rank == 0:
                improved = history[-1].get("val_psnr") is not None and (best_psnr is None
                                                                       or history[-1]["val_psnr"] > best_psnr)
                best_psnr = history[-1]["val_psnr"] if improved else best_psnr
                _save(run, train_args, history, best_psnr, done, out_dir, improved)
    bar.close()
    return best_psnr


def train(*, data=None, noise=None, pairs=None, targets="noisy", loss="l2", steps, batch_size=4, crop=256,
          lr=3e-4, seed=0, out_dir, resume=False, val=None, device=None, precision="auto", compile=False,
          features=48, rampdown=0.3, neighbor_weight=2.0, log_every=10, val_every=None, checkpoint_every=1000,
          channels_last=None, progress=True, plot=None, overwrite=False, axes=None, graph="auto", value_range=None):
    """Train a U-Net denoiser; returns a TrainResult (.model, .history, .checkpoint, .best_checkpoint).

    data / pairs / val: a folder, an image path, a list of paths or (H, W[, C]) arrays, or an array ((N, H, W, C)
      is a stack); pairs is a tuple of >= 2 such sources holding aligned realisations of the same scenes; val is
      clean images (noised once with `noise` at a fixed seed, a (low, high) range at its midpoint) or a tuple
      (noisy, clean); validation PSNR is relative to each clean image's range (max - min).
    axes: the layout of the files and arrays given ("YX", "YXC", "CYX", "ZYX", "TYX", "ZYXC", ...; see
      n2n_fast/axes.py): Z/T stacks train as sets of 2-D images; ambiguous 3-D/4-D data without it is refused.
    value_range: the range of float images (n2n_fast/value_range.py): None ([0, 1]; a maximum above 4 is refused),
      (low, high) (scaled to [0, 1] on the way in; noise levels stay in [0, 1] units) or "hdr" (as they are).
    noise: an n2n_fast.noise model (Gaussian, Poisson, ...); needed with `data` unless targets="neighbor" on data
      that is already noisy. loss: "l2" | "l1" | "l0" (gamma annealed 2 -> 0) | "hdr".
    steps, batch_size (per rank), crop (square, pixels), lr (Adam, cos² ramp-down over the last `rampdown`), seed.
    precision: "auto" (bf16 autocast where native) | "float32" | "bfloat16"; compile: torch.compile the network;
      channels_last: None (auto: with bf16 or on CUDA) or a bool.
    features: U-Net width (48 in the paper). neighbor_weight: the Neighbor2Neighbor regulariser's final weight.
    log_every / val_every / checkpoint_every: steps between history rows / validations / checkpoints (plus at the
      end); resume=True continues from out_dir/last.pt when it exists (with more steps it extends a finished
      run; the learning-rate ramp-down then differs from a run started with those steps, so it is not bitwise the
      same). A folder holding a run is refused unless resume=True or overwrite=True (which removes that run first).
    plot: write history.png at the end (None: when matplotlib is installed; True: require it).
    graph: "auto" (on CUDA, capture the whole step once as a CUDA graph and replay it, where it can be:
      n2n_fast/graph_step.py says where not and why), True (require it) or False.
    Ctrl-C / SIGTERM stop at the end of the current step, write a checkpoint there (resume=True continues it
    bitwise) and raise TrainingInterrupted. A non-finite loss (seen at log steps) stops with FloatingPointError,
    keeping the last good checkpoint."""
    precision = _check_arguments(locals())
    value_range = check_value_range(value_range)
    val_every = checkpoint_every if val_every is None else val_every
    plot = _plot_wanted(plot)
    _check_run_folder(out_dir, resume, overwrite)
    rank, world, device, started = _distributed(device)
    stores, images = training_data.training_stores(data, pairs, crop, device, axes, value_range)
    channels = images[0].shape[2]
    if noise is not None:  # the noise model checks its own parameters; fail here, before any training
        noisy_pair(torch.rand(1, channels, 4, 4, device=device), noise, seed=seed)
    val_pairs = training_data.validation_pairs(val, noise, channels, device, VAL_SEED, axes, value_range)
    _writable(out_dir)
    out_dir = Path(out_dir)
    if overwrite and not resume:
        _remove_run(out_dir)

    amp = _autocast_dtype(precision, device)
    use_channels_last = channels_last if channels_last is not None else amp is not None or device.type == "cuda"
    memory_format = torch.channels_last if use_channels_last else torch.contiguous_format
    net = _model(channels, features, seed, device, memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=BETAS, eps=EPS, fused=True)
    train_args = {"mode": "pairs" if pairs is not None else targets, "loss": loss, "steps": steps,
                  "batch_size": batch_size, "world_size": world, "crop": crop, "lr": lr, "rampdown": rampdown,
                  "seed": seed, "noise": repr(noise), "features": features, "precision": str(amp or "float32"),
                  "neighbor_weight": neighbor_weight, "data": training_data.describe(images),
                  "realisations": len(stores), "value_range": value_range}
    start, history, best_psnr = 0, [], None
    if resume and (out_dir / "last.pt").exists():
        start, history, best_psnr = _resume(net, optimizer, out_dir / "last.pt", train_args)
    model = net if world == 1 else torch.nn.parallel.DistributedDataParallel(net)
    run = Run(net, torch.compile(model) if compile else model, optimizer, OBJECTIVES[train_args["mode"]], stores,
              noise, loss, seed, steps, batch_size, crop, lr, rampdown, neighbor_weight, rank, memory_format,
              # no weight-cast cache: a replayed CUDA graph would read casts freed after capture
              (lambda: torch.autocast(device.type, dtype=amp, cache_enabled=False)) if amp is not None
              else contextlib.nullcontext)
    _capture(run, graph, device, world, compile, start)

    # ---- the loop: one step, then logging, validation and checkpoints (the only host syncs)
    best_psnr = _loop(run, train_args, history, best_psnr, start, out_dir, val_pairs, world,
                      dict(log=log_every, val=val_every, checkpoint=checkpoint_every), progress)
    if rank == 0 and history:
        history_files.write(history, out_dir)
        if plot:
            history_files.plot(history, out_dir / "history.png")
    if started:
        dist.destroy_process_group()
    best = out_dir / "best.pt"
    return TrainResult(net.eval(), history, str(out_dir / "last.pt"), str(best) if best_psnr is not None else None)


def load(path):
    """The U-Net stored in checkpoint `path` (nn.Module, eval mode, on the CPU)."""
    return load_checkpoint(path)[0]


def load_checkpoint(path, name="path"):
    """(the U-Net in eval mode on the CPU, the checkpoint dict) from `path`, or a ValueError / TypeError naming
    `name`: not a checkpoint, weights that do not fit its model arguments, non-finite weights."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected the path of a checkpoint file, got {type(path).__name__} {path!r}")
    state = ckpt.read(path, name)
    try:
        net = UNet(**state["model_args"])
        net.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name}: the weights in {str(path)!r} do not fit its model arguments "
                         f"{state['model_args']!r} ({type(exc).__name__}: {str(exc)[:300]})") from exc
    broken = [key for key, value in state["model"].items() if value.is_floating_point()
              and not bool(torch.isfinite(value).all())]
    if broken:
        raise ValueError(f"{name}: {str(path)!r} holds non-finite weights ({', '.join(broken[:3])}"
                         f"{', ...' if len(broken) > 3 else ''}): the run it came from diverged")
    return net.eval(), state
