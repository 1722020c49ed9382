#!/usr/bin/env bash
# One GPU check, under 5 minutes on a bare GPU machine with the repository alone:
# the GPU tests (pytest -m gpu) and the GPU benchmark; results into $OUT (or ./gpu-results).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1
py="${PYTHON:-python3}"
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$py" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
  "$py" -c "import cupy; print('cupy', cupy.__version__)" 2>&1 || true
} | tee "$out/env.txt"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device: nothing to run" | tee -a "$out/env.txt"; exit 2
fi
# The package's own dependencies that the GPU image may lack are not needed by these checks.
echo "== pytest -m gpu"
timeout 150 "$py" -m pytest -q -m gpu -p no:cacheprovider -o addopts="" tests/backends/test_gpu.py 2>&1 | tee "$out/pytest_gpu.txt"
echo "== benchmark"
timeout 120 "$py" benchmarks/bench_gpu.py --out "$out" 2>&1 | tee "$out/bench_gpu.txt"
echo "results in $out"
