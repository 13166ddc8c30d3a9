"""Test harness for GPU code on machines without a GPU (SPEC §5).

Two pytest processes:
  TRITON_INTERPRET=1 pytest -m interpret      Triton kernels on CPU tensors, against the reference
  pytest -m "not interpret"                  everything else, including ahead-of-time compiles (impossible
                                             in a process where TRITON_INTERPRET is set)
Tests marked `gpu` run fast paths on a real GPU and are skipped, with the reason shown, where there is none.
"""
import os

import pytest
import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    skip_interp = pytest.mark.skip(reason="needs TRITON_INTERPRET=1 set before triton is imported: "
                                          "run `TRITON_INTERPRET=1 pytest -m interpret`")
    skip_not_interp = pytest.mark.skip(reason="TRITON_INTERPRET=1 is set: ahead-of-time compilation and the "
                                              "non-interpreter tests run in the other pytest process")
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU visible")
    for item in items:
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
