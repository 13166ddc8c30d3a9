"""The README's examples run as written, so the front door cannot drift from the code.

The Python block under "## Python in ten lines" and every line of the bash block under "## The command line at a
glance" run in a fresh folder holding tiny data made here (photos/, shots_a/, shots_b/, noisy/, stack.tif,
big.tif, noisy.png). Only these substitutions are made, all in `_python_example` / `_cli_examples`:
- step counts: `steps=N` / `--steps N` become N // 20000 (20000 -> 1, 40000 -> 2), so the resume line extends;
- CLI training runs get `--features 8 --batch-size 2 --quiet` appended (a tiny U-Net on 48² images), and
  `--crop 32` unless they state their own crop (the 3-D lines do);
  the Python example trains the paper's defaults as written (one step of 256² crops on 256² photos).
Each `n2n-fast ...` line runs through n2n_fast.cli.main in this process (what the console script calls).
"""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import n2n_fast
from n2n_fast import cli

README = Path(__file__).resolve().parent.parent / "README.md"
STEP_DIVISOR = 20000
TINY_TRAIN = ["--features", "8", "--batch-size", "2", "--quiet"]


def _block(heading, language):
    """The first ```language block after the first line starting with `heading` in the README."""
    text = README.read_text()
    start = text.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"README: no ```{language} block after {heading!r}"
    return match.group(1)


def _fewer_steps(match):
    steps = int(match.group(2).replace("_", ""))
    return f"{match.group(1)}{max(1, steps // STEP_DIVISOR)}"


def _python_example():
    return re.sub(r"(steps=)([0-9_]+)", _fewer_steps, _block("## Python in ten lines", "python"))


def _cli_examples():
    lines = []
    for line in _block("## The command line at a glance", "bash").splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        command = re.sub(r"(--steps )([0-9_]+)", _fewer_steps, command)
        argv = shlex.split(command)
        assert argv[0] == "n2n-fast", line
        tiny = TINY_TRAIN + ([] if "--crop" in argv else ["--crop", "32"])
        lines.append(argv[1:] + (tiny if argv[1] == "train" else []))
    return lines


def _images(folder, count, size, rng, channels=3):
    folder.mkdir()
    for i in range(count):
        n2n_fast.write_image(str(folder / f"{i}.png"), rng.random((size, size, channels)))


def test_python_example_runs_as_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "photos", 2, 256, rng)
    n2n_fast.write_image("noisy.png", rng.random((45, 70, 3)))
    code = _python_example()
    assert "steps=1," in code and "runs/a/last.pt" in code
    scope = {}
    exec(compile(code, str(README) + ":python", "exec"), scope)  # noqa: S102 (the README's own example)
    denoised, dtype = n2n_fast.read_image("denoised.png")
    assert dtype == np.uint8 and denoised.shape == (45, 70, 3)
    assert scope["y1"].shape == scope["clean"].shape and scope["loss"].ndim == 0


def test_cli_examples_run_as_written(tmp_path, monkeypatch, capsys):
    import tifffile

    from n2n_fast.mrc import read_mrc

    rng = np.random.default_rng(2)
    monkeypatch.chdir(tmp_path)
    for folder in ("photos", "noisy"):
        _images(tmp_path / folder, 2, 48, rng)
    scene = rng.random((2, 48, 48, 3))
    for folder in ("shots_a", "shots_b"):  # aligned noisy realisations of the same two scenes
        (tmp_path / folder).mkdir()
        for i, image in enumerate(scene):
            n2n_fast.write_image(f"{folder}/{i}.png", np.clip(image + 0.1 * rng.standard_normal(image.shape), 0, 1))
    tifffile.imwrite("stack.tif", (rng.random((3, 48, 48)) * 65535).astype(np.uint16), photometric="minisblack")
    n2n_fast.write_image("big.tif", rng.random((70, 90, 3)))
    from n2n_fast.mrc import VoxelGrid, write_mrc

    tomogram = 100 * rng.random((32, 40, 40)).astype(np.float32) - 50  # float32 in arbitrary units, like cryo-ET
    for name in ("even.mrc", "odd.mrc"):
        noisy = tomogram + 10 * rng.standard_normal(tomogram.shape).astype(np.float32)
        write_mrc(name, noisy, VoxelGrid(voxel_size=(13.6, 13.6, 13.6), origin=(0.0, 0.0, 0.0)))

    commands = _cli_examples()
    assert [argv[0] for argv in commands].count("train") >= 4, commands
    for argv in commands:
        if argv[0] == "export":
            from extras import require_extra

            require_extra("export", "onnx", "onnxscript", "onnxruntime")
        assert cli.main(argv) == 0, f"n2n-fast {shlex.join(argv)}\n{capsys.readouterr().err}"

    out = capsys.readouterr().out
    assert "tile" in out  # denoise prints the plan it chose
    assert Path("runs/a/last.pt").is_file() and not Path("runs/a/best.pt").exists()  # no --val: last.pt only
    assert n2n_fast.load("runs/a/last.pt") is not None
    for name in ("big_denoised.tif", "small_mem.tif"):
        denoised, dtype = n2n_fast.read_image(name)
        assert denoised.shape == (70, 90, 3) and dtype == np.uint8, name
    assert Path("model.onnx").stat().st_size > 0
    volume, grid = read_mrc("tomo_denoised.mrc")
    assert volume.shape == (32, 40, 40) and grid.voxel_size == pytest.approx((13.6, 13.6, 13.6))


def _anchor(heading):
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped except - and _, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_in_readme_and_docs_resolve():
    """Every relative link of README.md, docs/*.md and benchmarks/RESULTS.md names a file that exists and, with a
    #fragment, a heading of that file (the README points into docs/ by section)."""
    root = README.parent
    pages = [README, root / "benchmarks" / "RESULTS.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        prose = re.sub(r"`[^`\n]*`", "", page.read_text())  # code spans hold brackets that are no links
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and linked.suffix == ".md":
                anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.M)}
                if fragment not in anchors:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_quick_start_holds_the_two_setup_commands():
    """The quick start's two commands are the setup contract: install and run the demo; run CI."""
    commands = [line for line in _block("## Quick start", "bash").splitlines() if line and not line.startswith("#")]
    assert commands == ['pip install torch==2.14.1 && CUDA_HOME=/usr/local/cuda pip install --no-build-isolation -e '
                        '".[demo]" && n2n-fast demo --n2c', "bash .ci/run"], commands
