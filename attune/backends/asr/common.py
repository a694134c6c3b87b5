"""What every ASR backend shares: input validation to 16 kHz mono float and the embedded model locations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

from attune.core.audio import SAMPLE_RATE, prepare
from attune.core.errors import AudioInputError
from attune.core.frames import AudioChunk

MIN_ASR_SECONDS = 0.05  # s; shorter input carries no word and is rejected as bad input
MAX_ASR_SECONDS = 600.0  # s; one utterance, not a whole recording session

WHISPER_MODELS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}  # config name -> attune.models name
NO_SPEECH_THRESHOLD = 0.6  # Whisper's own no_speech_threshold: a segment it rates this likely silent is dropped
S = TypeVar("S")


def no_speech_prob(segment: Any) -> float:
    """A Whisper segment's no-speech probability, from an object (faster-whisper) or a dict (mlx-whisper)."""
    value = segment.get("no_speech_prob", 0.0) if isinstance(segment, dict) else getattr(segment, "no_speech_prob", 0.0)
    return float(value)


def speech_segments(segments: Iterable[S], threshold: float = NO_SPEECH_THRESHOLD) -> list[S]:
    """The segments Whisper does not itself flag as no-speech (``no_speech_prob`` below ``threshold``).

    Whisper hallucinates words ("you", "thank you") over silence and noise while rating the segment no-speech
    (0.95 on digital silence); those words must not become a user's turn."""
    return [s for s in segments if no_speech_prob(s) < threshold]


def validate_audio(audio: AudioChunk) -> np.ndarray:
    """The chunk as 16 kHz mono float32, or ``AudioInputError`` (empty, NaN/Inf, bad rate, too short or long)."""
    if not isinstance(audio, AudioChunk):
        raise AudioInputError(f"expected an AudioChunk, got {type(audio).__name__}")
    samples, bad = prepare(audio.samples, audio.sample_rate, SAMPLE_RATE)
    if bad > 0:
        raise AudioInputError(f"audio contains NaN/Inf samples ({bad:.1%}); refusing to transcribe it")
    seconds = len(samples) / SAMPLE_RATE
    if seconds < MIN_ASR_SECONDS:
        raise AudioInputError(f"audio is too short to transcribe ({seconds * 1000:.0f} ms)")
    if seconds > MAX_ASR_SECONDS:
        raise AudioInputError(f"audio is too long for one utterance ({seconds:.0f} s > {MAX_ASR_SECONDS:.0f} s)")
    return samples
