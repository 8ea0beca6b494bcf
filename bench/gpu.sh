#!/usr/bin/env bash
# The paper configurations' training step on one CUDA GPU (bench/gpu.py): TRM on ARC, TRM-MLP on
# Sudoku and HRM on ARC at batch 768 (or the largest that fits), each as our eager step, compiled,
# compiled with CUDA graphs (sync-free), and the reference's own step when a checkout is given.
# One table: seconds per step, tokens/s, TFLOP/s, % of the bf16 matmul peak, peak memory, losses.
# About 8 minutes on one H100 (no mode starts after BUDGET_S seconds; such rows say "skipped").
#
#   bash bench/gpu.sh
#   REF_DIR=/path/to/TinyRecursiveModels bash bench/gpu.sh     # a checkout you provide; not downloaded
#   BATCH=256 STEPS=5 CASES=trm-arc bash bench/gpu.sh
#   TINY=1 bash bench/gpu.sh                                    # toy sizes on the CPU: the script end to end
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
args=(--batch "${BATCH:-0}" --steps "${STEPS:-0}")
[[ -n "${CASES:-}" ]] && args+=(--cases "$CASES")
[[ -n "${MODES:-}" ]] && args+=(--modes "$MODES")

if [[ "${TINY:-0}" == "1" ]]; then
    exec "$PYTHON" -m bench.gpu --device cpu --tiny --threads 1 "${args[@]}"
fi
if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: bench/gpu.sh needs a CUDA GPU and a CUDA build of PyTorch (torch.cuda.is_available() is False);" \
         "TINY=1 bash bench/gpu.sh runs it at toy sizes on the CPU" >&2
    exit 2
fi
exec "$PYTHON" -m bench.gpu --device cuda --budget-s "${BUDGET_S:-420}" "${args[@]}"
