"""train()'s argument checks: everything a user passes is checked here, before anything is loaded or written."""
import importlib.util
import math
import os

from ..conventions import LOSS_KINDS as LOSSES
from ..conventions import TRAIN_TARGETS as TARGETS
from ..conventions import precision_name
from ..devices import check_device
from ..extras import MissingExtra, require
from .normalisation import check_normalisation


def check_value(name, value, kind, low=None):
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value!r}")


def check_arguments(a):
    """Every argument check of train(), before anything is loaded or written; returns the normalised precision."""
    if (a["data"] is None) == (a["pairs"] is None):
        raise ValueError("data, pairs: give exactly one (data: clean or noisy images; pairs: aligned noisy "
                         f"realisations), got {'both' if a['data'] is not None else 'neither'}")
    for name, accepted in (("targets", TARGETS), ("loss", LOSSES)):
        if a[name] not in accepted:
            raise ValueError(f"{name}: expected one of {accepted}, got {a[name]!r}")
    precision = precision_name(a["precision"])
    check_dims(a)
    for name, kind, low in (("steps", int, 1), ("batch_size", int, 1), ("crop", int, 2), ("lr", float, 0),
                            ("seed", int, 0), ("features", int, 1), ("rampdown", float, 0),
                            ("neighbor_weight", float, 0), ("log_every", int, 1), ("checkpoint_every", int, 1)):
        if not (name == "crop" and a["dims"] == 3):  # a 3-D crop is checked by volumes.check_crop
            check_value(name, a[name], kind, low)
    if a["features"] > 1024:  # 10**5 would allocate hundreds of GB after the data loaded
        raise ValueError(f"features: expected at most 1024 (the paper uses 48), got {a['features']}")
    check_device(a["device"])
    check_normalisation(a["normalisation"])
    if a["val_every"] is not None:
        check_value("val_every", a["val_every"], int, 1)
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
    if not isinstance(a["out_dir"], (str, os.PathLike)):
        raise TypeError(f"out_dir: expected a folder path, got {type(a['out_dir']).__name__} {a['out_dir']!r}")
    val = a["val"]
    if val is not None and a["noise"] is None and not (isinstance(val, tuple) and len(val) == 2):
        raise ValueError("val: without a noise model, give val=(noisy, clean)")
    return precision


def check_dims(a):
    """dims: 2 (images) or 3 (volumes, docs/volumes.md §3), and what a 3-D run cannot do, with why."""
    dims = a["dims"]
    if isinstance(dims, bool) or dims not in (2, 3):
        raise ValueError(f"dims: expected 2 (images) or 3 (volumes), got {dims!r}")
    if dims == 2:
        return
    from .volumes import check_crop

    check_crop(a["crop"])
    if a["targets"] == "neighbor":
        raise ValueError("targets: Neighbor2Neighbor is 2-D only (its sub-sampler picks neighbours inside 2x2 "
                         "pixel cells); with dims=3 use targets='noisy' or 'clean', or pairs= (even/odd halves)")


def plot_wanted(plot):
    """Whether to write history.png: None means when matplotlib is installed (an optional extra)."""
    if plot is not None and not isinstance(plot, bool):
        raise TypeError(f"plot: expected None (when matplotlib is installed) or a bool, got {plot!r}")
    if plot:  # asked for: import it now, so a missing or broken matplotlib fails before training, not after
        try:
            require("plot", "train(plot=True)", "matplotlib")
        except MissingExtra as exc:
            raise ValueError(f"plot: {exc}; plot=None skips the figure when matplotlib is missing") from exc
        return True
    try:
        installed = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as missing
        installed = False
    return installed if plot is None else plot
