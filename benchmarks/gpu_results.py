"""Render what benchmarks/gpu_check.sh wrote into a dated section of benchmarks/RESULTS.md.

    python benchmarks/gpu_results.py out/gpu_check              append the section to benchmarks/RESULTS.md
    python benchmarks/gpu_results.py out/gpu_check --print      print it only

The section holds, from the folder: the versions (versions.json), the step log (steps.log: what ran, what was cut
and why), the `pytest -m gpu` summary with every failure named (gpu_tests.xml), each benchmark JSON rendered by
benchmarks/report.py (sweep128.json and sweep256.json merged, tiling.json, loss.json and noise.json: device time, the sweep's
images/s and ms/step, host time apart), the goals read from the sweep (reported, not asserted), and the quality study's held-out PSNR
(quality/quality.md). A missing file is said to be missing, never skipped silently.
"""
import argparse
import json
import sys
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402

BENCHES = ((("sweep128", "sweep256"), "Training step sweep (bench_train.py)"),
           (("tiling",), "Tiled inference (bench_tiling.py)"),
           (("loss", "noise"), "Loss and noise kernels (bench_loss.py, bench_noise.py)"),
           (("train3d",), "3-D training step (bench_train3d.py)"),
           (("tiled3d",), "A 300 x 1000 x 1000 tomogram in 3-D tiles, features 48 (bench_tiled3d.py)"))
# (batch, crop, noise op, ours, theirs, target): the goals the sweep is read against
GOALS = ((4, 128, "train step n2n l2 (paper U-Net)", "graph", "tuned", 2.0),
         (4, 256, "train step n2n l2 (paper U-Net)", "graph", "tuned", 1.2),
         (16, 256, "train step n2n l2 poisson (paper U-Net)", "graph", "typical", 3.0))


def _tests(path):
    if not path.is_file():
        return [f"`pytest -m gpu`: no {path.name} (the step did not finish; see steps.log)."]
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    lines = [f"`pytest -m gpu`: {counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
             f"{counts['skipped']} skipped, {float(suite.get('time', 0)):.0f} s."]
    for case in suite.iter("testcase"):
        for kind in ("failure", "error"):
            found = case.find(kind)
            if found is not None:
                message = (found.get("message") or "").splitlines()[0][:200] if found.get("message") else ""
                lines.append(f"- {kind}: `{case.get('classname')}::{case.get('name')}`: {message}")
    return lines


def _goals(data):
    lines = []
    for (op, _device), cells in report.sweep_rows(data).items():
        for batch, crop, goal_op, ours, theirs, target in GOALS:
            cell = cells.get((batch, crop), {})
            if op != goal_op or ours not in cell or theirs not in cell:
                continue
            ratio = cell[ours][0] / cell[theirs][0]
            lines.append(f"- {ours} vs {theirs} at {batch} x {crop}² ({op}): {ratio:.2f}x (goal >= {target}x: "
                         f"{'met' if ratio >= target else 'not met'})")
    return lines


def _read_json(path):
    """The JSON in `path`, or None where it is missing or cut short."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _merged(paths):
    """(one pytest-benchmark JSON holding the benchmarks of every readable path or None, the unreadable paths)."""
    found = [(path, _read_json(path)) for path in paths]
    readable = [data for _, data in found if data is not None]
    if not readable:
        return None, [path for path, _ in found]
    merged = dict(readable[0], benchmarks=[b for data in readable for b in data.get("benchmarks", [])])
    return merged, [path for path, data in found if data is None]


def section(folder):
    folder = Path(folder)
    versions = _read_json(folder / "versions.json") or {}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [f"## {when}, {versions.get('gpu', 'GPU ?')}: benchmarks/gpu_check.sh", "",
             f"torch {versions.get('torch', '?')}, CUDA {versions.get('cuda', '?')}, cuDNN "
             f"{versions.get('cudnn', '?')}, triton {versions.get('triton', '?')}. Rendered by "
             f"`python benchmarks/gpu_results.py {folder}`.", ""]
    steps = folder / "steps.log"
    lines += ["Steps (seconds since the start):", "", "```",
              steps.read_text().strip() if steps.is_file() else "(no steps.log)", "```", ""]
    lines += _tests(folder / "gpu_tests.xml") + [""]
    for names, title in BENCHES:
        lines += [f"### {title}", ""]
        data, missing = _merged([folder / f"{name}.json" for name in names])
        lines += [f"Not measured: {path.name} (its step was skipped, or cut before pytest wrote the JSON: see steps.log)."
                  for path in missing]
        if data is None:
            lines.append("")
            continue
        lines += [report.markdown(data).strip(), ""]
        if names[0].startswith("sweep"):
            goals = _goals(data)
            lines += (["Goals (reported, not asserted):", ""] + goals if goals else ["Goals: not measurable "
                      "(a row they compare is missing)."]) + [""]
    quality = folder / "quality" / "quality.md"
    lines += ["### Quality at the paper's settings (held-out PSNR)", "",
              quality.read_text().strip() if quality.is_file() else "Not measured: no quality/quality.md.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="what gpu_check.sh wrote ($OUT, default out/gpu_check)")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"), help="the file the section is appended to")
    parser.add_argument("--print", action="store_true", help="print the section, write nothing")
    args = parser.parse_args(argv)
    if not Path(args.folder).is_dir():
        parser.error(f"folder: no such folder {args.folder}")
    text = section(args.folder)
    if args.print:
        print(text)
        return 0
    with open(args.results, "a") as handle:
        handle.write("\n" + text)
    print(f"appended a section to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
