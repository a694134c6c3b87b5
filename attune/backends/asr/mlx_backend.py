"""Whisper through mlx-whisper on Apple Silicon (Metal). Import-guarded: it cannot run on Linux or x86.

It takes an MLX-format Whisper folder (``asr`` model name -> ``mlx-community/whisper-<name>-mlx`` converted
locally by the user); nothing here downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attune.backends.asr.asr_common import no_speech_prob, speech_segments, validate_audio, whisper_folder
from attune.backends.base import Segment, Transcription
from attune.config import Config
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import ASRError, BackendUnavailable
from attune.core.frames import AudioChunk

INSTALL_HINT = "pip install mlx-whisper  (macOS on Apple Silicon only)"


class MLXWhisperASR:
    name = "mlx-whisper"

    def __init__(self, model_dir: Path, *, language: str = "en", **_: Any) -> None:
        try:
            import mlx_whisper
        except ImportError as exc:
            raise BackendUnavailable(f"mlx-whisper is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        self._mlx: Any = mlx_whisper
        self.model_dir = Path(model_dir)
        self.language = language

    @classmethod
    def from_config(cls, config: Config) -> MLXWhisperASR:
        return cls(whisper_folder(config), language=config.asr.language)

    def transcribe(self, audio: AudioChunk, *, encoder_states: bool = False) -> Transcription:
        """``encoder_states`` is not offered by mlx-whisper: the emotion head then encodes the turn itself."""
        samples = validate_audio(audio)
        try:
            out = self._mlx.transcribe(samples, path_or_hf_repo=str(self.model_dir), language=self.language)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ASRError(f"mlx-whisper failed: {exc}", retryable=True, backend=self.name) from exc
        raw = out.get("segments", [])
        kept = speech_segments(raw)
        segments = tuple(Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip()) for s in kept)
        no_speech = min((no_speech_prob(s) for s in raw), default=1.0)
        text = " ".join(s.text for s in segments if s.text).strip() if len(kept) < len(raw) else str(
            out.get("text", "")).strip()
        return Transcription(text=text, segments=segments, no_speech_prob=no_speech,
                             language=self.language, duration_s=len(samples) / SAMPLE_RATE)
