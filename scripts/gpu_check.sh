#!/usr/bin/env bash
# Device check for a machine with a CUDA GPU: the GPU-marked tests, then the default
# suite on cuda and its leaderboard. Finishes in a few minutes on one H100/H200.
# Uses the machine's python3 (which holds torch there); installs only what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if ! "$python" -c "import torch, numpy, pyarrow, joblib, tqdm, pytest, ijson, matplotlib" 2>/dev/null; then
    "$python" -m pip install --quiet numpy pyarrow joblib tqdm pytest ijson matplotlib
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
"$python" -m pytest -q -m gpu tests
results="${OUT:-$(mktemp -d)}/gpu-results"
"$python" -m harness run --device cuda --results "$results" --fresh
