"""What a session tells its transport: one small event type carrying an OpenAI-Realtime-style name and a JSON-able
payload, plus reply audio for ``response.output_audio.delta``.

Transports (``attune.transports``) turn these into their own output; the session never does I/O itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attune.core.frames import AudioChunk

SPEECH_STARTED = "input_audio_buffer.speech_started"
SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
TRANSCRIPT = "conversation.item.input_audio_transcription.completed"
TRANSCRIPT_PARTIAL = "conversation.item.input_audio_transcription.delta"  # settled words while the user speaks
EMOTION_MEASUREMENT = "emotion.measurement"
EMOTION_TURN = "emotion.turn"
RESPONSE_CREATED = "response.created"
TRANSCRIPT_DELTA = "response.output_audio_transcript.delta"
AUDIO_DELTA = "response.output_audio.delta"
RESPONSE_DONE = "response.done"
RESPONSE_CANCELLED = "response.cancelled"
ERROR = "error"


@dataclass(frozen=True)
class SessionEvent:
    """``type`` is one of the names above; ``data`` is JSON-able; ``audio`` is set for audio deltas only."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    audio: AudioChunk | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


def error_event(code: str, message: str, *, retryable: bool = False, **extra: Any) -> SessionEvent:
    return SessionEvent(ERROR, {"code": code, "message": message, "retryable": retryable, **extra})
