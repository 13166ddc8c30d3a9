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


# ---- what each implementation accepts: the one table (docs/design.md, "Dispatch")
# It drives the refusals below, the GPU dry-run cases and the ahead-of-time compile cases (tests/test_dryrun.py,
# tests/test_*.py): a dtype no kernel computes in is refused here with its reason, never by a compile error.
KERNEL_FLOATS = (torch.float32, torch.bfloat16, torch.float16)  # Triton kernels accumulate these in float32
REFERENCE_FLOATS = KERNEL_FLOATS + (torch.float64,)  # float64 keeps its precision only in the reference
NOISE_INPUTS = (torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.uint16)
NOISE_OUTPUTS = (torch.float32, torch.bfloat16, torch.float16)
TILE_IMAGES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.uint16)
CROP_IMAGES = (torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.uint16)  # Triton's crops
MAX_GRID_Y = 65535  # CUDA's limit on grid dimension 1, where the fused loss puts the sample


@dataclass(frozen=True)
class Accepts:
    """What one implementation of an op accepts. `refusal(signature)` says why it does not serve some inputs."""
    dtypes: tuple = ()  # (argument name, accepted dtypes) pairs; arguments not listed take any dtype
    ranks: tuple = ()  # accepted ranks of every tensor argument; () for any rank
    max_batch: int = 0  # largest dim 0 of the tensor arguments; 0 for no limit

    def refusal(self, signature):
        accepted = dict(self.dtypes)
        for name, dtype, rank, batch in signature:
            if name in accepted and dtype not in accepted[name]:
                names = ", ".join(str(d).replace("torch.", "") for d in accepted[name])
                return f"{name}: dtype {str(dtype).replace('torch.', '')} is not accepted (accepts {names})"
            if rank is not None and self.ranks and rank not in self.ranks:
                return f"{name}: rank {rank} is not accepted (accepts {', '.join(map(str, self.ranks))})"
            if batch is not None and self.max_batch and batch > self.max_batch:
                return f"{name}: batch {batch} exceeds the kernel's limit of {self.max_batch} samples"
        return None

    def describe(self):
        parts = [f"{name} " + "/".join(str(d).replace("torch.", "") for d in dtypes) for name, dtypes in self.dtypes]
        parts += [f"rank {'/'.join(map(str, self.ranks))}"] if self.ranks else []
        parts += [f"batch <= {self.max_batch}"] if self.max_batch else []
        return "; ".join(parts) or "any"


ANY = Accepts()


@dataclass(frozen=True)
class Impl:
    backend: str  # one of BACKENDS
    target: str  # "module:function" inside n2n_fast, imported on first use
    ext_op: str = ""  # for backend "extension": the torch.ops.n2n_fast op that must be registered
    accepts: Accepts = ANY

    def refusal(self, device, signature=()):
        """None when this implementation serves tensors on `device` with `signature` (see `signature_of`), else
        the reason it does not."""
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
        reason = self.accepts.refusal(signature)
        if reason:
            return reason
        try:
            self.load()
        except Exception as exc:
            return f"{self.target} cannot be imported ({type(exc).__name__}: {exc})"
        return None

    def load(self):
        module, function = self.target.split(":")
        return getattr(importlib.import_module(f"n2n_fast.{module}"), function)


_NOISE = Accepts(dtypes=(("clean", NOISE_INPUTS), ("out_dtype", NOISE_OUTPUTS)), ranks=(4,))
_PHILOX = Accepts(dtypes=(("counters", (torch.int32,)),))
_TILES = Accepts(dtypes=(("image", TILE_IMAGES),))
_VOLUME_TILES = Accepts(dtypes=(("volume", TILE_IMAGES),))

# Per-op priority lists, fastest first. The reference is last: it serves every dtype the public API accepts and
# is the oracle.
OPS = {
    "philox": (
        Impl("triton", "triton.philox:philox_words", accepts=_PHILOX),
        Impl("extension", "ops.philox:philox_words", ext_op="philox", accepts=_PHILOX),
        Impl("reference", "reference.philox:philox_words", accepts=_PHILOX),
    ),
    "noisy_pair": (
        Impl("triton", "triton.noise:noisy_pair", accepts=_NOISE),
        Impl("extension", "ops.noise:noisy_pair", ext_op="noisy_pair", accepts=_NOISE),
        Impl("reference", "reference.noise:noisy_pair", accepts=_NOISE),
    ),
    "loss": (
        Impl("triton", "triton.loss:loss",
             accepts=Accepts(dtypes=(("pred", KERNEL_FLOATS), ("target", KERNEL_FLOATS)))),
        Impl("reference", "reference.loss:loss",
             accepts=Accepts(dtypes=(("pred", REFERENCE_FLOATS), ("target", REFERENCE_FLOATS)))),
    ),
    "n2n_loss": (
        Impl("triton", "triton.loss_fused:n2n_loss",
             accepts=Accepts(dtypes=(("pred", KERNEL_FLOATS), ("clean", NOISE_INPUTS)), ranks=(4,),
                             max_batch=MAX_GRID_Y)),
        Impl("reference", "reference.loss:n2n_loss",
             accepts=Accepts(dtypes=(("pred", REFERENCE_FLOATS), ("clean", NOISE_INPUTS)), ranks=(4,))),
    ),
    "training_crops": (
        Impl("triton", "triton.crops:training_crops", accepts=Accepts(dtypes=(("flat", CROP_IMAGES),))),
        Impl("reference", "reference.crops:training_crops"),
    ),
    "crop_gather": (  # training_crops' second half, for picks drawn by the philox op where Triton does not serve
        Impl("reference", "reference.crops:crop_gather"),
    ),
    "volume_crops": (  # training_crops for volumes: (depth, height, width) crops, z flips (n2n_fast/crops.py)
        Impl("triton", "triton.crops:volume_crops", accepts=Accepts(dtypes=(("flat", CROP_IMAGES),))),
        Impl("reference", "reference.crops:volume_crops"),
    ),
    "volume_crop_gather": (  # volume_crops' second half, as crop_gather for images
        Impl("reference", "reference.crops:volume_crop_gather"),
    ),
    "tile_gather": (
        Impl("extension", "ops.tiling:tile_gather", ext_op="tile_gather", accepts=_TILES),
        Impl("reference", "reference.tiling:tile_gather", accepts=_TILES),
    ),
    "tile_blend": (
        Impl("extension", "ops.tiling:tile_blend", ext_op="tile_blend"),
        Impl("reference", "reference.tiling:tile_blend"),
    ),
    "tile_gather_3d": (
        Impl("extension", "ops.tiling:tile_gather_3d", ext_op="tile_gather_3d", accepts=_VOLUME_TILES),
        Impl("reference", "reference.tiling:tile_gather_3d", accepts=_VOLUME_TILES),
    ),
    "tile_blend_3d": (
        Impl("extension", "ops.tiling:tile_blend_3d", ext_op="tile_blend_3d"),
        Impl("reference", "reference.tiling:tile_blend_3d"),
    ),
}


def signature_of(inputs):
    """((name, dtype, rank, batch), ...) of keyword inputs: tensors, or bare dtypes (such as out_dtype)."""
    rows = []
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            rows.append((name, value.dtype, value.dim(), value.shape[0] if value.dim() else None))
        elif value is not None:
            rows.append((name, value, None, None))
    return tuple(rows)


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


_CHOICES = {}  # the one cache of the dispatch: key (see choose) -> backend name
_LOADED = {}  # (op, backend name) -> implementation


def _decide(op, device, backend, signature):
    """Backend name serving `op` (walks the priority list; raises when none serves)."""
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
        reason = impl.refusal(device, signature)
        if reason is None:
            _LOADED[op, impl.backend] = impl.load()
            return impl.backend
        refusals.append(f"  {impl.backend}: {reason}")
    wanted = f" ({source}{backend})" if backend else ""
    raise RuntimeError(f"no implementation of {op!r} serves these {device.type} inputs{wanted}; considered:\n"
                       + "\n".join(refusals))


@torch.compiler.assume_constant_result
def _chosen(key):
    """Backend name for a choice key, decided once per key. torch.compile evaluates this eagerly while tracing (the
    lazy imports behind a decision cannot be traced, and a function object cannot be a traced constant): the name
    comes back and the implementation is looked up."""
    name = _CHOICES.get(key)
    if name is None:
        name = _CHOICES[key] = _decide(key[0], key[1], key[2], key[5])
    return name


def choose(op, device, backend=None, **inputs):
    """(backend name, callable) serving `op` for `inputs` on `device`.

    inputs: the op's tensor arguments by name (and dtype arguments such as out_dtype): their dtypes, ranks and
      batch sizes are checked against each implementation's `Accepts`. backend: None (first that serves, or
      N2N_FAST_BACKEND), or one of BACKENDS to force it. The choice is cached per op, device, backend, environment
      and input signature (a few microseconds when cached)."""
    key = (op, str(device), backend, os.environ.get("N2N_FAST_BACKEND"), triton_serves_cpu(), signature_of(inputs))
    name = _chosen(key)
    return name, _LOADED[op, name]


def table(device):
    """{op: [(backend, reason or None, what it accepts), ...]} for `device`: what `n2n-fast info` prints."""
    device = torch.device(device)
    return {op: [(impl.backend, impl.refusal(device), impl.accepts.describe()) for impl in impls]
            for op, impls in OPS.items()}
