"""Checkpoints: plain dicts (readable with `torch.load(path, weights_only=True)`), written atomically.

Keys: "model" (state dict), "model_args" (UNet constructor arguments), "train_args" (what defines the trajectory),
"step" (steps completed), "optimizer" (state dict), "rng" (the position of every random stream: all training
randomness is Philox keyed by the seed and counted by (step, global sample index), so the seed and the step are the
whole state), "history" (list of dicts), "best_psnr" (best validation PSNR so far, or None). `make_checkpoint` is the
one definition of these keys: its signature names them, REQUIRED is read from it, and every writer goes through it.
"""
import inspect
import os
from pathlib import Path

import torch

from .atomic_file import atomic_path
from .unet import UNet


def make_checkpoint(*, model, model_args, train_args, step, optimizer, rng, history, best_psnr=None):
    """The checkpoint dict of these parts (the keys are listed above); a misspelt or missing key is a TypeError."""
    return dict(locals())  # exactly the arguments, by name: the signature is the one spelling of the keys


_PARTS = inspect.signature(make_checkpoint).parameters.values()
REQUIRED = tuple(part.name for part in _PARTS if part.default is inspect.Parameter.empty)  # what read() insists on


def save(checkpoint, path):
    """Write `checkpoint` to `path` atomically (n2n_fast/atomic_file.py)."""
    with atomic_path(path) as temporary:
        torch.save(checkpoint, temporary)
    return Path(path)


def read(path, name="path"):
    """The checkpoint dict at `path`; ValueError naming `name` when it is missing, unreadable or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name}: no checkpoint file at {str(path)!r}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{name}: {str(path)!r} is not a readable n2n_fast checkpoint (corrupt or truncated?): "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED):
        have = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{name}: {str(path)!r} is not an n2n_fast checkpoint: expected keys {list(REQUIRED)}, "
                         f"got {have}")
    return checkpoint


def _first_problem(exc):
    """An error's heading and first problem in whole sentences on one line, counting the others (load_state_dict
    lists one line per mismatched tensor: dozens, each a sentence)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    more = f" (and {len(lines) - 2} more like it)" if len(lines) > 2 else ""
    return " ".join(lines[:2]) + more


def load(path):
    """The U-Net stored in checkpoint `path` (nn.Module, eval mode, on the CPU)."""
    return load_checkpoint(path)[0]


def load_checkpoint(path, name="path"):
    """(the U-Net in eval mode on the CPU, the checkpoint dict) from `path`, or a ValueError / TypeError naming
    `name`: not a checkpoint, weights that do not fit its model arguments, non-finite weights."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected the path of a checkpoint file, got {type(path).__name__} {path!r}")
    state = read(path, name)
    try:
        net = UNet(**state["model_args"])
        net.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name}: the weights in {str(path)!r} do not fit its model arguments "
                         f"{state['model_args']!r} ({type(exc).__name__}: {_first_problem(exc)})") from exc
    broken = [key for key, value in state["model"].items() if value.is_floating_point()
              and not bool(torch.isfinite(value).all())]
    if broken:
        raise ValueError(f"{name}: {str(path)!r} holds non-finite weights ({', '.join(broken[:3])}"
                         f"{', ...' if len(broken) > 3 else ''}): the run it came from diverged")
    return net.eval(), state
