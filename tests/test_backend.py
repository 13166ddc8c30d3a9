"""The one dispatch point: priority order, forcing by argument and environment, and refusal reports."""
import os
import subprocess
import sys

import pytest
import torch

from n2n_fast import _backend


def test_first_serving_backend_wins_on_cpu():
    name, fn = _backend.choose("philox", "cpu")
    assert name == "extension"  # triton refuses CPU tensors outside the interpreter
    counters = torch.arange(8, dtype=torch.int32).reshape(2, 4)
    assert torch.equal(fn(counters, 5), _backend.choose("philox", "cpu", backend="reference")[1](counters, 5))


def test_forced_backend_that_cannot_serve_lists_every_refusal():
    with pytest.raises(RuntimeError) as info:
        _backend.choose("philox", "meta", backend="extension")
    assert "extension: the extension serves cpu and cuda tensors, got meta" in str(info.value)


def test_table_reports_reasons():
    rows = dict(_backend.table("cpu")["philox"])
    assert rows["reference"] is None and rows["extension"] is None and "CUDA tensors" in rows["triton"]


def test_unknown_backend_and_op_are_value_errors():
    with pytest.raises(ValueError, match="unknown backend 'cudnn'; accepted: triton, extension, reference"):
        _backend.choose("philox", "cpu", backend="cudnn")
    with pytest.raises(ValueError, match="op: unknown op 'fft'"):
        _backend.choose("fft", "cpu")
    with pytest.raises(ValueError, match="op 'loss' has no 'extension' implementation"):
        _backend.choose("loss", "cpu", backend="extension")


def test_environment_variable_forces_globally_and_per_op(monkeypatch):
    monkeypatch.setenv("N2N_FAST_BACKEND", "reference")
    assert _backend.choose("philox", "cpu")[0] == "reference"
    monkeypatch.setenv("N2N_FAST_BACKEND", "loss=triton, philox=reference")
    assert _backend.choose("philox", "cpu")[0] == "reference"
    monkeypatch.setenv("N2N_FAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="N2N_FAST_BACKEND: unknown backend 'bogus'"):
        _backend.choose("philox", "cpu")
    monkeypatch.setenv("N2N_FAST_BACKEND", "reference")
    assert _backend.choose("philox", "cpu", backend="extension")[0] == "extension"  # the argument wins


def test_package_imports_without_triton_and_extension():
    """Block both imports in a fresh interpreter: the package must import and serve the reference."""
    code = (
        "import sys, torch\n"  # torch probes for triton itself at import; block only what n2n_fast imports
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'triton' or name.startswith('triton.') or name == 'n2n_fast._C':\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import n2n_fast\n"
        "from n2n_fast import _backend\n"
        "name, fn = _backend.choose('philox', 'cpu')\n"
        "assert name == 'reference', name\n"
        "text = n2n_fast.info()\n"
        "assert 'triton: unavailable' in text and 'extension: unavailable' in text, text\n"
        "print('ok')\n"
    )
    # hide any GPU: torch.cuda's lazy initialisation may import triton on its own, which is not what is tested here
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


def test_extension_without_cuda_kernel_refuses_cuda_tensors():
    """noisy_pair has only a C++ CPU kernel (Triton serves CUDA): without Triton a CUDA tensor must fall back to
    the reference, not reach a CPU-only op."""
    rows = dict(_backend.table("cuda")["noisy_pair"])
    assert rows["extension"] == "the extension has no CUDA kernel for n2n_fast::noisy_pair (CPU only)"
    assert rows["reference"] is None
