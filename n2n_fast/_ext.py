"""Loads the compiled extension n2n_fast._C if it was built. Never raises at import.

`ops()` gives `torch.ops.n2n_fast` or None; `status()` says why not and whether CUDA kernels are in it.
"""
import functools
import glob
import os


@functools.lru_cache(maxsize=None)
def _load():
    """Returns (ops namespace or None, reason string)."""
    try:
        import torch

        from . import _C  # noqa: F401  (importing runs the TORCH_LIBRARY registrations)
    except ImportError as exc:
        return None, f"extension n2n_fast._C not built or not loadable ({exc})"
    except Exception as exc:  # a binary built against another torch can fail in many ways; report, don't crash
        return None, f"extension n2n_fast._C failed to load ({type(exc).__name__}: {exc})"
    _register_fakes()
    return torch.ops.n2n_fast, "loaded"


def _register_fakes():
    """Import every n2n_fast/ops module so fake (meta) kernels exist whenever the real ones do."""
    import importlib
    import pkgutil

    from . import ops as ops_package

    for module in pkgutil.iter_modules(ops_package.__path__):
        importlib.import_module(f"n2n_fast.ops.{module.name}")


def ops():
    """`torch.ops.n2n_fast` when the extension loaded, else None."""
    return _load()[0]


def reason():
    """Why the extension is unavailable, or 'loaded'."""
    return _load()[1]


def has_op(name):
    namespace = ops()
    return namespace is not None and hasattr(namespace, name)


def has_kernel(name, dispatch_key):
    """True when n2n_fast::`name` has a kernel registered for `dispatch_key` ("CPU" or "CUDA")."""
    if not has_op(name):
        return False
    import torch

    return torch._C._dispatch_has_kernel_for_dispatch_key(f"n2n_fast::{name}", dispatch_key)


@functools.lru_cache(maxsize=None)
def built_with_cuda():
    """True when the loaded binary carries CUDA kernels (it registered a CUDA implementation)."""
    if ops() is None:
        return False
    import torch

    return torch._C._dispatch_has_kernel_for_dispatch_key("n2n_fast::philox", "CUDA")


def library_path():
    here = os.path.dirname(os.path.abspath(__file__))
    found = glob.glob(os.path.join(here, "_C*.so")) + glob.glob(os.path.join(here, "_C*.pyd"))
    return found[0] if found else None
