"""benchmarks/report.py's tables beside the device-time one: host-time rows (the GPU dry run, where a launch computes
nothing) never shown as a speed; the training-step sweep as images/s (ms/step); benchmarks/gpu_results.py's section."""
import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_report_tables_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _module("report")
gpu_results = _module("gpu_results")


def _bench(name, median, extra, fullname="bench_x.py::t"):
    return {"name": name, "fullname": fullname, "group": None, "params": {}, "extra_info": extra,
            "stats": {"median": median}}


def _data():
    benches = [
        # what `n2n-fast bench` once rendered as `cpu | triton` at 363x: a dry-run host time beside a reference row
        _bench("test_op_host_time[l2]", 1.1e-4, {"op": "loss l2", "size": "1x1x8x8", "impl": "triton",
                                                 "device": "dry run", "launches": 3, "host_us": 117.0,
                                                 "baseline": "F.mse_loss fwd+bwd", "baseline_us": 39.0},
               fullname="benchmarks/bench_dryrun.py::test_op_host_time[l2]"),
        _bench("test_l2_ref", 4e-2, {"op": "loss l2", "size": "1x1x8x8", "impl": "reference", "device": "cpu"}),
    ]
    for batch, crop in ((1, 128), (4, 128), (4, 256)):
        for impl, seconds in (("reference", 0.4), ("graph", 0.01), ("tuned", 0.03), ("typical", 0.05)):
            benches.append(_bench(f"test_train_step[{impl}-{batch}-{crop}]", seconds * batch,
                                  {"op": "train step n2n l2 (paper U-Net)", "size": f"{batch}x3x{crop}x{crop}",
                                   "impl": impl, "device": "GPU X", "batch": batch, "crop": crop,
                                   "images_per_s": 1 / seconds, "ms_per_step": seconds * batch * 1e3,
                                   **({"num_workers": 7} if impl == "typical" else {})}))
    return {"machine_info": {"gpu": "GPU X", "cuda": "13.0", "cudnn": 91000, "torch": "2.x"},
            "benchmarks": benches}


def test_host_time_rows_have_their_own_table_and_no_speed_up():
    data = _data()
    assert all(r.device != "dry run" for r in report.rows_from(data))
    text = report.markdown(data)
    device_table = text.split("Host time per call")[0]
    assert "117" not in device_table and "dry run" not in device_table
    [row] = [line for line in text.splitlines() if line.startswith("| loss l2 | 1x1x8x8 | 3 |")]
    assert row.split("|")[4:9] == [" 117.0 ", " F.mse_loss fwd+bwd ", " 39.00 ", " 78.00 ", " — "]
    assert "CUDA 13.0" in text and "cuDNN 91000" in text


def test_the_sweep_is_a_table_of_images_per_second_and_a_chart(tmp_path):
    data = _data()
    text = report.markdown(data)
    assert "DataLoader with 7 workers" in text
    header = next(line for line in text.splitlines() if line.startswith("| batch x crop |"))
    assert header == "| batch x crop | reference | graph | tuned | typical |"
    assert "| 4 x 256² | 2.500 (1600) | 100.0 (40.00) | 33.33 (120.0) | 20.00 (200.0) |" in text
    assert report.sweep_chart(data, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")


def test_gpu_results_renders_what_gpu_check_wrote_and_says_what_is_missing(tmp_path):
    data = _data()
    (tmp_path / "sweep128.json").write_text(json.dumps(dict(data, benchmarks=data["benchmarks"][:6])))
    (tmp_path / "sweep256.json").write_text(json.dumps(dict(data, benchmarks=data["benchmarks"][6:])))
    (tmp_path / "loss.json").write_text('{"machine_info": ')  # cut short
    (tmp_path / "versions.json").write_text(json.dumps({"gpu": "GPU X", "torch": "2.x", "cuda": "13.0",
                                                        "cudnn": 91000, "triton": "3.x"}))
    (tmp_path / "steps.log").write_text("[0 s] GPU sm_9.0\n")
    text = gpu_results.section(tmp_path)
    assert "GPU X" in text and "[0 s] GPU sm_9.0" in text
    assert "graph vs tuned at 4 x 128² (train step n2n l2 (paper U-Net)): 3.00x (goal >= 2.0x: met)" in text
    assert "graph vs tuned at 4 x 256² (train step n2n l2 (paper U-Net)): 3.00x (goal >= 1.2x: met)" in text
    assert "Not measured: tiling.json" in text and "Not measured: loss.json" in text and "Not measured: noise.json" in text and "no gpu_tests.xml" in text
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    assert gpu_results.main([str(tmp_path), "--results", str(results)]) == 0
    assert results.read_text().startswith("# Benchmark results\n") and "GPU X" in results.read_text()
