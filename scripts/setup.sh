#!/usr/bin/env bash
# Idempotent setup: system packages, the .venv virtual environment, pinned Python dependencies and the embedded
# models. A second run with nothing changed does no work beyond a few checks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

# --- system packages (Debian): espeak-ng is the last-resort TTS voice --------------------------------------
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need_apt[*]} with apt-get"
    (apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null; }) \
      || log "WARNING: could not install ${need_apt[*]}; run: sudo apt-get install ${need_apt[*]}"
  else
    log "WARNING: ${need_apt[*]} missing; run: sudo apt-get install ${need_apt[*]}"
  fi
fi

# --- virtual environment ---------------------------------------------------------------------------------
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

# --- Python dependencies, pinned; skipped when nothing that pins them has changed -------------------------
stamp=.venv/.attune-deps
want=$(cat pyproject.toml requirements.lock scripts/setup.sh 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
  echo "$want" > "$stamp"
fi
log "ready"
