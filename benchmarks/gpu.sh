#!/usr/bin/env bash
# One short GPU benchmark (under ~8 minutes): ViT-B/16 training images/s of ltkit against a timm-style
# loop, and NS-CE against plain CE at 8,142 + 40,710 classes in bf16. See benchmarks/gpu_bench.py.
#
#   bash benchmarks/gpu.sh                      # from the repository root, on a machine with a GPU
#   GPU_BENCH_SMOKE=1 bash benchmarks/gpu.sh    # tiny ViT on the CPU: checks that the script runs
#
# Needs torch, timm, numpy, pillow and pyyaml; ltkit itself need not be installed (PYTHONPATH) and
# nothing is downloaded. The log goes to $OUT/gpu_bench.log when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
LOG=/dev/null
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; LOG="$OUT/gpu_bench.log"; fi
{
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo no-git)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  timeout 420 "$PY" benchmarks/gpu_bench.py "$@"
} 2>&1 | tee "$LOG"
