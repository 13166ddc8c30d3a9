#!/usr/bin/env bash
# One-shot GPU check, for the few minutes a GPU machine is lent (docs/design.md, "Proofs without a GPU").
# That machine reaches no package registry and may carry an older torch/triton: install this checkout without
# downloading anything, build the extension for the visible GPU only, then run, each step's result written to
# $OUT (or out/gpu_check) as soon as it exists, so a step cut short still leaves the earlier ones:
#   1. install + build for the visible GPU, n2n-fast info      which backend serves each op there
#   2. pytest -m gpu                      every fast path with its defaults against the reference, train() in every
#                                         mode, the graph step's proofs (bitwise-equal graphed runs, graph vs eager)
#   3. the training-step sweep            batch {1,4,16,64} x crop {128,256} (+ 16 x 256² Poisson), one run per
#                                         crop (pytest-benchmark writes JSON only at the end): graph, eager
#                                         defaults, tuned and naive hand-written steps, the typical DataLoader loop,
#                                         the reference (benchmarks/bench_train.py)
#   4. tiled inference against whole-image (benchmarks/bench_tiling.py)
#   5. the loss and noise kernels' GB/s against the bytes they must move (bench_loss.py, bench_noise.py); the
#      3-D training step (bench_train3d.py) and a 300 x 1000 x 1000 tomogram denoised in tiles (bench_tiled3d.py)
#   6. the quality study at the paper's settings (U-Net 48, batch 4, crop 256, lr 3e-4), Gaussian sigma 25, for
#      the seconds left: held-out PSNR of N2N against N2C (benchmarks/quality.py)
# Budget: at most 8 minutes in all on an H100/H200 (each step under `timeout`, the quality study sized to what is
# left), so that a rerun still fits in the lease. Then, on any machine, render what it wrote into
# benchmarks/RESULTS.md:
#     bash benchmarks/gpu_check.sh                       (OUT=... to choose the folder)
#     python benchmarks/gpu_results.py out/gpu_check     (appends a dated section to benchmarks/RESULTS.md)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu_check}"
budget="${N2N_FAST_GPU_CHECK_SECONDS:-470}"  # 8 minutes less a margin for the last write
mkdir -p "$out"
start=$SECONDS
log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$out/steps.log"; }
left() { echo $((budget - (SECONDS - start))); }
# step NAME SECONDS CMD...: run CMD under `timeout` (never past the budget), its output in $out/NAME.log
step() {
  local name=$1 limit=$2; shift 2
  local room; room=$(left)
  [ "$limit" -gt "$room" ] && limit=$room
  if [ "$limit" -lt 10 ]; then log "$name skipped: ${room} s left"; return; fi
  timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && log "$name: cut at its ${limit} s limit" || log "$name exit $rc: $(tail -1 "$out/$name.log")"
}

capability=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || {
  log "no CUDA GPU visible to torch"; exit 1; }
export TORCH_CUDA_ARCH_LIST="$capability" CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
# CI builds the extension for sm_80 and sm_90 (.ci/run): on such a GPU, a copy that loads with CUDA is reused
if [[ "$capability" == 8.0 || "$capability" == 9.0 ]] \
  && python -c "from n2n_fast import _ext; assert _ext.built_with_cuda(), _ext.reason()" > /dev/null 2>&1; then
  log "GPU sm_$capability; the extension in this checkout (sm_80 + sm_90) loads with CUDA kernels: no rebuild"
  # the checkout must still be the package Python imports (PYTHONPATH: no install needed for that)
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  log "GPU sm_$capability; installing (no index, no deps, no build isolation)"
  timeout 180 python -m pip install --no-index --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1 \
    || { log "install failed (tail of install.log follows)"; tail -30 "$out/install.log"; exit 1; }
fi
python -m n2n_fast info > "$out/info.txt" 2>&1
python - > "$out/versions.json" 2> "$out/versions.log" <<'PY'
import json, torch
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = None
print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "triton": triton_version}))
PY
log "installed; info and versions written: $(cat "$out/versions.json")"

step gpu_tests 100 python -m pytest -m gpu -q -p no:cacheprovider -o addopts="" -rs tests/ \
  --junitxml="$out/gpu_tests.xml"

bench() {  # bench NAME SECONDS FILES... [pytest options]: full-size pytest-benchmark into $out/NAME.json
  local name=$1 limit=$2; shift 2
  N2N_FAST_BENCH_FULL=1 step "$name" "$limit" python -m pytest -q -p no:cacheprovider -o addopts="" -m "not dryrun" \
    "$@" --benchmark-only --benchmark-json="$out/$name.json"
}
# the sweep in two runs (pytest-benchmark writes its JSON only at the end: a run cut short leaves none)
bench sweep128 60 benchmarks/bench_train.py -k "not compile and x128x128"
bench sweep256 90 benchmarks/bench_train.py -k "not compile and x256x256"
# 2048²: tiled (reference, extension, bf16) against whole-image, gather and blend; not the 4096² and 16384² cases
bench tiling 35 benchmarks/bench_tiling.py -k "not memmap and not denoise_4096"
# ~80 op benchmarks: a quarter second each (pytest-benchmark's default is a second)
bench loss 40 benchmarks/bench_loss.py -k "not compile" --benchmark-max-time=0.25 --benchmark-min-rounds=3
bench noise 40 benchmarks/bench_noise.py -k "not compile" --benchmark-max-time=0.25 --benchmark-min-rounds=3
# volumes: the 3-D training step at the issue's sizes (2 x 1 x 32 x 64², 4 x 1 x 64 x 128², features 48), then a
# 300 x 1000 x 1000 float32 tomogram at full width denoised in 3-D tiles (whole-volume inference cannot fit)
bench train3d 45 benchmarks/bench_train3d.py
N2N_FAST_BENCH_VOLUME=300x1000x1000 N2N_FAST_BENCH_FEATURES=48 bench tiled3d 90 benchmarks/bench_tiled3d.py

# the quality study: 2 runs (N2N, N2C) of the paper's U-Net; about 40 steps/s at 4 x 256² with the graph on an
# H100 (the sweep's images/s say what it was), validation and start-up included, 25 s kept for the rest
room=$(( $(left) - 25 ))
steps=$(( room > 0 ? room * 40 / 2 / 100 * 100 : 0 ))
if [ "$steps" -ge 100 ]; then
  log "quality study: $steps steps per run in the ${room} s left"
  step quality "$room" python benchmarks/quality.py --only gaussian --steps "$steps" --batch-size 4 --crop 256 \
    --features 48 --lr 3e-4 --threads 0 --out "$out/quality"
else
  log "quality study skipped: ${room} s left"
fi
python benchmarks/gpu_results.py "$out" --print > "$out/results_section.md" 2>&1 && log "results section rendered"
log "done in $((SECONDS - start)) s"
