"""n2n_fast.train(): the Noise2Noise training loop, one read from top to bottom.

Modes (SPEC §2): synthetic N2N (`data` clean + `noise`: the target is a second, independent noisy copy), N2C
(`targets="clean"`, the baseline), real noisy pairs (`pairs=(a, b, ...)`), Neighbor2Neighbor
(`targets="neighbor"` on single noisy images). Every random choice is Philox keyed by the seed and counted by
(step, global sample index) (data.py, noise.py), so the run is a pure function of its arguments: resuming from a
checkpoint continues the exact trajectory, and N ranks with batch b draw what one process with batch N*b draws.
Under torchrun each rank trains on its own samples through DistributedDataParallel; rank 0 logs and writes.
"""
import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import distributed as dist
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import data as D
from . import history as H
from . import schedule
from .unet import UNet

TARGETS = ("noisy", "clean", "neighbor")
LOSSES = ("l2", "l1", "l0", "hdr")
PRECISIONS = ("auto", "float32", "bfloat16")
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


def _distributed(device):
    """(rank, world size, device, whether we started the process group) under torchrun, else (0, 1, device, False)."""
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
    """Mean PSNR (dB) of the network's outputs, clipped to [0, 1], over the validation (noisy, clean) pairs."""
    total = 0.0
    for noisy, clean in val:
        with autocast():
            pred = net(noisy.contiguous(memory_format=memory_format))
        mse = torch.mean((pred.float().clamp(0, 1) - clean) ** 2).item()
        total += 10 * math.log10(1.0 / max(mse, 1e-12))
    return total / len(val)


def train(*, data=None, noise=None, pairs=None, targets="noisy", loss="l2", steps, batch_size=4, crop=256,
          lr=3e-4, seed=0, out_dir, resume=False, val=None, device=None, precision="auto", compile=False,
          features=48, rampdown=0.3, neighbor_weight=2.0, log_every=10, val_every=None, checkpoint_every=1000,
          channels_last=None, progress=True, plot=True):
    """Train a U-Net denoiser; returns a TrainResult (.model, .history, .checkpoint, .best_checkpoint).

    data / pairs / val: a folder, an image path, a list of paths or (H, W[, C]) arrays, or an array ((N, H, W, C)
      is a stack); pairs is a tuple of >= 2 such sources holding aligned realisations of the same scenes; val is
      clean images (noised once with `noise`, fixed seed) or a tuple (noisy, clean).
    noise: an n2n_fast.noise model (Gaussian, Poisson, ...); needed with `data` unless targets="neighbor" on data
      that is already noisy. loss: "l2" | "l1" | "l0" (gamma annealed 2 -> 0) | "hdr".
    steps, batch_size (per rank), crop (square, pixels), lr (Adam, cos² ramp-down over the last `rampdown`), seed.
    precision: "auto" (bf16 autocast where native) | "float32" | "bfloat16"; compile: torch.compile the network;
      channels_last: None (auto: with bf16 or on CUDA) or a bool.
    features: U-Net width (48 in the paper). neighbor_weight: the Neighbor2Neighbor regulariser's final weight.
    log_every / val_every / checkpoint_every: steps between history rows / validations / checkpoints (plus at the
      end); resume=True continues from out_dir/last.pt when it exists. plot: write history.png at the end."""
    # ---- arguments: every check before anything is loaded or written
    if (data is None) == (pairs is None):
        raise ValueError("data, pairs: give exactly one (data: clean or noisy images; pairs: aligned noisy "
                         f"realisations), got {'both' if data is not None else 'neither'}")
    if targets not in TARGETS:
        raise ValueError(f"targets: expected one of {TARGETS}, got {targets!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    if precision == "bf16":  # denoise() spells it short; accept both
        precision = "bfloat16"
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS} (or 'bf16'), got {precision!r}")
    for name, value, kind, low in (("steps", steps, int, 1), ("batch_size", batch_size, int, 1),
                                   ("crop", crop, int, 2), ("lr", lr, float, 0), ("seed", seed, int, 0),
                                   ("features", features, int, 1), ("rampdown", rampdown, float, 0),
                                   ("neighbor_weight", neighbor_weight, float, 0),
                                   ("log_every", log_every, int, 1), ("checkpoint_every", checkpoint_every, int, 1)):
        _check(name, value, kind, low)
    val_every = checkpoint_every if val_every is None else val_every
    _check("val_every", val_every, int, 1)
    if seed >= 2**63 or rampdown > 1 or lr == 0:
        raise ValueError(f"seed must be < 2**63, rampdown <= 1, lr > 0; got seed={seed}, rampdown={rampdown}, lr={lr}")
    for name, value in (("resume", resume), ("compile", compile), ("progress", progress), ("plot", plot)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    if channels_last is not None and not isinstance(channels_last, bool):
        raise TypeError(f"channels_last: expected None (auto) or a bool, got {channels_last!r}")
    if pairs is not None and targets != "noisy":
        raise ValueError(f"targets: pairs train noisy -> noisy; targets={targets!r} needs data=")
    if data is not None and noise is None and targets != "neighbor":
        raise ValueError(f"noise: targets={targets!r} synthesises noisy inputs from clean data, so it needs a noise "
                         "model (e.g. n2n_fast.Gaussian((0, 50 / 255)))")
    if targets == "neighbor" and crop % 2:
        raise ValueError(f"crop: Neighbor2Neighbor splits 2x2 cells, so crop must be even, got {crop}")
    if out_dir is None:
        raise ValueError("out_dir: required (checkpoints and history go there)")
    if val is not None and noise is None and not (isinstance(val, tuple) and len(val) == 2):
        raise ValueError("val: without a noise model, give val=(noisy, clean)")

    # ---- data: decoded once, checked, kept compact on the device
    rank, world, device, started = _distributed(device)
    if pairs is not None:
        if not isinstance(pairs, (tuple, list)) or len(pairs) < 2:
            raise ValueError(f"pairs: expected a tuple of >= 2 aligned sources, got {type(pairs).__name__}")
        realisations = [D.load_images(source, f"pairs[{k}]") for k, source in enumerate(pairs)]
        for k, images in enumerate(realisations[1:], 1):
            mine, first = [i.shape for i in images], [i.shape for i in realisations[0]]
            if mine != first:
                raise ValueError(f"pairs[{k}]: {len(mine)} images of shapes {mine[:4]}... do not match pairs[0]'s "
                                 f"{len(first)} of {first[:4]}: realisations must be aligned images of the same scenes")
        images = realisations[0]
    else:
        images = D.load_images(data, "data")
    D.check_images(images, "pairs[0]" if pairs is not None else "data", crop)
    channels = images[0].shape[2]
    stores = [D.ImageStore(i, device) for i in (realisations if pairs is not None else [images])]
    sizes = stores[0].sizes
    val_pairs = []
    if val is not None:
        val_noisy, val_clean = (val if isinstance(val, tuple) and len(val) == 2 else (None, val))
        clean_images = D.load_images(val_clean, "val")
        D.check_images(clean_images, "val")
        if clean_images[0].shape[2] != channels:
            raise ValueError(f"val: images have {clean_images[0].shape[2]} channels, the training data {channels}")
        clean_store = D.ImageStore(clean_images, device)
        noisy_store = None if val_noisy is None else D.ImageStore(D.load_images(val_noisy, "val[0]"), device)
        if noisy_store is not None and noisy_store.sizes != clean_store.sizes:
            raise ValueError(f"val: noisy sizes {noisy_store.sizes} do not match clean sizes {clean_store.sizes}")
    probe = torch.rand(1, channels, 4, 4, device=device)
    if noise is not None:  # the noise model checks its own parameters; fail here, before any training
        from .noise import add_noise, noisy_pair

        noisy_pair(probe, noise, seed=seed)
    from . import _backend
    from . import loss as L

    loss_fn = getattr(L, f"{loss}_loss")
    # the fused N2N objective saves memory traffic only as a kernel; its reference twin regenerates the target
    # with the slow reference noise, so without a fast backend one noisy_pair pass feeds an ordinary loss
    fused = _backend.choose("n2n_loss", device)[0] != "reference"
    if val is not None:
        for i in range(len(clean_store)):
            clean = clean_store.full(i)
            noisy = (noisy_store.full(i) if noisy_store is not None
                     else add_noise(clean, noise, seed=VAL_SEED, step=0, index=i, stream=0))
            val_pairs.append((noisy, clean))
    _writable(out_dir)
    out_dir = Path(out_dir)

    # ---- model, optimizer, precision
    amp = _autocast_dtype(precision, device)
    memory_format = torch.channels_last if (channels_last if channels_last is not None
                                            else amp is not None or device.type == "cuda") else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):  # He init from the seed, leaving the caller's RNG alone
        torch.manual_seed(seed)
        net = UNet(channels, features=features)
    net = net.to(device=device, memory_format=memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=BETAS, eps=EPS, fused=True)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else contextlib.nullcontext
    train_args = {"mode": "pairs" if pairs is not None else targets, "loss": loss, "steps": steps,
                  "batch_size": batch_size, "world_size": world, "crop": crop, "lr": lr, "rampdown": rampdown,
                  "seed": seed, "noise": repr(noise), "features": features, "precision": str(amp or "float32"),
                  "neighbor_weight": neighbor_weight, "data": D.describe(images), "realisations": len(stores)}
    start, history, best_psnr = 0, [], None
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        state = ckpt.read(last_path, "resume")
        differ = {k: (state["train_args"].get(k), v) for k, v in train_args.items() if state["train_args"].get(k) != v}
        if differ:
            raise ValueError("resume: the checkpoint in out_dir was made with different arguments (checkpoint, now): "
                             + "; ".join(f"{k}: {a!r}, {b!r}" for k, (a, b) in differ.items()))
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history, best_psnr = state["step"], state["history"], state.get("best_psnr")
    model = net if world == 1 else torch.nn.parallel.DistributedDataParallel(net)
    model = torch.compile(model) if compile else model

    # ---- the loop
    bar = tqdm(total=steps, initial=start, disable=not progress or rank != 0, unit="step", dynamic_ncols=True)
    window, window_steps, window_start = torch.zeros((), device=device), 0, time.perf_counter()
    for step in range(start, steps):
        lr_now = schedule.learning_rate(step, steps, lr, rampdown)
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        extra = {"gamma": schedule.l0_gamma(step, steps)} if loss == "l0" else {}
        index = rank * batch_size  # global index of this rank's first sample in the step
        picks = D.draw_crops(seed, step, index, batch_size, sizes, crop)
        with autocast():
            if pairs is not None:
                which = D.draw_realisations(seed, step, index, batch_size, len(stores))
                inputs, target = D.cut_pairs(stores, picks, which, crop)
                objective = loss_fn(model(inputs.contiguous(memory_format=memory_format)), target, **extra)
            elif targets == "neighbor":
                noisy = stores[0].crops(picks, crop)
                if noise is not None:
                    noisy = add_noise(noisy, noise, seed=seed, step=step, index=index, check_finite=False)
                choice = D.neighbor_choice(noisy.shape, seed, step, index, device)
                g1, g2 = D.neighbor_split(noisy, choice)
                with torch.no_grad():  # the regulariser's g1(f(y)) - g2(f(y)) is a fixed target (stop gradient)
                    f1, f2 = D.neighbor_split(net(noisy.contiguous(memory_format=memory_format)).float(), choice)
                pred = model(g1.contiguous(memory_format=memory_format))
                objective = (loss_fn(pred, g2, **extra) + schedule.neighbor_weight(step, steps, neighbor_weight)
                             * L.l2_loss(pred, g2 + (f1 - f2)))
            else:
                clean = stores[0].crops(picks, crop)
                if targets == "noisy" and not fused:  # one pass writes both copies (and the target's mask)
                    noisy, target, *mask = noisy_pair(clean, noise, seed=seed, step=step, index=index,
                                                      check_finite=False)
                else:
                    noisy = add_noise(clean, noise, seed=seed, step=step, index=index, check_finite=False)
                pred = model(noisy.contiguous(memory_format=memory_format))
                if targets == "clean":
                    objective = loss_fn(pred, clean, **extra)
                elif fused:  # the fused kernel regenerates the second noisy copy (and its mask) inside the loss
                    objective = L.n2n_loss(pred, clean, noise, seed=seed, step=step, index=index, kind=loss, **extra)
                else:
                    objective = loss_fn(pred, target, mask=mask[0] if mask else None, **extra)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        window += objective.detach()
        window_steps += 1

        # ---- logging, validation, checkpoints (the only host syncs)
        done = step + 1
        is_ckpt = done % checkpoint_every == 0 or done == steps
        is_val = bool(val_pairs) and (done % val_every == 0 or done == steps)
        if done % log_every == 0 or is_ckpt or is_val or done == steps:
            mean = window / window_steps
            if world > 1:
                dist.all_reduce(mean)
                mean = mean / world
            elapsed = time.perf_counter() - window_start
            row = {"step": done, "loss": mean.item(), "lr": lr_now,
                   "images_per_s": window_steps * batch_size * world / max(elapsed, 1e-9),
                   "seconds": elapsed}
            if is_val and rank == 0:
                net.eval()
                row["val_psnr"] = _val_psnr(net, val_pairs, autocast, memory_format)
                net.train()
            history.append(row)
            bar.set_postfix({k: f"{row[k]:.4g}" for k in ("loss", "val_psnr", "images_per_s") if k in row})
            window.zero_()
            window_steps, window_start = 0, time.perf_counter()
        bar.update(1)
        if is_ckpt and rank == 0:
            improved = history[-1].get("val_psnr") is not None and (best_psnr is None
                                                                   or history[-1]["val_psnr"] > best_psnr)
            best_psnr = history[-1]["val_psnr"] if improved else best_psnr
            state = {"model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                     "model_args": net.arguments(), "train_args": train_args, "step": done,
                     "optimizer": optimizer.state_dict(), "rng": {"seed": seed, "step": done, "data_key": D.DATA_KEY},
                     "history": history, "best_psnr": best_psnr}
            ckpt.save(state, last_path)
            if improved:
                ckpt.save(state, best_path)
            H.write(history, out_dir)
    bar.close()
    if rank == 0 and history:
        H.write(history, out_dir)
        if plot:
            H.plot(history, out_dir / "history.png")
    if started:
        dist.destroy_process_group()
    return TrainResult(net.eval(), history, str(last_path), str(best_path) if best_psnr is not None else None)


def load(path):
    """The U-Net stored in checkpoint `path` (nn.Module, eval mode, on the CPU)."""
    state = ckpt.read(path, "path")
    net = UNet(**state["model_args"])
    net.load_state_dict(state["model"])
    return net.eval()
