"""The one vocabulary of frames that flow between pipeline stages: small, flat, frozen dataclasses.

Audio always carries its format and a timestamp on the session's stream clock (seconds since the session began).
Samples are mono float32 in [-1, 1]; the arrays are not copied, so stages must not write to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attune.core.prosody import ProsodyParameters


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
    """What the user said in a turn, ``[start_s, end_s)`` on the stream clock (typed turns: both the time typed).
    ``final`` False marks a partial transcript of speech still in progress."""

    text: str
    start_s: float
    end_s: float
    no_speech_prob: float = 0.0
    final: bool = True


@dataclass(frozen=True)
class Sentence:
    """A piece of reply text ready for TTS: a whole sentence, or a first clause released early. ``text`` is
    normalised for speech; ``index`` counts the reply's pieces from 0."""

    text: str
    index: int


@dataclass(frozen=True)
class SpeechAudio:
    """Synthesised speech: ``chunk``, the ``provider`` that spoke it, and the ``ProsodyParameters`` dimensions that
    provider already applied natively (``native``). The prosody DSP applies exactly the rest,
    ``remaining(prosody)``, so no dimension is applied twice whichever provider a fail-over lands on. In a reply,
    ``sentence_index`` says which ``Sentence`` it speaks and ``last`` marks that sentence's final chunk."""

    chunk: AudioChunk
    provider: str = ""
    native: tuple[str, ...] = ()
    sentence_index: int = 0
    last: bool = False

    def remaining(self, prosody: ProsodyParameters) -> ProsodyParameters:
        """What is still to be applied to this audio of ``prosody``: every dimension but the native ones."""
        return prosody.neutralized(*self.native)


@dataclass(frozen=True)
class Interruption:
    """The user (barge-in, a typed turn) or the client cut the agent off at stream time ``timestamp_s``: the reply
    in progress is cancelled and its output flushed."""

    timestamp_s: float
    reason: str = "barge_in"


Frame = AudioChunk | SpeechStarted | SpeechStopped | Transcript | Sentence | SpeechAudio | Interruption
