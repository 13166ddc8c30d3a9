"""Test harness for GPU code on machines without a GPU (docs/design.md §4).

Two pytest processes:
  TRITON_INTERPRET=1 pytest -m interpret      Triton kernels on CPU tensors, against the reference
  pytest -m "not interpret and not dryrun"   everything else, including ahead-of-time compiles (impossible
                                             in a process where TRITON_INTERPRET is set)
  pytest -m dryrun                           the GPU dry run (tests/dryrun.py): Triton's real compiler and
                                             launcher on CPU tensors; it changes the whole process
Tests marked `gpu` run fast paths on a real GPU and are skipped, with the reason shown, where there is none.
"""
import importlib.util
import os

import pytest
import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_missing():
    """Why triton cannot be imported (it is optional: the [triton] extra), or None; found without importing it,
    so the interpreter's variable still precedes the first import."""
    try:
        found = importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError) as exc:
        return f"triton is not importable ({exc})"
    return None if found else "triton is not installed (pip install 'n2n_fast[triton]')"


def pytest_collection_modifyitems(config, items):
    skip_interp = pytest.mark.skip(reason="needs TRITON_INTERPRET=1 set before triton is imported: "
                                          "run `TRITON_INTERPRET=1 pytest -m interpret`")
    skip_not_interp = pytest.mark.skip(reason="TRITON_INTERPRET=1 is set: ahead-of-time compilation and the "
                                              "non-interpreter tests run in the other pytest process")
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU visible")
    dry_process = config.getoption("markexpr", "") == "dryrun"
    skip_dry = pytest.mark.skip(reason="the GPU dry run replaces libcuda and Triton's driver for the whole process: "
                                       "run it alone with `pytest -m dryrun`")
    skip_dry_gpu = pytest.mark.skip(reason="a real GPU is visible: the dry run would shadow its libcuda")
    no_triton = _triton_missing()
    for item in items:
        if no_triton and ("interpret" in item.keywords or "dryrun" in item.keywords):
            item.add_marker(pytest.mark.skip(reason=f"the interpreter and the dry run run Triton: {no_triton}"))
            continue
        if "dryrun" in item.keywords:
            if not dry_process or INTERPRETING:
                item.add_marker(skip_dry)
            elif torch.cuda.is_available():
                item.add_marker(skip_dry_gpu)
            continue
        interp = "interpret" in item.keywords
        if interp and not INTERPRETING:
            item.add_marker(skip_interp)
        elif not interp and INTERPRETING:
            item.add_marker(skip_not_interp)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def gen():
    """A seeded torch.Generator so random test inputs are fresh per test yet reproducible."""
    return torch.Generator().manual_seed(1234)
