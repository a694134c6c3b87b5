"""The one vocabulary of frames that flow between pipeline stages: small, flat, frozen dataclasses.

Audio always carries its format and a timestamp on the session's stream clock (seconds since the session began).
Samples are mono float32 in [-1, 1]; the arrays are not copied, so stages must not write to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attune.core.emotion import EmotionResult


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 audio. ``timestamp_s`` is the stream time of its first sample."""

    samples: np.ndarray = field(repr=False)
    sample_rate: int
    timestamp_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    @property
    def end_s(self) -> float:
        return self.timestamp_s + self.duration_s


@dataclass(frozen=True)
class SpeechStarted:
    timestamp_s: float  # stream time the speech began (pre-roll included)


@dataclass(frozen=True)
class SpeechStopped:
    timestamp_s: float  # stream time the last speech frame ended


@dataclass(frozen=True)
class Transcript:
    text: str
    start_s: float
    end_s: float
    no_speech_prob: float = 0.0
    final: bool = True


@dataclass(frozen=True)
class EmotionEstimate:
    """A streaming emotion measurement over [start_s, end_s) of the user's speech."""

    result: EmotionResult
    start_s: float
    end_s: float


@dataclass(frozen=True)
class LLMToken:
    text: str
    index: int


@dataclass(frozen=True)
class Sentence:
    """A piece of reply text ready for TTS: a whole sentence, or a first clause released early."""

    text: str
    index: int
    final: bool = False  # the last piece of the reply


@dataclass(frozen=True)
class SpeechAudio:
    """Synthesised reply audio for sentence ``sentence_index``; ``last`` marks the sentence's final chunk."""

    chunk: AudioChunk
    sentence_index: int
    last: bool = False


@dataclass(frozen=True)
class Interruption:
    """Barge-in: the user spoke over the agent. Stages drop pending output when they see it."""

    timestamp_s: float
    reason: str = "barge_in"


Frame = (
    AudioChunk | SpeechStarted | SpeechStopped | Transcript | EmotionEstimate | LLMToken | Sentence | SpeechAudio
    | Interruption
)
