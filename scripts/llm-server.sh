#!/usr/bin/env bash
# The shared LLM server of docs/DEPLOY.md on this machine: llama.cpp's OpenAI-compatible server from
# llama-cpp-python[server], in a virtual environment of its own (.venv-llm: its extras pin FastAPI and Starlette
# versions that are not Attune's), over the wheel scripts/setup.sh built and the embedded GGUF models.
# Usage: scripts/llm-server.sh [1.5b|0.5b] [PORT]   (then llm.backend: openai, llm.openai_model: qwen2.5-<size>-instruct)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1.5b}
port=${2:-8000}
wheels=${ATTUNE_WHEELS:-$HOME/.cache/attune/wheels}
if [ ! -x .venv-llm/bin/python ]; then
  python3 -m venv .venv-llm
  .venv-llm/bin/pip install -q --find-links "$wheels" -r requirements-llm-server.lock
fi
# The models where Attune keeps them (models.cache_dir, else models/ beside the config, else the XDG data dir).
models=$(.venv/bin/python -c "from attune.config import load_config; print(load_config().models_dir())")
model=$(ls "$models"/qwen2.5-"$size"/*.gguf 2>/dev/null | head -1)
[ -n "$model" ] || { echo "no $models/qwen2.5-$size/*.gguf: run scripts/setup.sh" >&2; exit 1; }
# --interrupt_requests False: by default the server ends the running reply (with [DONE], no finish_reason) as soon
# as another request arrives; with several workers sharing it they cut each other's replies to nothing. Off, the
# requests wait their turn in arrival order.
exec .venv-llm/bin/python -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$port" --n_ctx 4096 \
  --model_alias "qwen2.5-$size-instruct" --interrupt_requests False
