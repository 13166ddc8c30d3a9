"""The one dispatch point: which implementation serves each op.

Every op has a priority list of implementations. Each implementation says, for the tensors at hand, either that
it serves them or why it refuses (missing module, wrong device, extension not built ...). `choose` walks the list
and takes the first that serves; `backend=` (or the environment variable N2N_FAST_BACKEND) forces one, and when a
forced one cannot serve the error lists every implementation considered with its reason.

N2N_FAST_BACKEND is either one name for every op (`reference`) or per-op pairs (`noisy_pair=reference,loss=triton`).
Implementations are imported lazily, so the package imports without triton and without the extension.
"""
import functools
import importlib
import os
from dataclasses import dataclass

import torch

from . import _ext

BACKENDS = ("triton", "extension", "reference")


@functools.lru_cache(maxsize=None)
def triton_reason():
    """None when triton is importable, else why not."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising something else
        return f"triton is not importable ({type(exc).__name__}: {exc})"
    return None


def triton_interpreting():
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_TRITON_ON_CPU = {"enabled": False}


def serve_cpu_with_triton(enabled):
    """The GPU dry run's hook (tests/dryrun.py; docs/design.md, "Proofs without a GPU"): let Triton serve CPU
    tensors although the interpreter is off. The dry run installs a fake Triton driver and a stub libcuda, so the
    real compiler and launcher run on CPU tensors and the launch itself does nothing. Nothing else sets it."""
    _TRITON_ON_CPU["enabled"] = bool(enabled)


def triton_serves_cpu():
    """True when Triton kernels may be handed CPU tensors: under the interpreter or in the dry run."""
    return triton_interpreting() or _TRITON_ON_CPU["enabled"]


@dataclass(frozen=True)
class Impl:
    backend: str  # one of BACKENDS
    target: str  # "module:function" inside n2n_fast, imported on first use
    ext_op: str = ""  # for backend "extension": the torch.ops.n2n_fast op that must be registered

    def refusal(self, device):
        """None when this implementation serves tensors on `device`, else the reason it does not."""
        if self.backend == "triton":
            reason = triton_reason()
            if reason:
                return reason
            if device.type != "cuda" and not (device.type == "cpu" and triton_serves_cpu()):
                return (f"Triton serves CUDA tensors (CPU tensors only under TRITON_INTERPRET=1 or in the GPU dry "
                        f"run); got {device.type}")
        elif self.backend == "extension":
            if _ext.ops() is None:
                return _ext.reason()
            if not _ext.has_op(self.ext_op):
                return f"the built extension has no op n2n_fast::{self.ext_op} (rebuild it)"
            if device.type == "cuda" and not _ext.built_with_cuda():
                return "the extension was built without CUDA"
            if device.type == "cuda" and not _ext.has_kernel(self.ext_op, "CUDA"):
                return f"the extension has no CUDA kernel for n2n_fast::{self.ext_op} (CPU only)"
            if device.type not in ("cpu", "cuda"):
                return f"the extension serves cpu and cuda tensors, got {device.type}"
        try:
            self.load()
        except Exception as exc:
            return f"{self.target} cannot be imported ({type(exc).__name__}: {exc})"
        return None

    def load(self):
        module, function = self.target.split(":")
        return getattr(importlib.import_module(f"n2n_fast.{module}"), function)


# Per-op priority lists, fastest first. The reference is last: it always serves and is the oracle.
OPS = {
    "philox": (
        Impl("triton", "triton.philox:philox_words"),
        Impl("extension", "ops.philox:philox_words", ext_op="philox"),
        Impl("reference", "reference.philox:philox_words"),
    ),
    "noisy_pair": (
        Impl("triton", "triton.noise:noisy_pair"),
        Impl("extension", "ops.noise:noisy_pair", ext_op="noisy_pair"),
        Impl("reference", "reference.noise:noisy_pair"),
    ),
    "loss": (
        Impl("triton", "triton.loss:loss"),
        Impl("reference", "reference.loss:loss"),
    ),
    "n2n_loss": (
        Impl("triton", "triton.loss_fused:n2n_loss"),
        Impl("reference", "reference.loss:n2n_loss"),
    ),
    "tile_gather": (
        Impl("extension", "ops.tiling:tile_gather", ext_op="tile_gather"),
        Impl("reference", "reference.tiling:tile_gather"),
    ),
    "tile_blend": (
        Impl("extension", "ops.tiling:tile_blend", ext_op="tile_blend"),
        Impl("reference", "reference.tiling:tile_blend"),
    ),
}


def _forced(op):
    """The backend N2N_FAST_BACKEND forces for `op`, or None."""
    setting = os.environ.get("N2N_FAST_BACKEND", "").strip()
    if not setting:
        return None
    if "=" not in setting:
        return setting
    for pair in setting.split(","):
        name, _, value = pair.partition("=")
        if name.strip() == op:
            return value.strip()
    return None


def choose(op, device, backend=None):
    """(backend name, callable) serving `op` for tensors on `device`.

    backend: None (first that serves, or N2N_FAST_BACKEND), or one of BACKENDS to force it."""
    if op not in OPS:
        raise ValueError(f"op: unknown op {op!r}; known: {sorted(OPS)}")
    device = torch.device(device)
    source = "backend="
    if backend is None:
        backend, source = _forced(op), "N2N_FAST_BACKEND"
    impls = OPS[op]
    if backend is not None:
        names = [impl.backend for impl in impls]
        if backend not in BACKENDS:
            raise ValueError(f"{source}: unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
        if backend not in names:
            raise ValueError(f"{source}: op {op!r} has no {backend!r} implementation; it has {', '.join(names)}")
    refusals = []
    for impl in impls:
        if backend is not None and impl.backend != backend:
            continue
        reason = impl.refusal(device)
        if reason is None:
            return impl.backend, impl.load()
        refusals.append(f"  {impl.backend}: {reason}")
    wanted = f" ({source}{backend})" if backend else ""
    raise RuntimeError(f"no implementation of {op!r} serves {device.type} tensors{wanted}; considered:\n"
                       + "\n".join(refusals))


def table(device):
    """{op: [(backend, reason or None), ...]} for `device`: what `n2n-fast info` prints."""
    device = torch.device(device)
    return {op: [(impl.backend, impl.refusal(device)) for impl in impls] for op, impls in OPS.items()}
