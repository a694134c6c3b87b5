"""Where the expression tools get plain speech from: one small function that renders text with a local engine.

``speak`` and ``build-references`` call ``render_speech`` and then shape the result with the prosody DSP. Today it
runs espeak-ng through a subprocess; when the TTS router lands, this is the one place to swap for it.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np

from attune.errors import BackendUnavailable, TTSError

ENGINES = ("espeak",)
ESPEAK_TIMEOUT_S = 30.0


def render_speech(text: str, engine: str = "espeak", voice: str = "en-us") -> tuple[np.ndarray, int]:
    """Neutral speech for ``text`` as (mono float32, sample rate). Raises TTSError for empty text or an engine
    failure, BackendUnavailable when the engine is not installed."""
    if engine not in ENGINES:
        raise TTSError(f"unknown speech engine {engine!r} (known: {', '.join(ENGINES)})")
    if not text or not text.strip():
        raise TTSError("nothing to say: the text is empty")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise BackendUnavailable("espeak-ng is not installed", install_hint="apt-get install espeak-ng",
                                 backend="espeak")
    try:
        proc = subprocess.run([exe, "-v", voice, "--stdout", text], capture_output=True,
                              timeout=ESPEAK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TTSError("espeak-ng timed out", retryable=True, backend="espeak") from exc
    if proc.returncode != 0 or not proc.stdout:
        raise TTSError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}", backend="espeak")
    import soundfile as sf

    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return np.asarray(data, dtype=np.float32), int(rate)
