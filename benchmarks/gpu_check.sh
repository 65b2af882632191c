#!/usr/bin/env bash
# One-GPU check at paper shape (bf16, random weights, nothing downloaded), under 5 minutes on an
# H100-class GPU: prefill and decode tokens/s, peak memory, phase-3 training step at batch 3
# (cached encoder features vs recomputing the encoders). Extra arguments go to gpu_check.py,
# e.g. `bash benchmarks/gpu_check.sh --json`. Needs the nanoemox package importable
# (`pip install -e .` with a CUDA torch build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
exec timeout 290 "$PY" benchmarks/gpu_check.py --device "${DEVICE:-cuda}" "$@"
