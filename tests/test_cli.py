"""The command line as a user meets it (docs/usage.md): its defaults are the library's, its errors name flags
(--resume, not resume=True) in whole sentences, it overwrites no output unless told (--overwrite), and a missing
argument or extra is said plainly. One row per case, from a table."""
import argparse
import inspect
import os
import sys

import numpy as np
import pytest

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
from n2n_fast.cli import build_parser, main


def _images(tmp, name="data", bad=None):
    """A folder of two small 8-bit images (plus a corrupt file named `bad`)."""
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    for i in range(2):
        n2n_fast.write_image(str(folder / f"{i}.png"), np.random.default_rng(i).random((40, 44)))
    if bad:
        (folder / bad).write_bytes(b"\x89PNG broken")
    return str(folder)


def _checkpoint(tmp):
    return str(save_model(n2n_fast.UNet(1, features=8), tmp / "c.pt"))


def _run_folder(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "history.json").write_text("[]")  # a run lives here
    return str(tmp / "run")


def _existing_output(tmp):
    n2n_fast.write_image(str(tmp / "out.png"), np.zeros((4, 4)))
    return str(tmp / "out.png")


def _without_pytest_benchmark(tmp, monkeypatch):
    """pytest-benchmark missing, here and in any child interpreter."""
    stub = tmp / "stub" / "pytest_benchmark"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('No module named pytest_benchmark')\n")
    monkeypatch.setitem(sys.modules, "pytest_benchmark", None)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp / "stub"), os.environ.get("PYTHONPATH", "")]))


DENOISE = ["denoise", "--quiet", "--checkpoint"]
# (id, argv(tmp, monkeypatch), exit code, fragments stderr holds, fragments it must not hold)
CASES = [
    ("train: a run in --out names the flags",
     lambda t, m: ["train", "--data", _images(t), "--noise", "gaussian:25", "--steps", "1", "--out", _run_folder(t)],
     2, ["error: --out: ", "--resume continues it, --overwrite replaces it"], ["resume=True", "out_dir"]),
    ("train: neither --data nor --pairs",
     lambda t, m: ["train", "--noise", "gaussian:25", "--steps", "1", "--out", str(t / "o")],
     2, ["one of the arguments --data --pairs is required"], ["NoneType"]),
    ("denoise: an existing output is kept",
     lambda t, m: DENOISE + [_checkpoint(t), os.path.join(_images(t), "0.png"), _existing_output(t)],
     2, ["error: output: ", "out.png exists; --overwrite replaces it"], ["overwrite=True"]),
    ("denoise: --overwrite replaces it",
     lambda t, m: DENOISE + [_checkpoint(t), os.path.join(_images(t), "0.png"), _existing_output(t), "--overwrite"],
     0, [], ["error"]),
    ("denoise: a missing checkpoint names --checkpoint",
     lambda t, m: DENOISE + [str(t / "none.pt"), os.path.join(_images(t), "0.png"), str(t / "o.png")],
     2, ["error: --checkpoint: no checkpoint file at"], ["path:"]),
    ("bench: names the extra it needs",
     lambda t, m: _without_pytest_benchmark(t, m) or ["bench", "--small", "--out", str(t / "o")],
     2, ["pytest-benchmark", "missing: pytest_benchmark", "pip install 'n2n_fast[test]'"], []),
]


@pytest.mark.parametrize("case, argv, code, said, unsaid", CASES, ids=[c[0] for c in CASES])
def test_cli_case(tmp_path, monkeypatch, capsys, case, argv, code, said, unsaid):
    try:
        got = main(argv(tmp_path, monkeypatch))
    except SystemExit as exc:  # argparse's own errors
        got = exc.code
    err = capsys.readouterr().err
    assert got == code, (case, err)
    assert all(s in err for s in said) and not any(s in err for s in unsaid), (case, err)
    assert "Traceback" not in err


def test_the_summary_holds_the_whole_error_of_each_file(tmp_path, capsys):
    """What the closing line says of a file is what its own line said, not a cut of it."""
    argv = DENOISE + [_checkpoint(tmp_path), _images(tmp_path, name="x" * 80, bad="b.png"), str(tmp_path / "out")]
    assert main(argv) == 2
    skipped, summary = capsys.readouterr().err.strip().splitlines()
    assert f"({skipped.partition(': skipped: ')[2]})" in summary


def _subparsers():
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command, functions", [
    ("train", ("n2n_fast.training.train:train", "n2n_fast.noise_units:noise_units")),
    ("demo", ("n2n_fast.demo:demo",)),
    ("denoise", ("n2n_fast.inference.folder:denoise_files", "n2n_fast.inference.denoise:denoise")),
    ("export", ("n2n_fast.interop.export:export",)),
])
def test_defaults_are_the_signatures_and_help_shows_them(command, functions, capsys):
    import importlib

    parameters = {}
    for spec in reversed(functions):  # the first function named wins, as the command calls it
        module, _, name = spec.partition(":")
        parameters.update(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    parser = _subparsers()[command]
    checked = 0
    for action in parser._actions:
        if action.dest in parameters and action.option_strings:
            default = parameters[action.dest].default
            assert action.required == (default is inspect.Parameter.empty), action.dest
            if not action.required:
                assert action.default == default, (action.dest, action.default, default)
            checked += 1
    assert checked >= 3
    text = parser.format_help()
    shown = [a for a in parser._actions if a.option_strings and a.nargs != 0 and a.default is not None
             and a.default != argparse.SUPPRESS and "default" not in (a.help or "")]
    assert all(f"(default: {a.default})" in " ".join(text.split()) for a in shown), command


@pytest.mark.parametrize("command, message, said", [
    ("train", "out_dir: '/data/out_dir/x' holds a run; resume=True continues it, overwrite=True replaces it",
     "--out: '/data/out_dir/x' holds a run; --resume continues it, --overwrite replaces it"),
    ("train", "resume: made with other arguments (checkpoint, now): steps: 1, 2; batch_size: 2, 4",
     "--resume: made with other arguments (checkpoint, now): steps: 1, 2; --batch-size: 2, 4"),
    ("train", "steps: the run in out_dir made 5 steps; steps=3 would go back",
     "--steps: the run in --out made 5 steps; --steps 3 would go back"),
    ("train", "data, pairs: give exactly one", "--data, --pairs: give exactly one"),
    ("train", "read in value_range=0,255 units", "read in --range 0,255 units"),
    ("train", "state value_range=(low, high) or value_range='hdr' (--range hdr)",
     "state value_range=(low, high) or value_range='hdr' (--range hdr)"),  # already said, or not a flag's value
    ("train", "progress: expected a bool", "progress: expected a bool"),  # --quiet is not progress=True
    ("denoise", "memory_budget: 1024 bytes is too small", "--memory-budget: 1024 bytes is too small"),
    ("denoise", "source, target: Zarr goes to Zarr", "input, output: Zarr goes to Zarr"),
    ("export", "path: 'm.onnx' exists; pass overwrite=True (--overwrite) to replace it",
     "output: 'm.onnx' exists; pass overwrite=True (--overwrite) to replace it"),
])
def test_library_names_are_said_in_flags(command, message, said):
    from n2n_fast.cli import _flags, _in_flags

    assert _in_flags(message, _flags(_subparsers()[command])) == said
