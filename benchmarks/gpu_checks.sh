#!/usr/bin/env bash
# The GPU figures issue #4 asks for, as one prepared run on a lent GPU machine (the `device` tool's `run`):
# faces/s of the scoring ensemble at batch 32..256 and the share of the GPU's dense bf16 peak, eager and compiled.
#
#   run(command="bash benchmarks/gpu_checks.sh", timeout_s=540)        # about 5 minutes on an H100 / H200
#
# Why untrained weights: the lent machine is bare and reaches nothing; the converted weights (the WRN alone is 94 MB)
# do not fit the 64 MiB working tree that travels. Speed does not depend on weight values: --random-weights builds
# the same networks (same FLOPs), and the device image's python3 already holds everything this path imports
# (torch, numpy, Pillow, SciPy, tqdm). Results land in $OUT (or ./gpu_results when run elsewhere); copy them into
# benchmarks/results/scoring_speed_gpu.md with the device named.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
export PYTHONPATH=. PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
dev="${DEVICE:-cuda}"  # DEVICE=cpu BATCHES=4 TOP=4: a dry run of this script on a CPU
batches="${BATCHES:-32,64,128,256}"
top="${TOP:-256}"
log="$out/gpu_checks.log"

step() {  # run one check; a failure is logged and the next check still runs
    echo "== $*" | tee -a "$log"
    timeout 240 "$@" 2>&1 | grep -v -i "warning" | tee -a "$log" || echo "!! failed: $*" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$log"
step "$py" benchmarks/scoring_speed.py --device "$dev" --random-weights --batch-sizes "$batches" --repeats 5 \
    --out "$out/scoring_speed_gpu.md"
step "$py" benchmarks/scoring_speed.py --device "$dev" --random-weights --batch-sizes "$top" --repeats 5 --compile \
    --out "$out/scoring_speed_gpu_compiled.md"
echo "results in $out" | tee -a "$log"
