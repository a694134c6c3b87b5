"""The WebSocket protocol's pure core: client messages decoded and validated, session events encoded for the wire,
input audio converted once at the edge (PCM16 or float32, any declared rate 8-48 kHz -> 16 kHz mono float32).

No I/O here (python-websockets' Sans-I/O ``Protocol`` is the model): ``connection.py`` is the asyncio glue.
``CLIENT_EVENTS`` and ``SERVER_EVENTS`` are the catalogue that ``docs/PROTOCOL.md`` documents; a test checks that
the two cannot drift apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attune.agent.persona_model import ID_PATTERN as PERSONA_ID
from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE, float_to_pcm16, pcm16_to_float
from attune.core.dsp import resample_poly
from attune.core.errors import ProtocolError
from attune.core.events import SessionEvent

MIN_INPUT_RATE = 8000  # Hz, lowest input rate a client may declare
MAX_INPUT_RATE = 48000  # Hz, highest
MAX_FRAME_S = 1.0  # s of audio one binary frame may carry (the session's own limit)
STRATEGIES = ("match", "complement", "amplify", "neutral")
INPUT_FORMATS = ("pcm16", "float32")
MAX_PERSONA_CHARS = 4000

# Events a client may send (besides binary input audio).
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "response.cancel",
    "ping",
)

# Events the server sends that the session does not make itself.
SESSION_CREATED = "session.created"
SESSION_UPDATED = "session.updated"
SESSION_CLOSING = "session.closing"
BUFFER_COMMITTED = "input_audio_buffer.committed"
BUFFER_CLEARED = "input_audio_buffer.cleared"
RESPONSE_QUEUED = "response.queued"
PONG = "pong"

# Every JSON event type the server can send. Reply audio (``ev.AUDIO_DELTA``) travels as binary frames.
SERVER_EVENTS = (
    SESSION_CREATED, SESSION_UPDATED, SESSION_CLOSING,
    ev.SPEECH_STARTED, ev.SPEECH_STOPPED, BUFFER_COMMITTED, BUFFER_CLEARED,
    ev.TRANSCRIPT_PARTIAL, ev.TRANSCRIPT, ev.EMOTION_MEASUREMENT, ev.EMOTION_TURN,
    RESPONSE_QUEUED, ev.RESPONSE_CREATED, ev.TRANSCRIPT_DELTA, ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED,
    PONG, ev.ERROR,
)

# Every ``error.code`` the server sends (docs/PROTOCOL.md has a row for each).
ERROR_CODES = (
    "invalid_json", "invalid_event", "unknown_event", "audio_as_text", "invalid_session_update", "invalid_item",
    "invalid_request", "buffer_empty", "empty_audio", "misaligned_audio", "non_finite_audio", "frame_too_long",
    "asr_failed", "llm_failed", "tts_failed", "emotion_failed", "backend_failed", "server_busy", "internal_error",
    "idle_timeout", "session_expired",
)

# Close codes the server uses (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000  # idle or maximum session time reached (an error event says which)
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # a client that stopped reading: its output buffer overflowed
CLOSE_TOO_BIG = 1009  # a message larger than the server's max_message_bytes (sent by websockets itself)
CLOSE_TRY_AGAIN = 1013  # the server is overloaded


@dataclass(frozen=True)
class ClientEvent:
    """One decoded JSON message: ``type`` is one of ``CLIENT_EVENTS``; ``data`` the whole object."""

    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI-Realtime names for the turn-taking thresholds; None keeps the current value."""

    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    min_speech_ms: int | None = None


@dataclass(frozen=True)
class SessionUpdate:
    """A validated ``session.update``: only the fields the client set are not None."""

    input_sample_rate: int | None = None
    input_audio_format: str | None = None
    strategy: str | None = None
    persona: str | None = None
    voice: str | None = None
    persona_id: str | None = None  # NO_PERSONA ("") = the client sent null: back to the configured agent
    turn_detection: TurnDetection | None = None


NO_PERSONA = ""  # ``SessionUpdate.persona_id`` for ``{"persona_id": null}`` (no persona id is empty)


def decode_text(text: str) -> ClientEvent:
    """A text frame -> ``ClientEvent``; raises ``ProtocolError`` (``invalid_json``, ``invalid_event``,
    ``unknown_event``) with a message fit for the client."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or an integer over 4300 digits
        raise ProtocolError(f"not valid JSON: {str(exc)[:160]}", "invalid_json") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("a message must be a JSON object with a string 'type'", "invalid_event")
    kind = obj["type"]
    if kind == "input_audio_buffer.append":
        raise ProtocolError("send input audio as binary frames (PCM16 little-endian), not as base64 in JSON",
                            "audio_as_text")
    if kind not in CLIENT_EVENTS:
        raise ProtocolError(f"unknown event type {kind[:64]!r} (known: {', '.join(CLIENT_EVENTS)})", "unknown_event")
    return ClientEvent(kind, obj)


def _number(value: Any, key: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer and value != int(value):
        ok = False
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ProtocolError(f"session.{key} must be {kind} in {lo:g}..{hi:g}, got {value!r}", "invalid_session_update")
    return int(value) if integer else float(value)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ProtocolError(f"session.{key} must be one of {', '.join(choices)}, got {value!r}",
                            "invalid_session_update")
    return str(value)


def _turn_detection(obj: Any) -> TurnDetection:
    if not isinstance(obj, dict):
        raise ProtocolError("session.turn_detection must be an object", "invalid_session_update")
    known = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "min_speech_ms"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ProtocolError(f"unknown key session.turn_detection.{unknown[0]}", "invalid_session_update")
    if obj.get("type", "server_vad") != "server_vad":
        raise ProtocolError("session.turn_detection.type must be 'server_vad'", "invalid_session_update")
    get = obj.get
    return TurnDetection(
        threshold=None if get("threshold") is None else _number(get("threshold"), "turn_detection.threshold",
                                                                  0.05, 0.95),
        prefix_padding_ms=None if get("prefix_padding_ms") is None else _number(
            get("prefix_padding_ms"), "turn_detection.prefix_padding_ms", 0, 2000, integer=True),
        silence_duration_ms=None if get("silence_duration_ms") is None else _number(
            get("silence_duration_ms"), "turn_detection.silence_duration_ms", 100, 5000, integer=True),
        min_speech_ms=None if get("min_speech_ms") is None else _number(
            get("min_speech_ms"), "turn_detection.min_speech_ms", 32, 2000, integer=True))


def _persona_id(value: Any) -> str:
    """The form of a persona id (whether it exists is the connection's question)."""
    if not isinstance(value, str) or not PERSONA_ID.fullmatch(value):
        raise ProtocolError(f"session.persona_id must be a persona id ({PERSONA_ID.pattern}), got {value!r}"[:200],
                            "invalid_session_update")
    return value


def parse_session_update(event: ClientEvent, voices: tuple[str, ...]) -> SessionUpdate:
    """Validate a ``session.update`` as a whole (an invalid one changes nothing). ``voices``: the TTS providers
    a client may choose."""
    session = event.data.get("session")
    if not isinstance(session, dict):
        raise ProtocolError("session.update needs a 'session' object", "invalid_session_update")
    known = {f for f in SessionUpdate.__dataclass_fields__}
    unknown = sorted(set(session) - known)
    if unknown:
        raise ProtocolError(f"unknown key session.{unknown[0]} (known: {', '.join(sorted(known))})",
                            "invalid_session_update")
    get = session.get
    persona = get("persona")
    if persona is not None and (not isinstance(persona, str) or not persona.strip()
                                or len(persona) > MAX_PERSONA_CHARS):
        raise ProtocolError(f"session.persona must be non-empty text of at most {MAX_PERSONA_CHARS} characters",
                            "invalid_session_update")
    return SessionUpdate(
        input_sample_rate=None if get("input_sample_rate") is None else _number(
            get("input_sample_rate"), "input_sample_rate", MIN_INPUT_RATE, MAX_INPUT_RATE, integer=True),
        input_audio_format=None if get("input_audio_format") is None else _choice(
            get("input_audio_format"), "input_audio_format", INPUT_FORMATS),
        strategy=None if get("strategy") is None else _choice(get("strategy"), "strategy", STRATEGIES),
        persona=persona.strip() if persona is not None else None,
        voice=None if get("voice") is None else _choice(get("voice"), "voice", voices),
        persona_id=(None if "persona_id" not in session else NO_PERSONA if session["persona_id"] is None
                    else _persona_id(session["persona_id"])),
        turn_detection=None if get("turn_detection") is None else _turn_detection(get("turn_detection")))


def decode_audio(data: bytes, audio_format: str, sample_rate: int) -> np.ndarray:
    """A binary frame -> mono float32 at ``sample_rate``. Raises ``ProtocolError``: ``empty_audio``,
    ``misaligned_audio`` (odd length for PCM16, not a multiple of 4 for float32), ``non_finite_audio`` (NaN/Inf
    in float32), ``frame_too_long`` (more than ``MAX_FRAME_S``)."""
    if not data:
        raise ProtocolError("empty audio frame", "empty_audio")
    width = 2 if audio_format == "pcm16" else 4
    if len(data) % width:
        raise ProtocolError(f"{audio_format} audio frame of {len(data)} bytes is not a whole number of "
                            f"{width}-byte samples", "misaligned_audio")
    n = len(data) // width
    if n > MAX_FRAME_S * sample_rate:
        raise ProtocolError(f"audio frame of {n} samples is longer than {MAX_FRAME_S:g} s at {sample_rate} Hz",
                            "frame_too_long")
    if audio_format == "pcm16":
        return pcm16_to_float(data)
    samples = np.frombuffer(data, dtype="<f4")
    if not np.all(np.isfinite(samples)):
        raise ProtocolError("float32 audio frame contains NaN or Inf", "non_finite_audio")
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


class StreamingResampler:
    """Resamples a stream of mono float32 frames from ``from_rate`` to 16 kHz (or ``to_rate``) once, at the edge.

    ``push(frame)`` returns the output that is ready; it lags the input by ``delay_s`` (the polyphase filter's
    look-ahead). Blocks are processed with enough context on both sides that the output equals one-shot
    ``resample_poly`` on the whole stream, up to float rounding.
    """

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE) -> None:
        g = math.gcd(from_rate, to_rate)
        self.up, self.down = to_rate // g, from_rate // g
        self.from_rate, self.to_rate = from_rate, to_rate
        half = 10 * max(self.up, self.down) / self.up  # resample_poly's filter half-length, in input samples
        self.context = self.down * math.ceil((half + 2) / self.down)  # input samples, a multiple of ``down``
        self._buf = np.zeros(self.context, dtype=np.float32)  # history (zeros before the stream) + pending
        self._done = 0  # input samples of ``_buf`` past the history whose output has been returned

    @property
    def delay_s(self) -> float:
        return self.context / self.from_rate if self.up != self.down else 0.0

    def push(self, frame: np.ndarray) -> np.ndarray:
        if self.up == self.down:
            return frame.astype(np.float32, copy=False)
        self._buf = np.concatenate([self._buf, frame.astype(np.float32, copy=False)])
        ready = len(self._buf) - 2 * self.context  # input samples with full context on both sides
        blocks = ready // self.down * self.down
        if blocks <= 0:
            return np.zeros(0, dtype=np.float32)
        window = self._buf[: blocks + 2 * self.context]
        out = resample_poly(window, self.up, self.down)
        skip = self.context * self.up // self.down
        result = np.asarray(out[skip: skip + blocks * self.up // self.down], dtype=np.float32)
        self._buf = self._buf[blocks:]
        return result


def error_json(code: str, message: str, *, retryable: bool = False, **extra: Any) -> dict[str, Any]:
    """The wire form of an error: ``{"type": "error", "error": {"code", "message", "retryable"}, ...extra}``."""
    return {"type": ev.ERROR, "error": {"code": code, "message": message, "retryable": retryable}, **extra}


def encode_event(event: SessionEvent) -> str | bytes:
    """A session event -> one WebSocket message: reply audio as PCM16 bytes, everything else as JSON text."""
    if event.type == ev.AUDIO_DELTA:
        assert event.audio is not None
        return float_to_pcm16(event.audio.samples)
    if event.type == ev.ERROR:
        d = dict(event.data)
        obj = error_json(str(d.pop("code", "internal_error")), str(d.pop("message", "")),
                         retryable=bool(d.pop("retryable", False)), **d)
    else:
        obj = event.to_json()
    return dumps(obj)


def dumps(obj: dict[str, Any]) -> str:
    """JSON text; NaN and Inf (never valid JSON) become null."""
    try:
        return json.dumps(obj, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(obj), allow_nan=False, default=str)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
