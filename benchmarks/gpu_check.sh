#!/usr/bin/env bash
# Every GPU check in one run, within 8 minutes: the CUDA training tests (bf16 autocast, fused AdamW, resume,
# torchrun with NCCL), then the benchmark's gpu section (sampling on CUDA; training tokens/s per GPU, float32
# against bf16 + fused). Without a GPU it says so and exits 0.
#
#   bash benchmarks/gpu_check.sh [RESULTS.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu check: no GPU (torch.cuda.is_available() is false): nothing to check"
    exit 0
fi
"$PYTHON" -c "import torch; print('gpu check:', torch.cuda.device_count(), 'x', torch.cuda.get_device_name())"
timeout 240 "$PYTHON" -m pytest tests/test_gpu_training.py -q -p no:cacheprovider
timeout 220 "$PYTHON" benchmarks/run.py --only gpu ${1:+--json "$1"}
