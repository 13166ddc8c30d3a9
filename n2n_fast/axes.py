"""Axes of users' arrays, spelled as tifffile and CAREamics spell them.

Y and X are the image plane, C the channels (tifffile's S, samples, is read as C), Z or T a stack of 2-D images
(focal planes or time points: n2n_fast trains on them as a set of 2-D images and denoises them slice by slice).
Every array moves through the package as a stack (N, H, W, C); `to_stack` and `from_stack` convert both ways, so
a result goes back in the input's own layout.
"""
import numpy as np

STACK_AXES = "ZT"
EXAMPLES = ("YX", "YXC", "CYX", "ZYX", "TYX", "ZYXC", "ZCYX")
_AMBIGUOUS = "QI"  # tifffile's names for a leading axis its metadata does not explain


def check_axes(axes, shape, name="axes"):
    """The canonical axes string for an array of `shape`, or a ValueError naming `name`."""
    if not isinstance(axes, str):
        raise TypeError(f"{name}: expected a string such as {', '.join(EXAMPLES)}, got {type(axes).__name__}")
    canonical = axes.upper().replace("S", "C")
    problems = []
    if len(canonical) != len(shape):
        problems.append(f"{len(canonical)} letters for an array of {len(shape)} dimensions {tuple(shape)}")
    if set(canonical) - set("YXCZT"):
        problems.append(f"unknown letters {''.join(sorted(set(canonical) - set('YXCZT')))} (accepted: Y X C Z T)")
    if canonical.count("Y") != 1 or canonical.count("X") != 1 or canonical.index("Y") > canonical.index("X"):
        problems.append("Y then X must each appear once")
    if len(canonical) != len(set(canonical)) or sum(canonical.count(a) for a in STACK_AXES) > 1:
        problems.append("each letter at most once, and at most one of Z and T")
    if problems:
        raise ValueError(f"{name}: {axes!r} does not fit: " + "; ".join(problems) + f" (e.g. {', '.join(EXAMPLES)})")
    return canonical


def infer_axes(shape, hint=None, name="image"):
    """Axes when none were given: (H, W) and (H, W, C) with C <= 4 are unambiguous; a tifffile `hint` (its series
    axes) is used when its metadata names every axis; anything else must be stated."""
    if hint:
        hint = hint.upper().replace("S", "C")
        if not set(hint) & set(_AMBIGUOUS) and len(hint) == len(shape):
            return check_axes(hint, shape, name)
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3 and shape[2] <= 4:
        return "YXC"
    raise ValueError(f"{name}: an array of shape {tuple(shape)} could be a stack of 2-D images or channels; say "
                     f"which with axes= (--axes): e.g. 'ZYX' or 'TYX' for a stack, 'CYX' or 'YXC' for channels")


def to_stack(array, axes):
    """(N, H, W, C) view or copy of `array` laid out as `axes` (canonical, from check_axes or infer_axes)."""
    missing = [a for a in "NC" if (a == "N" and not set(axes) & set(STACK_AXES)) or (a == "C" and "C" not in axes)]
    full = axes.replace("Z", "N").replace("T", "N")
    for axis in missing:
        array, full = array[..., None], full + axis
    return np.transpose(array, [full.index(a) for a in "NYXC"])


def from_stack(stack, axes):
    """The inverse of to_stack: an (N, H, W, C) stack back in the layout `axes`."""
    full = axes.replace("Z", "N").replace("T", "N")
    present = full + "".join(a for a in "NC" if a not in full)  # what to_stack appended, in its order
    array = np.transpose(stack, ["NYXC".index(a) for a in present])
    return array.reshape(array.shape[:len(full)])  # the appended axes have size 1
