"""The small protocols every backend implements, and the lazy name -> factory tables that choose them.

Each backend kind has one main method: emotion ``analyze(audio, rate) -> EmotionResult``, ASR
``transcribe(chunk) -> Transcription``, LLM ``stream(messages) -> AsyncIterator[str]``, TTS
``synthesize(text, prosody) -> AsyncIterator[AudioChunk]``. Blocking ones (emotion, ASR) are called through
``asyncio.to_thread`` by the pipeline, never on the event loop.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from attune.core.emotion import EmotionResult
from attune.core.errors import BackendUnavailable
from attune.core.frames import AudioChunk


@runtime_checkable
class EmotionBackend(Protocol):
    name: str

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        """Estimate the emotion in mono float audio. Blocking; validated input only."""
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


@dataclass(frozen=True)
class BackendSpec:
    """One entry of a name -> factory table: ``module:attribute`` imported only when the backend is built."""

    target: str
    install_hint: str = ""
    description: str = ""

    def load(self) -> Callable[..., Any]:
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendUnavailable(f"cannot import {module_name}: {exc}", install_hint=self.install_hint,
                                     backend=self.target) from exc
        factory: Callable[..., Any] = getattr(module, attr)
        return factory
