"""Benchmark report: run the pytest-benchmark suites, keep their JSON, render a table and a chart.

    python benchmarks/report.py                       run benchmarks/ at full size (N2N_FAST_BENCH_FULL=1), render
    python benchmarks/report.py --small               the small CI sizes (a quick look)
    python benchmarks/report.py --json results.json   render an existing pytest-benchmark JSON, run nothing
    n2n-fast bench [same options]                     the same, from the installed command

Writes `<out>/benchmarks.json` (pytest-benchmark's own file), `<out>/report.md` and `<out>/report.png`.
Every number in the table is read from the JSON: the median time, GB/s from `extra_info` (or its `bytes` divided
by that median), and the speed-up against the reference (`extra_info["ratio"]` when the benchmark measured it,
else the reference's median over this median, same op, size and device). Labels come from `extra_info`
(op, size, impl, device; see benchmarks/conftest.py) with fallbacks to the test's group, name and parameters.
"""
import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPL_KEYS = ("impl", "backend", "implementation", "path", "variant", "mode")
# Display order of implementations inside one op and size; unknown names sort after these, alphabetically.
LABELS = {"op", "size", "impl", "device", "bytes", "gbps", "ratio"}  # extra_info keys with their own column
NOTE_NAMES = {"images_per_s": "images/s", "outside_model": "share outside model", "peak_mib": "peak MiB",
              "psnr_vs_float32": "PSNR vs fp32 (dB)", "design_bytes": "bytes moved by design", "seconds": "wall s"}
IMPL_ORDER = ("reference", "cpp", "ext", "extension", "extension-bf16", "triton", "cuda", "fast", "fused",
              "unfused", "defaults", "eager", "compile", "compiled", "torch.compile", "whole")


@dataclass
class Row:
    op: str
    size: str
    impl: str
    device: str
    seconds: float  # median
    gbps: float | None
    ratio: float | None  # reference time / this time
    notes: dict  # other numbers the benchmark recorded (images/s, share outside the model, peak memory, ...)


def _is_reference(impl):
    return impl.lower() in ("reference", "ref") or impl.lower().startswith("reference")


def _label_from(bench):
    """(op, size, impl) from extra_info, else from group / test name / parameters."""
    info = bench.get("extra_info") or {}
    params = dict(bench.get("params") or {})
    impl_key = next((k for k in IMPL_KEYS if k in params), None)
    impl = info.get("impl") or (str(params.pop(impl_key)) if impl_key else None)
    if impl_key and impl_key in params:
        params.pop(impl_key)
    func = bench["name"].split("[")[0].removeprefix("test_")
    if impl is None:  # one test function per implementation: test_<op>_<impl>
        impl = next((name for name in IMPL_ORDER if func.endswith("_" + name)), func)
    op = info.get("op") or bench.get("group") or func
    size = info.get("size") or ", ".join(f"{k}={v}" for k, v in params.items()
                                         if k != "device" and f"{k}={v}" not in str(op))
    return str(op), str(size), str(impl)


def rows_from(data):
    """Table rows from a loaded pytest-benchmark JSON (benchmarks whose timing was disabled are skipped)."""
    machine = data.get("machine_info") or {}
    default_device = machine.get("gpu") or "cpu"
    rows = []
    for bench in data.get("benchmarks", []):
        stats = bench.get("stats") or {}
        if not stats.get("median"):
            continue
        info = bench.get("extra_info") or {}
        op, size, impl = _label_from(bench)
        seconds = float(stats["median"])
        gbps = info.get("gbps")
        if gbps is None and info.get("bytes"):
            gbps = info["bytes"] / seconds / 1e9
        device = str(info.get("device") or (bench.get("params") or {}).get("device") or default_device)
        rows.append(Row(op, size, impl, device, seconds, None if gbps is None else float(gbps),
                        None if info.get("ratio") is None else float(info["ratio"]),
                        {k: v for k, v in info.items() if k not in LABELS and isinstance(v, (int, float))}))
    reference = {(r.op, r.size, r.device): r.seconds for r in rows if _is_reference(r.impl)}
    for r in rows:
        if r.ratio is None and (r.op, r.size, r.device) in reference:
            r.ratio = reference[(r.op, r.size, r.device)] / r.seconds

    def order(r):
        known = r.impl.lower() in IMPL_ORDER
        return (r.op, r.device, r.size, 0 if known else 1, IMPL_ORDER.index(r.impl.lower()) if known else 0, r.impl)

    return sorted(rows, key=order)


def sig(value, digits=4):
    """A number with `digits` significant digits (what the table shows; tests parse it back)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or value == 0 or not math.isfinite(value):
        return str(value)
    return f"{value:.{max(digits - 1 - math.floor(math.log10(abs(value))), 0)}f}"


def fmt_time(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{sig(seconds / scale)} {unit}"


def machine_line(data):
    m = data.get("machine_info") or {}
    cpu = m.get("cpu") or {}
    parts = [f"CPU {cpu.get('brand_raw') or m.get('processor') or m.get('machine', '?')} "
             f"({cpu.get('count', '?')} cores, torch threads {m.get('torch_threads', '?')})",
             f"GPU {m.get('gpu') or 'none'}", f"torch {m.get('torch', '?')}", f"triton {m.get('triton') or '-'}",
             f"python {m.get('python_version', '?')}", f"finished {str(data.get('datetime', '?'))[:19].replace('T', ' ')}",
             "full sizes" if m.get("full_size") else "small (CI) sizes"]
    load = m.get("load_average")
    if isinstance(load, dict):
        parts.append(f"load average (1/5/15 min) {load.get('start')} at the start, {load.get('end')} at the end")
    elif load:
        parts.append(f"load average (1/5/15 min) {load} at the end")
    commit = (data.get("commit_info") or {}).get("id") or ""
    if all(c in "0123456789abcdef" for c in commit.lower()) and commit:
        parts.append(f"commit {commit[:10]}" + (" (uncommitted changes)" if data["commit_info"].get("dirty") else ""))
    return ", ".join(parts)


def markdown(data):
    rows = rows_from(data)
    lines = [f"Machine: {machine_line(data)}.", "",
             "| op | size | device | implementation | median time | GB/s | speed-up vs reference | notes |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        notes = "; ".join(f"{NOTE_NAMES.get(k, k)} {sig(v)}" for k, v in r.notes.items())
        lines.append(f"| {r.op} | {r.size} | {r.device} | {r.impl} | {fmt_time(r.seconds)} | {sig(r.gbps)} | "
                     f"{sig(r.ratio)} | {notes} |")
    if not rows:
        lines.append("| (no timed benchmarks in this file: was it run with --benchmark-disable?) | | | | | | | |")
    return "\n".join(lines) + "\n"


def chart(data, path):
    """Horizontal bars: speed-up against the reference per op and size, one bar per implementation (log scale)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    rows = [r for r in rows_from(data) if r.ratio is not None and not _is_reference(r.impl)]
    groups = list(dict.fromkeys((r.op, r.size, r.device) for r in rows))
    impls = list(dict.fromkeys(r.impl for r in rows))
    fig, ax = plt.subplots(figsize=(9.0, max(2.5, 0.45 * len(groups) + 1.5)))
    colours = {impl: f"C{k % 10}" for k, impl in enumerate(impls)}
    for g, key in enumerate(groups):  # bars of one group centred on its label, whichever implementations it has
        present = [r for r in rows if (r.op, r.size, r.device) == key]
        height = 0.8 / len(present)
        for j, r in enumerate(present):
            ax.barh(g + (j - (len(present) - 1) / 2) * height, r.ratio, height, color=colours[r.impl])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([f"{op}  {size}" + ("" if dev == "cpu" else f"  {dev}") for op, size, dev in groups],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up vs reference (x, log scale; > 1 is faster)")
    ax.set_title("\n".join(textwrap.wrap(machine_line(data), 120)), fontsize=7)
    if impls:
        ax.legend(handles=[Patch(color=colours[i], label=i) for i in impls], fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no benchmark with a reference to compare", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(json_path, out_dir):
    """Read a pytest-benchmark JSON, write report.md and report.png into out_dir; returns the markdown."""
    with open(json_path) as f:
        data = json.load(f)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(data)
    (out_dir / "report.md").write_text(text)
    chart(data, out_dir / "report.png")
    return text


def run_suites(json_path, *, full=True, select=None, threads=None):
    """Run benchmarks/ with pytest-benchmark into json_path; returns pytest's exit code."""
    env = dict(os.environ, N2N_FAST_BENCH_FULL="1" if full else "0")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "pytest", str(HERE), "--benchmark-only", f"--benchmark-json={json_path}",
           "-q", "-p", "no:cacheprovider"]
    if select:
        cmd += ["-k", select]
    print("running:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=HERE.parent, env=env)


def main(argv=None):
    # `n2n-fast bench` runs this script and names itself in N2N_FAST_PROG, so -h shows the command typed
    parser = argparse.ArgumentParser(prog=os.environ.get("N2N_FAST_PROG", "report.py"), description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="render this pytest-benchmark JSON instead of running the suites")
    parser.add_argument("--out", default=str(HERE.parent / "out" / "bench"),
                        help="output folder (default: out/bench in the repository, which git ignores)")
    parser.add_argument("--small", action="store_true", help="run the small CI sizes instead of the full ones")
    parser.add_argument("-k", dest="select", help="pytest -k expression: run only matching benchmarks")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the suites (CPU timings on a machine "
                        "shared with other jobs stall in OpenMP barriers: 1 gives steadier numbers there)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    code = 0
    if args.json:
        json_path = Path(args.json)
        if not json_path.is_file():
            raise FileNotFoundError(f"--json: no such file {json_path}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / "benchmarks.json"
        code = run_suites(json_path, full=not args.small, select=args.select, threads=args.threads)
        if not json_path.is_file():
            print(f"report.py: pytest exited with {code} and wrote no JSON", file=sys.stderr)
            return code or 1
        if code:
            print(f"report.py: pytest exited with {code}; rendering what was measured", file=sys.stderr)
    print(render(json_path, out))
    print(f"wrote {out / 'report.md'} and {out / 'report.png'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
