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
# the active Python (plain `python` where there is one, else `python3`); this checkout is
# put first on the import path, so fnnet needs no install step
py="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "## GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
else
    echo "nvidia-smi not found"
fi

echo "## JAX"
"$py" - <<'EOF' || exit 2
import os, sys
import jax
print("jax", jax.__version__, "devices:", jax.devices())
if os.environ.get("FNNET_BENCH_GPU_ON_CPU") != "1" and not any(d.platform == "gpu" for d in jax.devices()):
    sys.exit("JAX sees no GPU. This script installs nothing: install JAX with CUDA yourself "
             "(pip install -U \"jax[cuda12]\") on a machine with an NVIDIA driver, and rerun.")
# correctness on the GPU before speed: a small GPT's hand-written gradient in float64 on the
# GPU against autodiff and finite differences
jax.config.update("jax_enable_x64", True)
import fnnet as fn
model = fn.models.gpt(11, 8, d_model=16, num_heads=2, num_layers=2)
ks = jax.random.split(jax.random.PRNGKey(0), 3)
params = jax.tree.map(lambda a: a.astype("float64"), model.init(ks[0], (8,)))
ids = jax.random.randint(ks[1], (2, 8), 0, 11)
labels = jax.random.randint(ks[2], (2, 8), 0, 11)
rep = fn.check_grads(model, fn.losses.softmax_cross_entropy, params, ids, labels)
print("gradient check on", jax.tree.leaves(params)[0].devices(), "->", "ok" if rep else "FAIL")
if not rep:
    print(rep)
    sys.exit(3)
EOF

echo "## PyTorch (optional peer)"
"$py" -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())" \
    || echo "torch not importable: the PyTorch CUDA rows are skipped"

echo "## benchmarks"
timeout 470 "$py" -m benchmarks --device gpu --cases peak,mlp,large,gpt,lstm,attention \
    --max-seconds 400 --json "$out"
status=$?
echo "## gpu_check: exit status $status, $(( $(date +%s) - start )) s in all; JSON: $out"
exit $status
