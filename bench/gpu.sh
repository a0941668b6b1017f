#!/usr/bin/env bash
# The GPU benchmark in one command, for a machine with an NVIDIA GPU and no network.
#
#   bench/gpu.sh            # on the GPU machine, from the repo root (or anywhere: it cds there)
#   bench/gpu.sh --dry-run  # here, on CPU: the same steps on the tiny model, to check the script
#
# What it needs there (nothing is downloaded): a Python with vidserve's GPU profile installed
# (`scripts/setup_env.py --profile gpu`, made before the machine lost its network, or $PYTHON
# pointing at one), and the model: VLLM_MODEL_PATH (a local directory or an HF cache snapshot),
# else the default Qwen/Qwen2.5-VL-7B-Instruct found in the Hugging Face cache (HF_HOME).
# It prints, for a 1-minute 720p video (each request a new one: the cold path) at concurrency 1,
# 4 and 16 (bench/gpu_load.py): videos per minute, time to first token p50/p95, end to end, and
# the decode and engine shares; then the Transcriber's real-time factor on the GPU
# (bench/asr.py --device cuda) when faster-whisper and its model are there.
# Exit status: 0 measured, 2 the machine lacks something (said on stderr), else the bench's.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi

lacks() { echo "bench/gpu.sh: $*" >&2; exit 2; }

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import vllm, ray.serve, av, cv2" 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
[[ -n "$python" ]] || lacks "no Python with vllm, ray[serve], av and opencv: run scripts/setup_env.py --profile gpu (with network), or set PYTHON"

if (( dry_run )); then
  echo "dry run on CPU: the tiny model, concurrency 1, one short video" >&2
  exec "$python" bench/gpu_load.py --profile cpu --concurrency 1 --requests-per-level 1 \
    --seconds 10 --max-tokens 8 "$@"
fi

command -v nvidia-smi >/dev/null || lacks "no nvidia-smi: this is not a GPU machine (--dry-run checks the script on CPU)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || lacks "torch sees no CUDA device: the Python at $python has a CPU build (use the gpu profile)"

if [[ -z "${VLLM_MODEL_PATH:-}" ]]; then
  hub="${HF_HOME:-$HOME/.cache/huggingface}/hub/models--Qwen--Qwen2.5-VL-7B-Instruct/snapshots"
  snapshot="$(ls -d "$hub"/*/ 2>/dev/null | head -n 1 || true)"
  [[ -n "$snapshot" ]] || lacks "no model: set VLLM_MODEL_PATH, or put Qwen/Qwen2.5-VL-7B-Instruct in the HF cache ($hub)"
  export VLLM_MODEL_PATH="${snapshot%/}"
fi
echo "model: $VLLM_MODEL_PATH" >&2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$python" bench/gpu_load.py --profile gpu "$@"

if "$python" -c "import faster_whisper" 2>/dev/null; then
  "$python" bench/asr.py --device cuda --minutes 1 --threads 1 --no-fallback \
    || echo "bench/gpu.sh: the ASR row failed (its model may not be on this machine)" >&2
fi
