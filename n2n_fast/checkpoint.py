"""Checkpoints: plain dicts (readable with `torch.load(path, weights_only=True)`), written atomically.

Keys: "model" (state dict), "model_args" (UNet constructor arguments), "train_args" (what defines the trajectory),
"step" (steps completed), "optimizer" (state dict), "rng" (the position of every random stream: all training
randomness is Philox keyed by the seed and counted by (step, global sample index), so the seed and the step are the
whole state), "history" (list of dicts), "best_psnr" (best validation PSNR so far, or None).
"""
import os
import tempfile
from pathlib import Path

import torch

REQUIRED = ("model", "model_args", "train_args", "step", "optimizer", "rng", "history")


def save(checkpoint, path):
    """Write `checkpoint` to `path` through a temporary file in the same folder and an atomic rename, so a crash
    (even SIGKILL) leaves either the old file or the new one, never half of one."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


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
