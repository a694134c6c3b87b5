"""Synthetic speech for the Whisper head's human-voice detector: espeak-ng renders to train it, Piper renders
(an engine it never saw) to check it. Used by ``train-emotion --backend whisper``.

A synthetic voice is outside what the acted-speech head knows, yet its pooled encoder states sit close to real
ones (a plain distance does not separate them), so the head carries a small logistic detector trained on
espeak-ng voices and Piper (half the sentences) versus the dev corpora's people, checked on the other half of
Piper's sentences, on held-out people, and (trained on espeak-ng alone) on Piper as an unseen engine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from attune.core.audio import SAMPLE_RATE, load_wav, resample
from attune.core.errors import BackendUnavailable

SENTENCES = (
    "Kids are talking by the door.", "Dogs are sitting by the door.", "I have been waiting here for two hours.",
    "My father passed away last week.", "Thank you so much, this is wonderful news.", "Where did you put my keys?",
    "I cannot believe you did that to me again!", "The train leaves at seven in the morning.",
    "Please tell me what happened.", "We won the match last night!", "I am so tired of all of this.",
    "Could you help me with my homework?", "That was the best day of my life.", "Nobody ever listens to me.",
    "The weather is nice today.", "I am scared of what the doctor will say.",
)
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f3", "en-us+m3", "en-gb+f2",
                 "en-us+klatt", "en-gb-x-gbclan+m5", "en-us-nyc+f4")


def espeak_clips(limit: int | None = None) -> list[np.ndarray]:
    """16 kHz clips of every sentence in every espeak-ng voice, at varied pitch and speed (BackendUnavailable
    without espeak-ng)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise BackendUnavailable("espeak-ng is not installed", install_hint="sudo apt-get install espeak-ng")
    rng = np.random.default_rng(0)
    out: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        for i, voice in enumerate(ESPEAK_VOICES):
            for j, text in enumerate(SENTENCES):
                if (i + j) % 2:  # half the grid is plenty and keeps training quick
                    continue
                pitch, speed = int(rng.integers(25, 80)), int(rng.integers(130, 200))
                subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
                               check=True, capture_output=True, timeout=30)
                audio, rate = load_wav(wav)
                gain = 10 ** (rng.uniform(-30, -15) / 20) / max(float(np.sqrt(np.mean(audio ** 2))), 1e-6)
                out.append((resample(audio, rate, SAMPLE_RATE) * gain).astype(np.float32))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def piper_clips(sentences: tuple[str, ...] = SENTENCES) -> list[np.ndarray]:
    """16 kHz Piper renders of ``sentences`` (neutral prosody); empty where Piper is unavailable."""
    from attune.agent.speech_source import render_speech

    out = []
    for text in sentences:
        try:
            speech = render_speech(text, provider="piper", level_dbfs=-24.0)
        except BackendUnavailable:
            return []
        out.append(resample(speech.audio, speech.sample_rate, SAMPLE_RATE).astype(np.float32))
    return out
