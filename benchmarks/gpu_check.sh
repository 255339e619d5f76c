#!/usr/bin/env bash
# The GPU check: one command, under 8 minutes, on a machine with an NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh [results.json]
#
# Installs NOTHING. It needs, already installed in the active Python: fnnet (pip install -e .),
# JAX with CUDA (pip install -U "jax[cuda12]") and, for the PyTorch CUDA rows, a CUDA build
# of torch (optional: without it those rows are skipped with a note). It stops with a clear
# message when JAX sees no GPU.
#
# Prints: the GPU (nvidia-smi), JAX's devices, the matmul peak in float32 and bfloat16
# (case 6), the MLP steps 784-512-512-10 and 8192^3 (float32 and bfloat16) manual vs
# autodiff vs PyTorch CUDA with their share of the peak (cases 2, 3), the GPT and LSTM train
# steps manual vs autodiff vs PyTorch CUDA with trace / XLA compile times and their share of
# the float32 peak (cases 7, 9), and causal attention at T = 1024 and 4096, full vs lean vs
# jax.vjp (case 8); then the targets as PASS/MISS. No case starts after 400 s
# (--max-seconds), and the whole run is killed at 470 s (timeout), so it ends within 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"
start=$(date +%s)

echo "## GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
else
    echo "nvidia-smi not found"
fi

echo "## JAX"
python - <<'EOF' || exit 2
import sys
import jax
print("jax", jax.__version__, "devices:", jax.devices())
if not any(d.platform == "gpu" for d in jax.devices()):
    sys.exit("JAX sees no GPU. This script installs nothing: install JAX with CUDA yourself "
             "(pip install -U \"jax[cuda12]\") on a machine with an NVIDIA driver, and rerun.")
EOF

echo "## PyTorch (optional peer)"
python -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())" \
    || echo "torch not importable: the PyTorch CUDA rows are skipped"

echo "## benchmarks"
timeout 470 python -m benchmarks --device gpu --cases peak,mlp,large,gpt,lstm,attention \
    --max-seconds 400 --json "$out"
status=$?
echo "## gpu_check: exit status $status, $(( $(date +%s) - start )) s in all; JSON: $out"
exit $status
