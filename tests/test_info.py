"""`n2n-fast info` / `python -m n2n_fast info` / `n2n_fast.info()`: versions, build, and the op table."""
import subprocess
import sys

import torch

import n2n_fast
from n2n_fast import _ext


def test_info_names_versions_build_and_every_op(capsys):
    text = n2n_fast.info()
    assert f"torch {torch.__version__}" in text
    assert ("built with CUDA: yes" if _ext.built_with_cuda() else "extension") in text
    for op in ("philox", "noisy_pair", "loss", "n2n_loss", "tile_gather", "tile_blend"):
        assert f"  {op:<12} -> " in text
    assert "philox       -> extension" in text  # the first op serves CPU tensors from C++
    assert capsys.readouterr().out.strip() == text.strip()


def test_module_entry_point_prints_info():
    result = subprocess.run([sys.executable, "-m", "n2n_fast", "info"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ops on cpu tensors" in result.stdout


def test_unknown_subcommand_is_an_argparse_error():
    result = subprocess.run([sys.executable, "-m", "n2n_fast", "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_public_functions_are_not_shadowed_by_their_modules():
    """`train` and `info` name both a module and a function: whatever is imported first, the package attribute
    must stay the function (a submodule import used to rebind it to the module)."""
    code = ("import n2n_fast.train, n2n_fast.info, n2n_fast\n"
            "from n2n_fast.train import load\n"
            "assert callable(n2n_fast.train) and n2n_fast.train.__name__ == 'train', n2n_fast.train\n"
            "assert callable(n2n_fast.info) and n2n_fast.info.__name__ == 'info', n2n_fast.info\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_info_piped_into_head_exits_cleanly():
    """`n2n-fast info | head -1`: the reader closing the pipe is not an error (no traceback, exit 0)."""
    import subprocess
    import sys

    done = subprocess.run(f"{sys.executable} -m n2n_fast info | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
