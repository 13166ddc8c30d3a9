#!/usr/bin/env bash
# One-shot GPU check, for the few minutes a GPU machine is lent (docs/design.md, "Proofs without a GPU").
# That machine reaches no package registry and may carry an older torch/triton: install this checkout without
# downloading anything, build the extension for the visible GPU only, then run, each step's result written to
# $OUT (or out/gpu_check) as soon as it exists, so a step cut short still leaves the earlier ones:
#   1. n2n-fast info                      which backend serves each op there
#   2. pytest -m gpu                      every fast path with its defaults against the reference, train() included
#   3. full-size benchmarks               training step and ops, pytest-benchmark JSON
# Budget: under 5 minutes in all, so that a rerun still fits in the lease.
#     bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu_check}"
mkdir -p "$out"
start=$SECONDS
log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$out/steps.log"; }

capability=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || {
  log "no CUDA GPU visible to torch"; exit 1; }
export TORCH_CUDA_ARCH_LIST="$capability" CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
log "GPU sm_$capability; installing (no index, no deps, no build isolation)"
python -m pip install --no-index --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1 \
  || { log "install failed (tail of install.log follows)"; tail -30 "$out/install.log"; exit 1; }
python -m n2n_fast info > "$out/info.txt" 2>&1
log "info written"

timeout 150 python -m pytest -m gpu -q -p no:cacheprovider -o addopts="" -rs tests/ --junitxml="$out/gpu_tests.xml" \
  > "$out/gpu_tests.log" 2>&1
log "pytest -m gpu exit $?: $(tail -1 "$out/gpu_tests.log")"

N2N_FAST_BENCH_FULL=1 timeout 120 python -m pytest -q -p no:cacheprovider -o addopts="" -m "not dryrun" \
  benchmarks/bench_train.py benchmarks/bench_loss.py benchmarks/bench_noise.py -k "not compile" \
  --benchmark-only --benchmark-json="$out/benchmarks.json" > "$out/benchmarks.log" 2>&1
log "benchmarks exit $?: $(tail -1 "$out/benchmarks.log")"
python benchmarks/report.py --json "$out/benchmarks.json" > "$out/report.txt" 2>&1 && log "report rendered"
