#!/usr/bin/env bash
# Training-step benchmark on a CUDA GPU: configs A-D of bench/train_step.py at the paper's
# global batch size (768), bf16 compute, torch.compile on. Not runnable on CPU-only machines.
#
#   bash bench/gpu.sh                 # A B C D, 10 timed steps each, table to stdout
#   STEPS=20 CONFIGS="A D" bash bench/gpu.sh
#   JSON=1 bash bench/gpu.sh > gpu.jsonl
#
# Utilisation is against a bf16 torch.matmul peak measured on the same GPU in the same process.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="${STEPS:-10}"
CONFIGS="${CONFIGS:-A B C D}"
BATCH="${BATCH:-768}"
PYTHON="${PYTHON:-python}"

if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: bench/gpu.sh needs a CUDA GPU and a CUDA build of PyTorch (torch.cuda.is_available() is False);" \
         "on CPU use: python -m bench.train_step --all" >&2
    exit 2
fi
"$PYTHON" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

json_flag=()
[[ "${JSON:-0}" == "1" ]] && json_flag=(--json)
for c in $CONFIGS; do
    "$PYTHON" -m bench.train_step --config "$c" --device cuda --batch "$BATCH" --dtype bf16 --compile 1 \
        --steps "$STEPS" "${json_flag[@]}"
done
