"""Tests of optional features (pip extras): skipped where the extra is not installed, except in CI (env CI set to
true/1/yes), where a missing extra fails the run: CI installs every extra, so a skip there would hide a regression."""
import importlib.util
import os

import pytest


def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_extra(extra, *modules):
    """Call at module level of a test file: skip the module (fail it in CI) unless every module is importable."""
    missing = [name for name in modules if _missing(name)]
    if not missing:
        return
    message = f"the [{extra}] extra is not installed (missing {', '.join(missing)}): pip install 'n2n_fast[{extra}]'"
    if in_ci():
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def _missing(name):
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:  # the parent package of a dotted name is missing
        return True
