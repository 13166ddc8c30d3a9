"""Losses (docs/design.md §1): L2, L1, annealed L0, HDR relative L2, and the fused Noise2Noise objective.

All share `(pred, target, *, mask=None, reduction="mean", backend=None, ...)`:
  pred, target  float tensors of the same shape and device; dtypes may differ (bf16 pred under autocast, float32
                target). Arithmetic and the result are float32 (float64 when an input is float64); the gradient
                has pred's dtype.
  mask          bool, pred's shape or broadcastable to it at the same rank (e.g. (B, 1, H, W): over channels;
                (1, H, W) for a (C, H, W) pred); only True elements count, and "mean" divides by their number
                after broadcasting (0 when none is kept).
  reduction     "mean" (0-d), "sum" (0-d) or "none" (pred's shape, float32).
  backend       None (the fastest that serves, see n2n_fast._backend), or "triton" / "reference" to force one.
"""
import math
import numbers

import torch

from . import _backend
from .conventions import LOSS_KINDS as KINDS
from .conventions import REDUCTIONS
from .noise import _validate as check_noise_args
from .noise import noisy_pair, volume_as_images

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_tensor(name, x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating dtype (float16, bfloat16, float32, float64), got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: empty tensor (shape {tuple(x.shape)}); a loss needs at least one element")


def _check_mask(mask, pred):
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a bool torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected dtype torch.bool, got {mask.dtype}")
    if mask.device != pred.device:
        raise ValueError(f"mask: on {mask.device}, pred is on {pred.device}; they must share a device")
    fits = mask.dim() == pred.dim() and all(m in (1, p) for m, p in zip(mask.shape, pred.shape))
    if not fits:
        shape = tuple(pred.shape)
        hint = f", e.g. {shape[:1] + (1,) + shape[2:]}" if len(shape) >= 2 else ""
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not fit pred's {shape}; accepted: the same rank, "
                         f"each size equal to pred's or 1 (broadcast over that dimension{hint})")


FLOAT32_MAX = 3.4028234663852886e38  # the kernels take eps and gamma as float32


def _check_positive(name, value, allow_zero):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite real number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if value > FLOAT32_MAX or (value != 0 and abs(value) < 1.1754943508222875e-38):
        raise ValueError(f"{name}: {value!r} is outside float32's normal range (1.2e-38 to 3.4e38), which the "
                         "kernels compute in")


def _check_gamma(gamma, pred):
    """gamma: a finite number >= 0, or a 0-d float32 tensor on pred's device (train() computes the annealed
    exponent there from the device step; its value is read by the kernels, never by the host: no sync)."""
    if isinstance(gamma, torch.Tensor):
        if gamma.dim() != 0 or gamma.dtype != torch.float32 or gamma.device != pred.device:
            raise TypeError(f"gamma: a tensor gamma must be a 0-d float32 tensor on {pred.device}, got "
                            f"{gamma.dtype} of shape {tuple(gamma.shape)} on {gamma.device}")
        return gamma
    _check_positive("gamma", gamma, allow_zero=True)
    return float(gamma)


def check_loss_args(pred, target, mask, reduction, target_name="target"):
    """Validate the shared loss arguments (raises TypeError / ValueError naming the argument)."""
    _check_tensor("pred", pred)
    _check_tensor(target_name, target)
    if target.shape != pred.shape:
        raise ValueError(f"{target_name}: shape {tuple(target.shape)} differs from pred's {tuple(pred.shape)}; "
                         "they must be equal")
    if target.device != pred.device:
        raise ValueError(f"{target_name}: on {target.device}, pred is on {pred.device}; they must share a device")
    _check_mask(mask, pred)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: unknown reduction {reduction!r}; accepted: {', '.join(REDUCTIONS)}")


def _loss(pred, target, mask, reduction, backend, kind, gamma=0.0, eps=0.0):
    check_loss_args(pred, target, mask, reduction)
    _, impl = _backend.choose("loss", pred.device, backend, pred=pred, target=target)
    return impl(pred, target, mask, kind=kind, reduction=reduction, gamma=gamma, eps=float(eps))


def l2_loss(pred, target, *, mask=None, reduction="mean", backend=None):
    """Squared error (pred - target)**2: N2N with zero-mean noise (learns the mean)."""
    return _loss(pred, target, mask, reduction, backend, "l2")


def l1_loss(pred, target, *, mask=None, reduction="mean", backend=None):
    """Absolute error |pred - target|: noise with zero median (learns the median)."""
    return _loss(pred, target, mask, reduction, backend, "l1")


def l0_loss(pred, target, *, gamma, eps=1e-8, mask=None, reduction="mean", backend=None):
    """Annealed L0 (|pred - target| + eps)**gamma: impulse noise (learns the mode as gamma -> 0).

    gamma >= 0 (the paper anneals it linearly from 2 to 0 over training), or a 0-d float32 tensor on pred's
    device holding it (read on the device, unchecked: what train() passes); eps > 0 keeps the gradient finite."""
    _check_tensor("pred", pred)
    gamma = _check_gamma(gamma, pred)
    _check_positive("eps", eps, allow_zero=False)
    return _loss(pred, target, mask, reduction, backend, "l0", gamma, eps)


def hdr_loss(pred, target, *, eps=0.01, mask=None, reduction="mean", backend=None, check_range=True):
    """Relative L2 (pred - target)**2 / (pred.detach() + eps)**2 for HDR images (no gradient through the
    denominator). eps > 0; pred > -eps, where the denominator vanishes (HDR values are >= 0).

    check_range: refuse pred <= -eps or NaN (one extra read of pred and a host sync; train() skips it, as it skips
    noisy_pair's finiteness scan, and is skipped inside torch.compile)."""
    _check_positive("eps", eps, allow_zero=False)
    _check_hdr_range(pred, eps, check_range)
    return _loss(pred, target, mask, reduction, backend, "hdr", 0.0, eps)


def _check_hdr_range(pred, eps, check_range):
    """pred > -eps, where hdr's denominator (pred + eps)**2 vanishes (inf there, huge near it)."""
    if not isinstance(check_range, bool):
        raise TypeError(f"check_range: expected a bool, got {check_range!r}")
    if check_range and not torch.compiler.is_compiling():
        _check_tensor("pred", pred)
        low = pred.detach().min()
        if not bool(low > -eps):
            raise ValueError(f"pred: hdr_loss takes pred > -eps = {-eps:g} (the denominator (pred + eps)**2 "
                             f"vanishes at -eps), got a minimum of {float(low):g}; clamp pred at 0 (HDR values are "
                             "non-negative) or pass a larger eps")


_KIND_DEFAULTS = {"l2": {}, "l1": {}, "l0": {"eps": 1e-8}, "hdr": {"eps": 0.01, "check_range": True}}
# loss_kwargs each kind accepts (built once: n2n_loss runs at every training step)
_KIND_ACCEPTS = {kind: frozenset({"mask", "reduction"} | ({"gamma"} if kind == "l0" else set()) | set(defaults))
                 for kind, defaults in _KIND_DEFAULTS.items()}


def n2n_loss(pred, clean, noise, *, seed, step, index=0, kind="l2", backend=None, **loss_kwargs):
    """The fused Noise2Noise objective: `<kind>_loss(pred, noisy_pair(clean, noise, seed=seed, step=step,
    index=index)[1], **loss_kwargs)`, with a Bernoulli target's kept-pixel mask applied (ANDed with `mask` when
    one is given), computed without writing the target to memory on the Triton path.

    pred: (B, C, H, W) float; clean: the clean batch noisy_pair takes, same shape; kind: "l2" | "l1" | "l0" |
    "hdr"; loss_kwargs: mask, reduction, and the kind's own (gamma and eps for l0, eps and check_range for hdr)."""
    if kind not in KINDS:
        raise ValueError(f"kind: unknown loss kind {kind!r}; accepted: {', '.join(KINDS)}")
    accepted = _KIND_ACCEPTS[kind]
    unknown = loss_kwargs.keys() - accepted
    if unknown:
        raise TypeError(f"loss_kwargs: {sorted(unknown)} not accepted by kind {kind!r}; accepted: {sorted(accepted)}")
    if kind == "l0" and "gamma" not in loss_kwargs:
        raise TypeError("gamma: kind 'l0' needs gamma (>= 0)")
    params = {**_KIND_DEFAULTS[kind], **loss_kwargs}
    mask, reduction = params.pop("mask", None), params.pop("reduction", "mean")
    gamma, eps = params.get("gamma", 0.0), params.get("eps", 0.0)
    _check_tensor("pred", pred)
    if kind == "l0":
        gamma = _check_gamma(gamma, pred)
    if kind in ("l0", "hdr"):
        _check_positive("eps", eps, allow_zero=False)
    if kind == "hdr":
        _check_hdr_range(pred, eps, params.pop("check_range"))
    # clean, noise, seed, step, index as noisy_pair checks them; no finiteness scan: it would sync the host
    check_noise_args(clean, noise, seed, step, index, torch.float32, check_finite=False)
    if clean.shape != pred.shape:
        raise ValueError(f"clean: shape {tuple(clean.shape)} differs from pred's {tuple(pred.shape)}; "
                         "they must be equal")
    if clean.device != pred.device:
        raise ValueError(f"clean: on {clean.device}, pred is on {pred.device}; they must share a device")
    if clean.numel() == 0:
        raise ValueError(f"clean: empty tensor (shape {tuple(clean.shape)}); a loss needs at least one element")
    _check_mask(mask, pred)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: unknown reduction {reduction!r}; accepted: {', '.join(REDUCTIONS)}")
    if pred.dim() == 5:  # volumes: the (B, C, D * H, W) images noisy_pair makes of them (same counters)
        mask = None if mask is None else volume_as_images(mask.expand(mask.shape[0], mask.shape[1], *pred.shape[2:]))
        value = n2n_loss(volume_as_images(pred), volume_as_images(clean), noise, seed=seed, step=step, index=index,
                         kind=kind, backend=backend, mask=mask, reduction=reduction, **params)
        return value.reshape(pred.shape) if reduction == "none" else value
    if pred.dim() == 3:  # one (C, H, W) sample: the batch of one noisy_pair makes of it (same counters)
        mask = None if mask is None else mask[None]
        checked = {"check_range": False} if kind == "hdr" else {}  # checked above
        value = n2n_loss(pred[None], clean[None], noise, seed=seed, step=step, index=index, kind=kind,
                         backend=backend, mask=mask, reduction=reduction, **params, **checked)
        return value[0] if reduction == "none" else value
    name, impl = _backend.choose("n2n_loss", pred.device, backend, pred=pred, clean=clean)
    if name == "reference" and backend != "reference":
        # no fused kernel serves: one noisy_pair pass (the fastest backend that serves it) feeds the plain loss;
        # the reference twin would regenerate the target with the slow reference noise
        return _unfused_n2n_loss(pred, clean, noise, seed, step, index, mask, kind, reduction, gamma, eps)
    return impl(pred, clean, noise, seed=seed, step=step, index=index, mask=mask, kind=kind, reduction=reduction,
                gamma=gamma, eps=float(eps))


def _unfused_n2n_loss(pred, clean, noise, seed, step, index, mask, kind, reduction, gamma, eps):
    pair = noisy_pair(clean, noise, seed=seed, step=step, index=index, check_finite=False)
    if len(pair) == 3:  # Bernoulli: the target's kept-pixel mask
        mask = pair[2] if mask is None else mask & pair[2]
    _, impl = _backend.choose("loss", pred.device, None, pred=pred, target=pair[1])
    return impl(pred, pair[1], mask, kind=kind, reduction=reduction, gamma=gamma, eps=float(eps))
