"""Whisper through faster-whisper (CTranslate2, int8 on CPU), loaded from a local model folder only.

The model folder comes from the embedded install (``attune.models``); ``local_files_only`` keeps every code
path off the network, so it works with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from attune.backends.asr.common import validate_audio
from attune.backends.base import Segment, Transcription
from attune.errors import ASRError, BackendUnavailable
from attune.pipeline.audio import SAMPLE_RATE
from attune.pipeline.frames import AudioChunk

INSTALL_HINT = "bash scripts/setup.sh  (or: pip install faster-whisper==1.2.1)"


class FasterWhisperASR:
    """Blocking ``transcribe(chunk) -> Transcription``; one decode at a time per instance (a lock guards it).

    Segment times are seconds from the start of the chunk (add ``chunk.timestamp_s`` for stream time);
    ``no_speech_prob`` is the lowest of the segments' (1.0 when Whisper found no segment at all).
    """

    name = "faster-whisper"

    def __init__(self, model_dir: Path, *, compute_type: str = "int8", threads: int = 2, beam_size: int = 1,
                 language: str = "en") -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise BackendUnavailable(f"faster-whisper is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        if not (Path(model_dir) / "model.bin").is_file():
            raise BackendUnavailable(f"no Whisper model in {model_dir}",
                                     install_hint=".venv/bin/python -m attune.models install", backend=self.name)
        self.model_dir = Path(model_dir)
        self.beam_size = beam_size
        self.language = language
        self._lock = threading.Lock()
        try:
            self._model: Any = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type,
                                            cpu_threads=threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ASRError(f"cannot load Whisper model from {model_dir}: {exc}", backend=self.name) from exc

    def transcribe(self, audio: AudioChunk) -> Transcription:
        samples = validate_audio(audio)
        try:
            with self._lock:
                segments_iter, info = self._model.transcribe(
                    samples, language=self.language, beam_size=self.beam_size, condition_on_previous_text=False,
                    vad_filter=False, without_timestamps=False)
                raw = list(segments_iter)
        except (RuntimeError, ValueError) as exc:
            raise ASRError(f"Whisper decoding failed: {exc}", retryable=True, backend=self.name) from exc
        segments = tuple(Segment(round(s.start, 3), round(s.end, 3), s.text.strip()) for s in raw)
        text = " ".join(s.text for s in segments if s.text).strip()
        # The utterance's no-speech probability: the lowest over segments (any confident speech counts); 1.0 if none.
        no_speech = min((float(s.no_speech_prob) for s in raw), default=1.0)
        return Transcription(text=text, segments=segments, no_speech_prob=round(no_speech, 4),
                             language=getattr(info, "language", self.language) or self.language,
                             duration_s=len(samples) / SAMPLE_RATE)
