#!/usr/bin/env bash
# One GPU check, under 5 minutes, on a GPU machine with the repository (and whatever Python it has):
#   1. pytest -m "gpu or kernel"  (GPU parity of the torch and CuPy backends; the kernel's CPU-harness
#      and NVRTC tests)                                                                  <= 100 s
#   2. benchmarks/bench_gpu.py: 160m/1b/2.8b-shaped full networks, CuPy vs torch in one process,
#      CUDA-event medians, extra memory                                                  <= 110 s
#   3. benchmarks/bench_gpu_overhead.py: Pythia-160m-shaped bf16 training step vs a full
#      analysis every 50 steps                                                           <= 60 s
#   4. the two-process FSDP test, only if two GPUs are present                           <= 30 s
# Every step is time-boxed and logged under $OUT (default ./gpu-results); a failing step does not stop the
# others. Exit status: 0 if every step that ran passed, 1 otherwise, 2 without a CUDA device.
# Offline machines: set WHEELHOUSE to a folder of wheels (cupy-cuda12x, cuda-pathfinder, ...) to install
# missing packages with pip --no-index.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1
py="${PYTHON:-python3}"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $out/NAME.txt, remember failures
  local name="$1" secs="$2"; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${secs}s)"
  timeout --signal=TERM --kill-after=10 "$secs" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.txt"
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
  [ "$rc" -eq 0 ] || status=1
}
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$py" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'gpus', torch.cuda.device_count())"
  for m in cupy transformers lightning pytest; do
    "$py" -c "import $m; print('$m', getattr($m, '__version__', '?'))" 2>/dev/null || echo "$m: not installed"
  done
} 2>&1 | tee "$out/env.txt"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device: nothing to run" | tee -a "$out/env.txt"; exit 2
fi
if [ -n "${WHEELHOUSE:-}" ] && ! "$py" -c "import cupy" 2>/dev/null; then
  step install 60 "$py" -m pip install --no-index --find-links "$WHEELHOUSE" cupy-cuda12x nvidia-cuda-nvrtc-cu12
fi
"$py" -c "import cupy" 2>/dev/null || echo "CuPy missing: the cupy cases will fail with the install hint" | tee -a "$out/env.txt"

step pytest 100 "$py" -m pytest -q -rs -m "gpu or kernel" -p no:cacheprovider -o addopts="" tests/backends \
  --junitxml="$out/pytest.xml"
step bench_gpu 110 "$py" benchmarks/bench_gpu.py --out "$out" --budget 8
step bench_gpu_overhead 60 "$py" benchmarks/bench_gpu_overhead.py --out "$out" --every 50
gpus=$("$py" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  step fsdp 30 "$py" -m pytest -q -p no:cacheprovider -o addopts="" tests/integration/test_fsdp.py
else
  echo "== fsdp: skipped ($gpus GPU)" | tee -a "$out/steps.txt"
fi
echo "results in $out (status $status)"
exit "$status"
