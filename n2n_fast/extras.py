"""Optional dependencies, installed as pip extras (pyproject.toml): import them only where a feature needs them,
and name the extra to install when one is missing."""
import importlib


class MissingExtra(ImportError):
    """An optional package a feature needs is not installed; the message names the pip extra to install."""


def require(extra, feature, *modules):
    """Import and return `modules` (a tuple, in order), or raise MissingExtra naming `extra` and every missing
    module. `feature` says what needed them, e.g. "export(format='onnx')"."""
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        raise MissingExtra(f"{feature} needs the optional packages of the [{extra}] extra; missing: "
                           f"{'; '.join(missing)}. Install them with: pip install 'n2n_fast[{extra}]'")
    return tuple(loaded)
