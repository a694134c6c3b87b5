"""The small protocols every backend implements (the tables that name and build them: ``attune.core.catalog``).

Each backend kind has one main method: emotion ``analyze(audio, rate) -> EmotionResult``, ASR
``transcribe(chunk) -> Transcription``, LLM ``stream(messages) -> AsyncIterator[str]``, TTS
``synthesize(text, prosody) -> AsyncIterator[AudioChunk]``. Blocking ones (emotion, ASR) are called through
``asyncio.to_thread`` by the pipeline, never on the event loop. Every backend class also has a classmethod
``from_config(config) -> backend``, which ``attune.backends.registry.build`` calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from attune.core.audio import AudioQuality
from attune.core.emotion import EmotionResult
from attune.core.frames import AudioChunk

if TYPE_CHECKING:
    from attune.backends.emotion.features import SpeakerBaseline


@runtime_checkable
class EmotionBackend(Protocol):
    name: str

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        """Estimate the emotion in mono float audio. Blocking; validated input only."""
        ...


@runtime_checkable
class FrameTrackBackend(Protocol):
    """An emotion backend that reads per-frame feature tracks (``features.compute_track``) and keeps one speaker's
    running statistics. The streaming detector computes the track of each new hop once and hands the backend the
    window's concatenated tracks, so a hop costs only its new audio; calibration seeds the speaker statistics."""

    name: str

    def result_from_track(self, track: np.ndarray, quality: AudioQuality, duration_s: float) -> EmotionResult:
        """The result for a frame track already computed (a window's tracks, concatenated in time)."""
        ...

    def calibrate(self, features: np.ndarray | None, baseline: SpeakerBaseline | None) -> None:
        """Fold one neutral recording's feature vector into the speaker's normalisation (when given) and set the
        speaker's pitch/rate baseline (when given)."""
        ...


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcription:
    text: str
    segments: tuple[Segment, ...] = ()
    no_speech_prob: float = 0.0
    language: str = "en"
    duration_s: float = 0.0


@runtime_checkable
class ASRBackend(Protocol):
    name: str

    def transcribe(self, audio: AudioChunk) -> Transcription:
        """Transcribe one utterance. Blocking."""
        ...


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@runtime_checkable
class LLMBackend(Protocol):
    name: str

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128,
               temperature: float = 0.7) -> AsyncIterator[str]:
        """Stream the reply's text pieces. Cancelling the consuming task stops generation."""
        ...


@runtime_checkable
class TTSBackend(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        """Stream speech for ``text`` with optional ``ProsodyParameters``."""
        ...
