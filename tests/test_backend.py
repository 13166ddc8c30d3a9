"""The one dispatch point: priority order, forcing by argument and environment, and refusal reports."""
import io
import os
import subprocess
import sys

import pytest
import torch

import n2n_fast

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
    rows = {name: why for name, why, _ in _backend.table("cpu")["philox"]}
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
    rows = {name: why for name, why, _ in _backend.table("cuda")["noisy_pair"]}
    assert rows["extension"] == "the extension has no CUDA kernel for n2n_fast::noisy_pair (CPU only)"
    assert rows["reference"] is None


@pytest.fixture
def triton_on_cpu():
    """The dry run's documented hook, without the dry run: Triton is chosen for CPU tensors (nothing launches)."""
    pytest.importorskip("triton")
    _backend.serve_cpu_with_triton(True)
    yield
    _backend.serve_cpu_with_triton(False)


def test_dispatch_refuses_a_dtype_no_kernel_accepts_with_its_reason(triton_on_cpu):
    pred = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="triton: pred: dtype float64 is not accepted "
                                           "\\(accepts float32, bfloat16, float16\\)"):
        _backend.choose("loss", "cpu", "triton", pred=pred, target=pred)
    assert _backend.choose("loss", "cpu", pred=pred, target=pred)[0] == "reference"  # float64 keeps its precision
    assert _backend.choose("loss", "cpu", pred=pred.float(), target=pred)[0] == "reference"  # either argument
    assert _backend.choose("loss", "cpu", pred=pred.float(), target=pred.bfloat16())[0] == "triton"


def test_dispatch_sees_rank_and_batch_limits(triton_on_cpu):
    clean = torch.zeros(70000, 1, 1, 1)
    assert _backend.choose("n2n_loss", "cpu", pred=clean, clean=clean)[0] == "reference"
    with pytest.raises(RuntimeError, match="batch 70000 exceeds the kernel's limit of 65535"):
        _backend.choose("n2n_loss", "cpu", "triton", pred=clean, clean=clean)
    flat = torch.zeros(3, 4)
    with pytest.raises(RuntimeError, match="rank 2 is not accepted \\(accepts 4\\)"):
        _backend.choose("n2n_loss", "cpu", "triton", pred=flat, clean=flat)
    with pytest.raises(RuntimeError, match="out_dtype: dtype float64 is not accepted"):
        _backend.choose("noisy_pair", "cpu", "triton", clean=clean, out_dtype=torch.float64)


def test_info_shows_what_each_backend_accepts():
    text = n2n_fast.info(file=io.StringIO())
    assert "[accepts: pred float32/bfloat16/float16; target float32/bfloat16/float16]" in text
    assert "[accepts: pred float32/bfloat16/float16/float64; target float32/bfloat16/float16/float64]" in text
