"""n2n_fast.train(): the Noise2Noise training loop, one read from top to bottom (entry first).

Modes (docs/usage.md): synthetic N2N (`data` clean + `noise`: the target is a second, independent noisy copy), N2C
(`targets="clean"`, the baseline), real noisy pairs (`pairs=(a, b, ...)`), Neighbor2Neighbor
(`targets="neighbor"` on single noisy images). Every random choice is Philox keyed by the seed and counted by
(step, global sample index) (n2n_fast/training/data.py, n2n_fast/noise.py), so the run is a pure function of its
arguments: resuming from a checkpoint continues the exact trajectory, and N ranks with batch b draw what one process
with batch N*b draws. Under torchrun each rank trains on its own samples through DistributedDataParallel; rank 0
logs and writes. The step itself is in step.py, the argument checks in arguments.py, the run folder in
run_folder.py.
"""
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import distributed as dist
from tqdm.auto import tqdm

from ..checkpoint import load  # noqa: F401 (n2n_fast.load: the trained network back from its checkpoint)
from ..conventions import psnr
from ..devices import check_device
from ..noise import noisy_pair
from ..value_range import check_value_range
from . import data as training_data
from . import history as history_files
from . import schedule
from . import step as steps_module
from . import volumes
from .arguments import check_arguments, plot_wanted
from .interrupt import StopRequest, TrainingInterrupted
from .normalisation import choose_map, describe_source
from .run_folder import check_run_folder, check_writable, remove_run, resume_run, save_run

VAL_SEED = 2018  # validation noise is fixed across runs and seeds, so PSNR curves are comparable


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained network, eval mode, on the training device
    history: list  # one dict per log step: step, loss, lr, images_per_s, seconds (+ val_psnr when validated)
    checkpoint: str  # path of the last checkpoint
    best_checkpoint: str = None  # path of the best-by-validation-PSNR checkpoint (None without val)


def train(*, data=None, noise=None, pairs=None, targets="noisy", loss="l2", steps, batch_size=4, crop=256,
          lr=3e-4, seed=0, out_dir, resume=False, val=None, device=None, precision="auto", compile=False,
          features=48, rampdown=0.3, neighbor_weight=2.0, log_every=10, val_every=None, checkpoint_every=1000,
          channels_last=None, progress=True, plot=None, overwrite=False, axes=None, graph="auto", value_range=None,
          normalisation="auto", dims=2):
    """Train a U-Net denoiser; returns a TrainResult (.model, .history, .checkpoint, .best_checkpoint).

    data / pairs / val: a folder, an image path, a list of paths or (H, W[, C]) arrays, or an array ((N, H, W, C)
      is a stack); pairs is a tuple of >= 2 such sources holding aligned realisations of the same scenes; val is
      clean images (noised once with `noise` at a fixed seed, a (low, high) range at its midpoint) or a tuple
      (noisy, clean); validation PSNR is relative to each clean image's range (max - min).
    axes: the layout of the files and arrays given ("YX", "YXC", "CYX", "ZYX", "TYX", "ZYXC", ...; see
      n2n_fast/axes.py): Z/T stacks train as sets of 2-D images; ambiguous 3-D/4-D data without it is refused.
    dims: 2 (images) or 3 (volumes, docs/volumes.md §4): each source whose axes hold Z (MRC files: ZYX) is one
      volume; crop is then an int c (a c x c x c cube) or (depth, height, width) with height == width; the
      network is UNet(dims=3) pooling z at z_pool_levels(crop depth, the MRC voxel sizes' anisotropy or 1.0)
      levels. Neighbor2Neighbor is 2-D only.
    value_range: the range of float images (n2n_fast/value_range.py): None (floats as they are; with a synthetic
      `noise`, whose levels are in [0, 1] units, a maximum above 4 is refused), (low, high) (scaled to [0, 1] on
      the way in; noise levels stay in [0, 1] units) or "hdr" (as they are).
    normalisation: the affine map the network sees the data through (docs/normalisation.md): "auto" (the mean
      and standard deviation of the training data, recorded in the checkpoint and applied by denoise and export),
      None (no map: the network sees [0, 1] units, as before this option) or (offset, scale). Losses in the
      history are in the network's normalised units.
    noise: an n2n_fast.noise model (Gaussian, Poisson, ...); needed with `data` unless targets="neighbor" on data
      that is already noisy. loss: "l2" | "l1" | "l0" (gamma annealed 2 -> 0) | "hdr".
    steps, batch_size (per rank), crop (square, pixels), lr (Adam, cos² ramp-down over the last `rampdown`), seed.
    precision: "auto" (bf16 autocast where native) | "float32" | "bfloat16"; compile: torch.compile the network;
      channels_last: None (auto: with bf16 or on CUDA) or a bool; volumes (dims=3) take channels_last_3d.
    features: U-Net width (48 in the paper). neighbor_weight: the Neighbor2Neighbor regulariser's final weight.
    log_every / val_every / checkpoint_every: steps between history rows / validations / checkpoints (plus at the
      end); resume=True continues from out_dir/last.pt when it exists (with more steps it extends a finished
      run; the learning-rate ramp-down then differs from a run started with those steps, so it is not bitwise the
      same). A folder holding a run is refused unless resume=True or overwrite=True (which removes that run first).
    plot: write history.png at the end (None: when matplotlib is installed; True: require it).
    graph: "auto" (on CUDA, capture the whole step once as a CUDA graph and replay it, where it can be:
      n2n_fast/training/graph_step.py says where not and why), True (require it) or False.
    Ctrl-C / SIGTERM stop at the end of the current step, write a checkpoint there (resume=True continues it
    bitwise) and raise TrainingInterrupted. A non-finite loss (seen at log steps) stops with FloatingPointError,
    keeping the last good checkpoint."""
    precision = check_arguments(locals())
    value_range = check_value_range(value_range)
    val_every = checkpoint_every if val_every is None else val_every
    plot = plot_wanted(plot)
    check_run_folder(out_dir, resume, overwrite)
    rank, world, device, started = _distributed(device)
    # floats of any units train where no synthetic noise level depends on their units (docs/normalisation.md)
    any_units = noise is None and value_range is None
    stores, realisations, crop, z_pools = _stores(dims, data, pairs, crop, device, axes, value_range, any_units)
    images = realisations[0]
    channels = images[0].shape[-1]
    data_map = choose_map(normalisation, realisations, describe_source("pairs", pairs) if pairs is not None
                          else describe_source("data", data))
    if noise is not None:  # the noise model checks its own parameters; fail here, before any training
        noisy_pair(torch.rand(1, channels, 4, 4, device=device), noise, seed=seed)
    load_val = volumes.validation_volumes if dims == 3 else training_data.validation_pairs
    val_pairs = load_val(val, noise, channels, device, VAL_SEED, axes, value_range, any_units)
    check_writable(out_dir)
    out_dir = Path(out_dir)
    if overwrite and not resume:
        remove_run(out_dir)

    mode = "pairs" if pairs is not None else targets
    net = steps_module.new_network(channels, features, seed, data_map, dims, z_pools)
    run = steps_module.make_run(net, stores, mode=mode, noise=noise, loss=loss, seed=seed, steps=steps,
                                batch_size=batch_size, crop=crop, lr=lr, rampdown=rampdown,
                                neighbor_weight=neighbor_weight, precision=precision, channels_last=channels_last,
                                compile=compile, rank=rank, world=world)
    train_args = {"mode": mode, "loss": loss, "steps": steps, "batch_size": batch_size, "world_size": world,
                  "crop": crop, "lr": lr, "rampdown": rampdown, "seed": seed, "noise": repr(noise),
                  "features": features, "precision": str(run.amp or "float32"), "neighbor_weight": neighbor_weight,
                  "data": training_data.describe(images), "realisations": len(stores), "value_range": value_range,
                  "normalisation": None if data_map is None else list(data_map)}
    if dims == 3:  # a 2-D run's arguments stay as they were: its checkpoints resume unchanged
        train_args.update(dims=3, crop=list(crop), z_pools=z_pools)
    start, history, best_psnr = 0, [], None
    if resume and (out_dir / "last.pt").exists():
        start, history, best_psnr = resume_run(run.net, run.optimizer, out_dir / "last.pt", train_args)
    steps_module.capture(run, graph, device, world, compile, start)

    # ---- the loop: one step, then logging, validation and checkpoints (the only host syncs)
    best_psnr = _loop(run, train_args, history, best_psnr, start, out_dir, val_pairs, world,
                      dict(log=log_every, val=val_every, checkpoint=checkpoint_every), progress)
    if rank == 0 and history:
        history_files.write(history, out_dir)
        if plot:
            _plot(history, out_dir / "history.png")
    if started:
        dist.destroy_process_group()
    best = out_dir / "best.pt"
    return TrainResult(run.net.eval(), history, str(out_dir / "last.pt"), str(best) if best_psnr is not None else None)


def _plot(history, path):
    """history.png; a matplotlib that fails to import only now (found, but broken) costs the figure, never the end
    of the run: the checkpoints and history files are written already."""
    try:
        history_files.plot(history, path)
    except ImportError as exc:
        import warnings

        warnings.warn(f"plot: history.png not written: matplotlib does not import ({exc}); install it with pip "
                      "install 'n2n_fast[plot]'. The run itself is complete.", RuntimeWarning, stacklevel=3)


def _stores(dims, data, pairs, crop, device, axes, value_range, any_units):
    """(stores, realisations, crop, z_pools): the training data loaded as images, or for dims=3 as whole volumes
    with the crop as (depth, height, width) and the z-pooling levels it and the voxel sizes allow
    (n2n_fast/training/volumes.py); z_pools None for images."""
    if dims == 2:
        stores, realisations = training_data.training_stores(data, pairs, crop, device, axes, value_range,
                                                             any_units)
        return stores, realisations, crop, None
    return volumes.training_volumes(data, pairs, crop, device, axes, value_range, any_units)


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


@torch.no_grad()
def _val_psnr(net, val, autocast, memory_format):
    """Mean PSNR (dB) of the network's outputs, clipped to the clean image's [min, max] (its own units), over the
    validation (noisy, clean) pairs, each
    relative to its clean image's own range (max - min): 16-bit data holding counts of 100-4000 out of 65535 would
    otherwise score ~45 dB while worse than its input."""
    net.eval()
    total = 0.0
    for noisy, clean in val:
        with autocast():
            pred = net(noisy.contiguous(memory_format=memory_format))
        data_range = max(float(clean.max() - clean.min()), 1e-6)
        low, high = float(clean.min()), float(clean.max())  # the data's units: [0, 1] for integer images
        total += psnr(torch.mean((pred.float().clamp(low, high) - clean) ** 2).item(), peak=data_range)
    net.train()
    return total / len(val)


def _history_row(run, window_mean, window_steps, window_start, world, done):
    """A history row for the steps since the last one; the loss is averaged over ranks (one host sync)."""
    if world > 1:
        dist.all_reduce(window_mean)
        window_mean = window_mean / world
    elapsed = time.perf_counter() - window_start
    return {"step": done, "loss": window_mean.item(), "lr": schedule.learning_rate(done - 1, run.steps, run.lr,
                                                                                    run.rampdown),
            "images_per_s": window_steps * run.batch_size * world / max(elapsed, 1e-9), "seconds": elapsed}


def _loop(run, train_args, history, best_psnr, start, out_dir, val_pairs, world, every, progress):
    """Steps start .. run.steps - 1, each followed by logging, validation and checkpoints when due (the only host
    syncs); appends to `history`; returns the best validation PSNR."""
    bar = tqdm(total=run.steps, initial=start, disable=not progress or run.rank != 0, unit="step",
               dynamic_ncols=True)
    window, window_steps, window_start = torch.zeros((), device=run.stores[0].device), 0, time.perf_counter()
    with StopRequest() as stop:
        for step in range(start, run.steps):
            if stop.requested:  # Ctrl-C / SIGTERM: leave at a step boundary with a checkpoint there
                save_run(run, train_args, history, best_psnr, step, out_dir, improved=False)
                raise TrainingInterrupted(step, out_dir / "last.pt")
            window += steps_module.train_step(run, step)
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
                save_run(run, train_args, history, best_psnr, done, out_dir, improved)
    bar.close()
    return best_psnr
