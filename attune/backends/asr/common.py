"""What every ASR backend shares: input validation to 16 kHz mono float and the embedded model locations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attune.config import Config
from attune.core.audio import SAMPLE_RATE, prepare
from attune.core.errors import AudioInputError, BackendUnavailable
from attune.core.frames import AudioChunk
from attune.models import model_path

MIN_ASR_SECONDS = 0.05  # s; shorter input carries no word and is rejected as bad input
MAX_ASR_SECONDS = 600.0  # s; one utterance, not a whole recording session

WHISPER_MODELS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}  # config name -> attune.models name


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
