"""Benchmark report: run the pytest-benchmark suites, keep their JSON, render a table and a chart.

    python benchmarks/report.py                       run benchmarks/ at full size (N2N_FAST_BENCH_FULL=1), render
    python benchmarks/report.py --small               the small CI sizes (a quick look)
    python benchmarks/report.py --json results.json   render an existing pytest-benchmark JSON, run nothing
    n2n-fast bench [same options]                     the same, from the installed command

Writes `<out>/benchmarks.json` (pytest-benchmark's own file), `<out>/report.md` and `<out>/report.png` (plus
`<out>/sweep.png` when the training-step sweep ran; charts need matplotlib and are skipped, said so, without it).
The markdown has up to three tables: device time (ops and steps against the reference), the training-step sweep
(images/s and ms/step per batch and crop, one column per implementation) and host time: rows measured through the
GPU dry run (benchmarks/bench_dryrun.py), where launches compute nothing, so their time is host work per call, shown
beside the hand-written baseline's and never as a speed-up or GB/s.
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
LABELS = {"op", "size", "impl", "device", "bytes", "gbps", "ratio",  # extra_info keys with their own column
          "batch", "crop", "noise"}  # (the size and op already say these)
NOTE_NAMES = {"images_per_s": "images/s", "outside_model": "share outside model", "peak_mib": "peak MiB",
              "psnr_vs_float32": "PSNR vs fp32 (dB)", "design_bytes": "bytes moved by design", "seconds": "wall s",
              "ms_per_step": "ms/step", "host_us_per_step": "host µs/step", "num_workers": "DataLoader workers"}
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


def _is_host_time(bench):
    """Measured through the dry run: the launch is a no-op, the time is host work (never a speed)."""
    info = bench.get("extra_info") or {}
    return ("host_us" in info or "dry run" in str(info.get("device", "")) or "dry run" in str(info.get("op", ""))
            or "bench_dryrun" in str(bench.get("fullname", "")))


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
        if not stats.get("median") or _is_host_time(bench):
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


def host_rows(data):
    """[(op, size, launches, host us per call, baseline name, baseline us, us through Triton's JIT)] of the dry-run
    rows: the host's time per call (extra_info host_us, else the median), the baseline the benchmark timed beside it
    and the same call with every launch through `kernel[grid](...)` (None where not measured)."""
    rows = []
    for bench in data.get("benchmarks", []):
        stats = bench.get("stats") or {}
        if not stats.get("median") or not _is_host_time(bench):
            continue
        info = bench.get("extra_info") or {}
        op, size, _ = _label_from(bench)
        host_us = float(info.get("host_us", stats["median"] * 1e6))
        launches = info.get("launches", info.get("triton_launches_per_step"))
        rows.append((op, size, launches, host_us, info.get("baseline"), info.get("baseline_us"),
                     info.get("host_us_through_jit")))
    return sorted(rows, key=lambda r: r[0])


SWEEP_OP = "train step"  # ops whose rows carry batch and crop (benchmarks/bench_train.py)


def sweep_rows(data):
    """{(op, device): {(batch, crop): {impl: (images/s, ms/step)}}} of the training-step rows with batch and crop."""
    table = {}
    for bench in data.get("benchmarks", []):
        stats, info = bench.get("stats") or {}, bench.get("extra_info") or {}
        if not stats.get("median") or "batch" not in info or _is_host_time(bench):
            continue
        op, _, impl = _label_from(bench)
        if not op.startswith(SWEEP_OP):
            continue
        device = str(info.get("device") or (data.get("machine_info") or {}).get("gpu") or "cpu")
        seconds = float(stats["median"])
        cell = table.setdefault((op, device), {}).setdefault((int(info["batch"]), int(info["crop"])), {})
        cell[impl] = (float(info.get("images_per_s", info["batch"] / seconds)), seconds * 1e3)
    return table


def _sweep_impls(cells):
    impls = list(dict.fromkeys(impl for cell in cells.values() for impl in cell))
    known = [i for i in IMPL_ORDER + ("graph", "naive", "tuned", "typical", "tuned-compile") if i in impls]
    return list(dict.fromkeys(known + sorted(impls)))


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
    usable = f", {m['cores_usable']} usable" if m.get("cores_usable") else ""
    parts = [f"CPU {cpu.get('brand_raw') or m.get('processor') or m.get('machine', '?')} "
             f"({cpu.get('count', '?')} cores{usable}, torch threads {m.get('torch_threads', '?')})",
             f"GPU {m.get('gpu') or 'none'}", f"torch {m.get('torch', '?')}"]
    if m.get("gpu"):
        parts += [f"CUDA {m.get('cuda') or '?'}", f"cuDNN {m.get('cudnn') or '?'}"]
    parts += [f"triton {m.get('triton') or '-'}",
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


def _note(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else sig(value)


def markdown(data):
    rows = rows_from(data)
    lines = [f"Machine: {machine_line(data)}.", ""]
    if rows or not host_rows(data):
        lines += ["| op | size | device | implementation | median time | GB/s | speed-up vs reference | notes |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        notes = "; ".join(f"{NOTE_NAMES.get(k, k)} {_note(v)}" for k, v in r.notes.items())
        lines.append(f"| {r.op} | {r.size} | {r.device} | {r.impl} | {fmt_time(r.seconds)} | {sig(r.gbps)} | "
                     f"{sig(r.ratio)} | {notes} |")
    if not rows and not host_rows(data):
        lines.append("| (no timed benchmarks in this file: was it run with --benchmark-disable?) | | | | | | | |")
    for (op, device), cells in sweep_rows(data).items():
        impls = _sweep_impls(cells)
        workers = sorted({(b.get("extra_info") or {}).get("num_workers") for b in data.get("benchmarks", [])}
                         - {None})
        lines += ["", f"Sweep: {op} on {device}, images/s (ms/step) per batch x crop"
                  + (f"; typical = DataLoader with {', '.join(map(str, workers))} workers" if workers else "") + ".",
                  "", "| batch x crop | " + " | ".join(impls) + " |", "| --- |" + " ---: |" * len(impls)]
        for batch, crop in sorted(cells, key=lambda k: (k[1], k[0])):
            cell = cells[batch, crop]
            lines.append(f"| {batch} x {crop}² | " + " | ".join(
                f"{sig(cell[i][0])} ({sig(cell[i][1])})" if i in cell else "—" for i in impls) + " |")
    host = host_rows(data)
    if host:
        lines += ["", "Host time per call, measured through the GPU dry run (tests/dryrun.py: Triton's real binder "
                  "and launcher, the launch a no-op): the host work a GPU call pays, not a speed.", "",
                  "| host-time op | size | launches | host µs per call | baseline | baseline µs | excess µs | "
                  "µs through Triton's JIT |", "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        for op, size, launches, host_us, baseline, baseline_us, jit_us in host:
            excess = None if baseline_us is None else host_us - baseline_us
            lines.append(f"| {op} | {size} | {'—' if launches is None else launches} | {sig(host_us)} | "
                         f"{baseline or '—'} | {sig(baseline_us)} | {sig(excess)} | {sig(jit_us)} |")
    return "\n".join(lines) + "\n"


def sweep_chart(data, path):
    """images/s against batch, one line per implementation, one panel per crop (log-log); False when no sweep."""
    table = sweep_rows(data)
    if not table:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = [(op, device, crop) for (op, device), cells in table.items() for crop in sorted({c for _, c in cells})]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (op, device, crop) in zip(axes[0], panels):
        cells = table[op, device]
        for k, impl in enumerate(_sweep_impls(cells)):
            points = sorted((b, cells[b, c][impl][0]) for b, c in cells if c == crop and impl in cells[b, c])
            if points:
                ax.plot(*zip(*points), marker="o", color=f"C{k % 10}", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("images/s")
        ax.set_title(f"{op.replace(' (paper U-Net)', '')}, crop {crop}²\n{device}", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


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
    try:
        chart(data, out_dir / "report.png")
        sweep_chart(data, out_dir / "sweep.png")
    except ImportError as missing:  # matplotlib is optional: the tables are the report
        print(f"report.py: no charts ({missing}; pip install matplotlib)", file=sys.stderr)
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
