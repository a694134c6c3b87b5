"""What every ASR backend shares: input validation to 16 kHz mono float, the embedded model locations, and
the encoder states of a turn as numpy (which the emotion head reuses)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from attune.config import Config
from attune.core.audio import SAMPLE_RATE, prepare
from attune.core.errors import AudioInputError, BackendUnavailable
from attune.core.frames import AudioChunk
from attune.models import model_path

SAMPLES_PER_STATE = 320  # 20 ms at 16 kHz: Whisper's encoder halves the 10 ms mel frame rate

MIN_ASR_SECONDS = 0.05  # s; shorter input carries no word and is rejected as bad input
MAX_ASR_SECONDS = 600.0  # s; one utterance, not a whole recording session

WHISPER_MODELS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}  # config name -> attune.models name
NO_SPEECH_THRESHOLD = 0.6  # Whisper's own no_speech_threshold: a segment it rates this likely silent is dropped
S = TypeVar("S")


def no_speech_prob(segment: Any) -> float:
    """A Whisper segment's no-speech probability, from an object (faster-whisper) or a dict (mlx-whisper)."""
    # probe: each engine's own segment type (faster-whisper's object, mlx-whisper's dict)
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


def whisper_folder(config: Config) -> Path:
    """The folder of the embedded Whisper model ``asr.model`` (``BackendUnavailable`` for an unknown size)."""
    model = config.asr.model
    if model not in WHISPER_MODELS:
        raise BackendUnavailable(f"unknown Whisper model '{model}' (known: {', '.join(WHISPER_MODELS)})")
    return model_path(config.resolve_path(config.models.cache_dir), WHISPER_MODELS[model])


def states_for(n_samples: int) -> int:
    """Encoder rows that cover a clip of ``n_samples`` (16 kHz)."""
    return max(1, -(-int(n_samples) // SAMPLES_PER_STATE))


def storage_to_states(output: object, n_samples: int) -> np.ndarray:
    """The clip's rows of an encoder output of shape (1, T, d) (a CTranslate2 StorageView on the CPU, or any
    array): (min(T, states_for(n_samples)), d) float32."""
    arr = np.asarray(output, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[0]
    return np.array(arr[: min(len(arr), states_for(n_samples))], np.float32)
