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


def test_every_public_name_is_a_function_or_class_not_a_module():
    """The package's public names are what docs/usage.md lists, whatever submodules were imported first (a
    module and a function of one name would let the import order decide which one `n2n_fast.<name>` is)."""
    code = ("import importlib, pkgutil, types, n2n_fast\n"
            "for m in pkgutil.walk_packages(n2n_fast.__path__, 'n2n_fast.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "bad = [n for n in n2n_fast.__all__ if isinstance(getattr(n2n_fast, n), types.ModuleType)]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_info_piped_into_head_exits_cleanly():
    """`n2n-fast info | head -1`: the reader closing the pipe is not an error (no traceback, exit 0)."""
    import subprocess
    import sys

    done = subprocess.run(f"{sys.executable} -m n2n_fast info | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
