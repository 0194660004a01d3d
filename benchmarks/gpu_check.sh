#!/usr/bin/env bash
# The GPU check of docs/benchmarks.md ("GPU"), in one call: on a CUDA machine it installs
# what is missing, then runs benchmarks/gpu_check.py (fp32/TF32/fp16/bf16: forward ms for
# 27 and 4x27 frames, end to end through `wma model-server`, frames/s at 1/4/16 clients,
# GPU memory, ratio to the FLOP floor, verdict flips, GPU JPEG decoding) and prints a
# short table last; about 5 minutes on an H100/H200.
#   bash benchmarks/gpu_check.sh             # CUDA machine
#   bash benchmarks/gpu_check.sh --dry-run   # anywhere: CPU, tiny checkpoint, the same path
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh   # an interpreter that has torch
# Offline (no PyPI), WHEELS=dir installs the missing packages from wheels in dir.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--dry-run" ]]; then
    exec .venv/bin/python benchmarks/gpu_check.py "$@"
fi
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    # an interpreter whose torch sees a GPU (a CUDA image's python3), else our own venv
    if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        PY=python3
    else
        VENV=build/gpu-venv
        [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
        PY=$VENV/bin/python
        # PyPI's default Linux torch wheels are CUDA builds.
        "$PY" -c 'import torch, torchvision' 2>/dev/null \
            || "$PY" -m pip install --quiet torch torchvision
    fi
fi
# The project (no dependency resolution) and whatever of its serving stack is missing.
NEEDS=(transformers opencv-python-headless fastapi uvicorn uvloop httptools orjson
       python-multipart pydantic pydantic-settings pyyaml httpx prometheus-client
       opentelemetry-sdk opentelemetry-exporter-otlp-proto-http pillow matplotlib numpy)
missing=()
for pkg in "${NEEDS[@]}"; do
    "$PY" -m pip show --quiet "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ -n "${WHEELS:-}" ]]; then
        "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "${missing[@]}"
    else
        "$PY" -m pip install --quiet "${missing[@]}"
    fi
fi
"$PY" -m pip show --quiet wma-ensemble >/dev/null 2>&1 \
    || "$PY" -m pip install --quiet --no-deps --no-build-isolation -e .
export PYTHONUNBUFFERED=1
exec timeout 540 "$PY" benchmarks/gpu_check.py "$@"
