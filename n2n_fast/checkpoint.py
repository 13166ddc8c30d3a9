"""Checkpoints: plain dicts (readable with `torch.load(path, weights_only=True)`), written atomically.

Keys: "model" (state dict), "model_args" (UNet constructor arguments), "train_args" (what defines the trajectory),
"step" (steps completed), "optimizer" (state dict), "rng" (the position of every random stream: all training
randomness is Philox keyed by the seed and counted by (step, global sample index), so the seed and the step are the
whole state), "history" (list of dicts), "best_psnr" (best validation PSNR so far, or None).
"""
from pathlib import Path

import torch

from .atomic_file import atomic_path

REQUIRED = ("model", "model_args", "train_args", "step", "optimizer", "rng", "history")


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
