"""Launching a compiled Triton kernel without the JIT's per-call work, where the installed Triton allows it.

Triton's `kernel[grid](...)` binds every argument, specialises it (dtype and 16-byte alignment of tensors, ints
equal to 1 or divisible by 16, integer width), hashes that into its cache key, checks the kernel's globals, then
calls the compiled kernel's C launcher: on the development machine about 13 us per launch through the dry run, of
which the launcher is about 3 (docs/design.md, "Host cost of an eager launch"). `DirectLaunch(kernel)[grid](...)`
keys its own cache on the facts that specialisation reads, for the argument kinds these kernels take (tensors,
ints, floats, bools, None; constexprs by keyword, by value), takes the CompiledKernel the JIT returns on the first
call with that key, and from then on calls its launcher itself. The key is at least as fine as Triton's (constexprs by
value; do_not_specialize arguments split it as if specialised), so a cached kernel is always the one the JIT would
pick.
Used only where it was checked: triton 3.8 (the CompiledKernel fields read here), outside the interpreter, without
a Triton pre-run hook or a stage-inspection hook, and unless N2N_FAST_DIRECT_LAUNCH=0; otherwise every call is
the plain `kernel[grid](...)`. The JIT's check that a kernel's globals did not change since it was compiled is
kept: the binding seen at the first launch must still be there (the kernels read one global at most,
n2n_fast/triton/constants.py), else the call goes through the JIT, which compares the value.
"""
import os

import torch
import triton
from triton.runtime.driver import driver

try:
    from triton import knobs
except ImportError:  # older Triton: never on the direct path (available() says why)
    knobs = None

CHECKED_VERSIONS = ((3, 8),)  # the CompiledKernel fields used (run, function, packed_metadata, launch_metadata)
_I32 = (-2 ** 31, 2 ** 31)
_MISSING = object()


def _version():
    try:
        return tuple(int(part) for part in triton.__version__.split(".")[:2])
    except ValueError:
        return None


def available():
    """None when the direct path serves, else why not."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "the Triton interpreter runs kernels as Python"
    if os.environ.get("N2N_FAST_DIRECT_LAUNCH", "1") == "0":
        return "N2N_FAST_DIRECT_LAUNCH=0"
    if knobs is None or _version() not in CHECKED_VERSIONS:
        return f"triton {triton.__version__}: the direct launch is checked on {CHECKED_VERSIONS} only"
    return None


_WHY_NOT = available()


def cdiv(a, b):
    """ceil(a / b) for host ints: triton.cdiv is a constexpr_function in triton 3.8, several us per host call."""
    return -(-a // b)


def _key(args):
    """What Triton's specialisation reads of the positional arguments (hashable); TypeError for another kind.
    One loop, no call per argument: this runs at every launch."""
    facts = []
    for arg in args:
        kind = arg.__class__
        if kind is int:
            facts.append((arg == 1, arg & 15 == 0, _I32[0] <= arg < _I32[1], arg >= 2 ** 63))
        elif kind is torch.Tensor or kind is torch.nn.Parameter:
            facts.append((arg.dtype, arg.data_ptr() & 15 == 0))
        elif kind is float or kind is bool or arg is None:
            facts.append(kind)
        else:
            raise TypeError(kind.__name__)
    return tuple(facts)


class DirectLaunch:
    """`DirectLaunch(kernel)[grid](*args, **constexprs_and_options)`: the same launch as `kernel[grid](...)`."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.params = getattr(kernel, "params", ())  # none under the interpreter (InterpretedFunction)
        self.cache = {}

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launch(grid, args, kwargs)

    def launch(self, grid, args, kwargs):
        if _WHY_NOT is not None or self.kernel.pre_run_hooks or knobs.runtime.add_stages_inspection_hook:
            return self.kernel[grid](*args, **kwargs)
        device = driver.active.get_current_device()
        try:
            key = (device, _key(args), tuple(kwargs.items()))
            hit = self.cache.get(key)
        except TypeError:  # an argument kind this path does not specialise: the JIT does it
            return self.kernel[grid](*args, **kwargs)
        if hit is None:
            compiled = self.kernel[grid](*args, **kwargs)
            tail = tuple(kwargs.get(p.name, p.default) for p in self.params[len(args):])
            # the globals as bound now (the JIT just checked them equal to those compiled in): a global rebound
            # later fails the identity check below and goes back through the JIT, which compares by value
            used = tuple((name, where.get(name, _MISSING), where)
                         for (name, _), (_, where) in self.kernel.used_global_vals.items())
            self.cache[key] = (compiled, tail, used)
            return compiled
        compiled, tail, used = hit
        for name, value, where in used:  # as the JIT checks (one global, DIGEST, at most: triton/constants.py)
            if where.get(name, _MISSING) is not value:
                return self.kernel[grid](*args, **kwargs)  # the JIT raises: a global changed since compilation
        every = args + tail
        stream = driver.active.get_current_stream(device)
        size = len(grid)
        compiled.run(grid[0], grid[1] if size > 1 else 1, grid[2] if size > 2 else 1, stream, compiled.function,
                     compiled.packed_metadata, compiled.launch_metadata(grid, stream, *every),
                     knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook, *every)
        return compiled
