"""The OpenAI Realtime wire format's pure core (``/v1/realtime``): client events parsed into typed values, server
events built with their ``event_id`` / ``item_id`` / ``response_id``, errors in OpenAI's shape, and audio as base64
(PCM16 at 24 kHz, G.711 mu-law and A-law at 8 kHz) decoded with a bound and encoded for the wire.

No I/O and no event loop here; ``realtime_connection.py`` is the asyncio glue over the same ``Session`` as ``/ws``.
The GA protocol as the official ``openai`` SDK (``openai.types.realtime``) speaks it; a test validates every
server event built here against the SDK's own models.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attune.core.audio import float_to_pcm16, pcm16_to_float
from attune.core.errors import ProtocolError

REALTIME_RATE = 24000  # Hz of audio/pcm, both ways
G711_RATE = 8000  # Hz of audio/pcmu and audio/pcma
FORMAT_RATES = {"audio/pcm": REALTIME_RATE, "audio/pcmu": G711_RATE, "audio/pcma": G711_RATE}
BYTES_PER_SAMPLE = {"audio/pcm": 2, "audio/pcmu": 1, "audio/pcma": 1}
MAX_APPEND_S = 30.0  # s of audio one input_audio_buffer.append may carry (checked before decoding)
MAX_INSTRUCTIONS_CHARS = 4000
MAX_OUTPUT_TOKENS = 4096
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
EAGERNESS = ("low", "medium", "high", "auto")
INVALID = "invalid_request_error"

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.truncate", "conversation.item.delete",
    "response.create", "response.cancel",
)
# Session fields Attune cannot honour: named in an error, the rest of the update still applies.
REFUSED_FIELDS = ("tools", "tool_choice", "prompt", "tracing", "reasoning", "parallel_tool_calls")
# Session fields accepted and ignored (nothing in Attune depends on them).
IGNORED_FIELDS = ("type", "model", "id", "object", "expires_at", "include", "truncation")


class RealtimeError(ProtocolError):
    """A client error in OpenAI's shape: ``code``, ``param`` (the offending field) and the client's ``event_id``."""

    def __init__(self, message: str, code: str, param: str | None = None, *, event_id: str | None = None,
                 error_type: str = INVALID) -> None:
        super().__init__(message, code)
        self.param, self.event_id, self.error_type = param, event_id, error_type


class Ids:
    """Ids of one connection's events, items and responses: ``event_7``, ``item_3``, ``resp_2``..."""

    def __init__(self, prefix: str = "") -> None:
        self._n = itertools.count(1)
        self.prefix = prefix

    def new(self, kind: str) -> str:
        return f"{kind}_{self.prefix}{next(self._n)}"


# ---- client events ----
@dataclass(frozen=True)
class ClientMessage:
    type: str
    event_id: str | None
    data: dict[str, Any]


def parse_client(text: str) -> ClientMessage:
    """A text frame -> ``ClientMessage``; ``RealtimeError`` (``invalid_json``, ``invalid_event``, ``unknown_event``)."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RealtimeError(f"not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise RealtimeError("a client event must be a JSON object with a string 'type'", "invalid_event", "type")
    eid = obj.get("event_id")
    eid = eid[:128] if isinstance(eid, str) else None
    kind = obj["type"]
    if kind not in CLIENT_EVENTS:
        raise RealtimeError(f"unknown event type {kind[:64]!r} (Attune's Realtime API knows: "
                            f"{', '.join(CLIENT_EVENTS)})", "unknown_event", "type", event_id=eid)
    return ClientMessage(kind, eid, obj)


@dataclass(frozen=True)
class TurnMode:
    """``audio.input.turn_detection``: ``kind`` server_vad | semantic_vad | none (the client commits)."""

    kind: str = "semantic_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    eagerness: str = "auto"
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True)
class SessionChange:
    """A validated ``session.update``: None = not set. ``refused``: fields named in an error, not applied."""

    instructions: str | None = None
    input_format: str | None = None
    output_format: str | None = None
    turn: TurnMode | None = None
    voice: str | None = None
    output_modalities: tuple[str, ...] | None = None
    max_output_tokens: int | None = None  # 0 = "inf" (the configured bound)
    transcription: dict[str, Any] | None = None
    refused: tuple[str, ...] = ()


def _bad(message: str, param: str, code: str = "invalid_value") -> RealtimeError:
    return RealtimeError(message, code, param)


def _obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{param} must be an object", param)
    return value


def _int(value: Any, param: str, lo: int, hi: int) -> int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value != int(value) or not lo <= value <= hi:
        raise _bad(f"{param} must be an integer in {lo}..{hi}, got {value!r}"[:200], param)
    return int(value)


def _format(value: Any, param: str) -> str:
    fmt = _obj(value, param)
    kind = fmt.get("type", "audio/pcm")
    if kind not in FORMAT_RATES:
        raise _bad(f"{param}.type must be one of {', '.join(FORMAT_RATES)}, got {kind!r}"[:200], f"{param}.type")
    if kind == "audio/pcm" and fmt.get("rate", REALTIME_RATE) != REALTIME_RATE:
        raise _bad(f"{param}.rate must be {REALTIME_RATE} for audio/pcm", f"{param}.rate")
    return str(kind)


def _bool(value: Any, param: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"{param} must be true or false", param)
    return value


def _turn(value: Any) -> TurnMode:
    p = "session.audio.input.turn_detection"
    if value is None:
        return TurnMode("none", create_response=False, interrupt_response=False)
    td = _obj(value, p)
    kind = td.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise _bad(f"{p}.type must be server_vad or semantic_vad (or turn_detection null), got {kind!r}"[:200],
                   f"{p}.type")
    get = td.get
    threshold = get("threshold")
    if threshold is not None and (not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
                                  or not 0.0 <= threshold <= 1.0):
        raise _bad(f"{p}.threshold must be a number in 0..1", f"{p}.threshold")
    eagerness = get("eagerness") or "auto"
    if eagerness not in EAGERNESS:
        raise _bad(f"{p}.eagerness must be one of {', '.join(EAGERNESS)}", f"{p}.eagerness")
    return TurnMode(
        kind=kind, threshold=None if threshold is None else min(0.95, max(0.05, float(threshold))),
        prefix_padding_ms=None if get("prefix_padding_ms") is None else _int(
            get("prefix_padding_ms"), f"{p}.prefix_padding_ms", 0, 2000),
        silence_duration_ms=None if get("silence_duration_ms") is None else _int(
            get("silence_duration_ms"), f"{p}.silence_duration_ms", 100, 5000),
        eagerness=str(eagerness),
        create_response=_bool(get("create_response"), f"{p}.create_response", True),
        interrupt_response=_bool(get("interrupt_response"), f"{p}.interrupt_response", True))


def _modalities(value: Any, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or any(m not in ("audio", "text") for m in value) or len(value) > 1:
        raise _bad(f"{param} must be [\"audio\"] or [\"text\"]", param)
    return (str(value[0]),)


def _max_tokens(value: Any, param: str) -> int:
    return 0 if value == "inf" else _int(value, param, 1, MAX_OUTPUT_TOKENS)


def _instructions(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_INSTRUCTIONS_CHARS:
        raise _bad(f"{param} must be non-empty text of at most {MAX_INSTRUCTIONS_CHARS} characters", param)
    return value.strip()


def _refused(session: dict[str, Any]) -> list[str]:
    """Set fields that ask for what Attune cannot do (tools, MCP...). Empty tools / "auto" / "none" ask nothing."""
    out = []
    for key in REFUSED_FIELDS:
        value = session.get(key)
        if key == "tools" and value in (None, []):
            continue
        if key == "tool_choice" and value in (None, "auto", "none"):
            continue
        if key not in ("tools", "tool_choice") and value in (None, False):
            continue
        if key == "tools" and isinstance(value, list) and any(isinstance(t, dict) and t.get("type") == "mcp"
                                                              for t in value):
            out.append("tools (MCP servers)")
            continue
        out.append(key)
    return out


def parse_session_update(data: dict[str, Any]) -> SessionChange:
    """Validate a GA ``session.update``. An invalid value refuses the whole update (``RealtimeError`` naming it);
    fields Attune cannot honour and unknown fields are listed in ``refused`` while the rest applies."""
    session = _obj(data.get("session"), "session")
    if session.get("type", "realtime") != "realtime":
        raise _bad("session.type must be 'realtime' (transcription sessions are not served)", "session.type")
    audio = _obj(session.get("audio") or {}, "session.audio")
    inp = _obj(audio.get("input") or {}, "session.audio.input")
    out = _obj(audio.get("output") or {}, "session.audio.output")
    known = {"audio", "instructions", "output_modalities", "max_output_tokens", *REFUSED_FIELDS, *IGNORED_FIELDS}
    refused = _refused(session) + [f"session.{k}" for k in sorted(set(session) - known)]
    refused += [f"session.audio.{k}" for k in sorted(set(audio) - {"input", "output"})]
    refused += [f"session.audio.output.{k}" for k in sorted(set(out) - {"format", "voice", "speed"})]
    if out.get("speed") not in (None, 1, 1.0):
        refused.append("session.audio.output.speed")
    refused += [f"session.audio.input.{k}" for k in sorted(
        set(inp) - {"format", "turn_detection", "transcription", "noise_reduction"})]
    voice = out.get("voice")
    if voice is not None and (not isinstance(voice, str) or not voice.strip() or len(voice) > 64):
        raise _bad("session.audio.output.voice must be a voice name", "session.audio.output.voice")
    transcription = inp.get("transcription")
    return SessionChange(
        instructions=None if session.get("instructions") is None else _instructions(
            session["instructions"], "session.instructions"),
        input_format=None if inp.get("format") is None else _format(inp["format"], "session.audio.input.format"),
        output_format=None if out.get("format") is None else _format(out["format"], "session.audio.output.format"),
        turn=_turn(inp["turn_detection"]) if "turn_detection" in inp else None,
        voice=voice,
        output_modalities=None if session.get("output_modalities") is None else _modalities(
            session["output_modalities"], "session.output_modalities"),
        max_output_tokens=None if session.get("max_output_tokens") is None else _max_tokens(
            session["max_output_tokens"], "session.max_output_tokens"),
        transcription=transcription if isinstance(transcription, dict) else None,
        refused=tuple(refused))


@dataclass(frozen=True)
class ResponseRequest:
    """A validated ``response.create``: per-response instructions, modalities and token bound (None = session's)."""

    instructions: str | None = None
    output_modalities: tuple[str, ...] | None = None
    max_output_tokens: int | None = None
    refused: tuple[str, ...] = ()


def parse_response_create(data: dict[str, Any]) -> ResponseRequest:
    r = _obj(data.get("response") or {}, "response")
    refused = [f"response.{k}" for k in ("tools", "tool_choice", "input", "prompt")
               if r.get(k) not in (None, [], "auto", "none")]
    if r.get("conversation") not in (None, "auto"):
        refused.append("response.conversation")
    return ResponseRequest(
        instructions=None if r.get("instructions") is None else _instructions(r["instructions"],
                                                                                "response.instructions"),
        output_modalities=None if r.get("output_modalities") is None else _modalities(
            r["output_modalities"], "response.output_modalities"),
        max_output_tokens=None if r.get("max_output_tokens") is None else _max_tokens(
            r["max_output_tokens"], "response.max_output_tokens"),
        refused=tuple(refused))


def parse_user_item(data: dict[str, Any], fmt: str) -> tuple[str, np.ndarray | None]:
    """A ``conversation.item.create`` user message: its ``input_text`` parts joined (text, None), or one
    ``input_audio`` part decoded like an append, in the session's input format ("", samples)."""
    item = _obj(data.get("item"), "item")
    if item.get("type", "message") != "message" or item.get("role") != "user":
        raise RealtimeError("Attune takes user messages only (item.type message, item.role user); function "
                            "calls, system and assistant items are not supported", "unsupported_item", "item.role")
    parts = item.get("content")
    if not isinstance(parts, list) or not parts:
        raise _bad("item.content must be a non-empty list", "item.content")
    if len(parts) == 1 and isinstance(parts[0], dict) and parts[0].get("type") == "input_audio":
        return "", decode_append(parts[0].get("audio"), fmt)
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") != "input_text" or not isinstance(part.get("text"), str):
            raise RealtimeError("item.content must be input_text parts or one input_audio part (images are not "
                                "supported)", "unsupported_item", f"item.content[{i}].type")
        texts.append(part["text"])
    text = " ".join(t.strip() for t in texts if t.strip())
    if not text or len(text) > MAX_INSTRUCTIONS_CHARS:
        raise _bad(f"item.content text must be non-empty and at most {MAX_INSTRUCTIONS_CHARS} characters",
                   "item.content")
    return text, None


@dataclass(frozen=True)
class Truncate:
    item_id: str
    content_index: int
    audio_end_ms: int


def parse_truncate(data: dict[str, Any]) -> Truncate:
    item_id = data.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise _bad("item_id must be a string", "item_id")
    return Truncate(item_id, _int(data.get("content_index", 0), "content_index", 0, 0),
                    _int(data.get("audio_end_ms"), "audio_end_ms", 0, 24 * 3600 * 1000))


def parse_item_id(data: dict[str, Any]) -> str:
    item_id = data.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise _bad("item_id must be a string", "item_id")
    return item_id


# ---- audio ----
def max_append_chars(fmt: str) -> int:
    """Base64 characters of ``MAX_APPEND_S`` of ``fmt`` audio."""
    return 4 * math.ceil(MAX_APPEND_S * FORMAT_RATES[fmt] * BYTES_PER_SAMPLE[fmt] / 3)


def decode_append(audio: Any, fmt: str) -> np.ndarray:
    """``input_audio_buffer.append``'s base64 -> mono float32 at ``FORMAT_RATES[fmt]``. The length is checked before
    anything is decoded. ``RealtimeError``: ``invalid_audio`` (not base64, empty, odd PCM16), ``audio_too_long``."""
    if not isinstance(audio, str):
        raise _bad("audio must be a base64 string", "audio", "invalid_audio")
    limit = max_append_chars(fmt)
    if len(audio) > limit:
        raise _bad(f"one append may carry at most {MAX_APPEND_S:g} s of {fmt} ({limit} base64 characters); "
                   "send audio in smaller appends", "audio", "audio_too_long")
    try:
        raw = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("audio is not valid base64", "audio", "invalid_audio") from None
    if not raw:
        raise _bad("audio is empty", "audio", "invalid_audio")
    if fmt == "audio/pcm":
        if len(raw) % 2:
            raise _bad(f"audio/pcm is 16-bit samples: {len(raw)} bytes is not a whole number of them", "audio",
                       "invalid_audio")
        return pcm16_to_float(raw)
    codes = np.frombuffer(raw, dtype=np.uint8)
    return (_ULAW if fmt == "audio/pcmu" else _ALAW)[codes]


def encode_output(samples: np.ndarray, fmt: str) -> str:
    """Mono float32 at ``FORMAT_RATES[fmt]`` -> base64 for ``response.output_audio.delta``."""
    raw = float_to_pcm16(samples)  # the one PCM16 encoder (core.audio); G.711 codes from its samples
    if fmt != "audio/pcm":
        pcm = np.frombuffer(raw, dtype="<i2")
        raw = (_ulaw_encode(pcm) if fmt == "audio/pcmu" else _alaw_encode(pcm)).tobytes()
    return base64.b64encode(raw).decode("ascii")


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (np.where(u & 0x80, 0x84 - t, t - 0x84) / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, ((a & 0x0F) << 4) + 8, (((a & 0x0F) << 4) + 0x108) << np.maximum(seg - 1, 0))
    return (np.where(a & 0x80, t, -t) / 32768.0).astype(np.float32)


_ULAW, _ALAW = _ulaw_table(), _alaw_table()


def _ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exp = np.floor(np.log2(mag)).astype(np.int32) - 7
    mant = (mag >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8)


def _alaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32767) >> 3  # 13-bit magnitude
    exp = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mant = np.where(exp == 0, mag >> 1, mag >> exp) & 0x0F
    return ((sign | (exp << 4) | mant) ^ 0x55).astype(np.uint8)


# ---- server events ----
def event(ids: Ids, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": ids.new("event"), **fields}


def error(ids: Ids, code: str, message: str, *, param: str | None = None, event_id: str | None = None,
          error_type: str = INVALID) -> dict[str, Any]:
    """OpenAI's ``error`` event: ``{type, event_id, error: {type, code, message, param, event_id}}``."""
    return event(ids, "error", error={"type": error_type, "code": code, "message": message, "param": param,
                                      "event_id": event_id})


def user_item(item_id: str, *, transcript: str | None, text: bool = False, status: str = "completed"
              ) -> dict[str, Any]:
    part = ({"type": "input_text", "text": transcript} if text
            else {"type": "input_audio", "transcript": transcript})
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": status,
            "content": [part]}


def assistant_item(item_id: str, *, transcript: str | None, status: str, modality: str = "audio"
                   ) -> dict[str, Any]:
    content = [] if transcript is None else [_part(modality, transcript)]
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
            "content": content}


def _part(modality: str, transcript: str) -> dict[str, Any]:
    if modality == "text":
        return {"type": "output_text", "text": transcript}
    return {"type": "output_audio", "transcript": transcript}


def content_part(modality: str, transcript: str) -> dict[str, Any]:
    """The ``part`` of ``response.content_part.added/done`` (types ``audio`` / ``text``)."""
    return {"type": "text", "text": transcript} if modality == "text" else {"type": "audio", "transcript": transcript}


def response(resp_id: str, *, status: str, modality: str, voice: str, fmt: str, max_tokens: int | None,
             output: list[dict[str, Any]] | None = None, usage: dict[str, Any] | None = None,
             reason: str | None = None, failure: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``response`` object of ``response.created`` / ``response.done``."""
    obj: dict[str, Any] = {
        "id": resp_id, "object": "realtime.response", "status": status, "conversation_id": "conv_1",
        "output_modalities": [modality], "output": output or [],
        "audio": {"output": {"format": format_object(fmt), "voice": voice}},
        "max_output_tokens": max_tokens if max_tokens else "inf",
    }
    if status != "in_progress":
        details: dict[str, Any] = {"type": status}
        if reason is not None:
            details["reason"] = reason
        if failure is not None:
            details["error"] = failure
        obj["status_details"] = details
        obj["usage"] = usage or {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}
    return obj


def format_object(fmt: str) -> dict[str, Any]:
    return {"type": fmt, "rate": REALTIME_RATE} if fmt == "audio/pcm" else {"type": fmt}


def usage(trace: dict[str, Any], reply_text: str) -> dict[str, Any]:
    """Token usage from the turn's trace: the prompt's tokens (of which the KV cache served ``cached_tokens``) and
    the reply's (counted by the LLM where it reports them, else estimated from the text)."""
    prompt = int(trace.get("llm_prompt_tokens") or 0)
    cached = int(trace.get("llm_reused_tokens") or 0)
    out = int(trace.get("llm_output_tokens") or 0) or math.ceil(len(reply_text) / 3.6)
    return {"total_tokens": prompt + out, "input_tokens": prompt, "output_tokens": out,
            "input_token_details": {"text_tokens": prompt, "audio_tokens": 0, "cached_tokens": cached},
            "output_token_details": {"text_tokens": out, "audio_tokens": 0}}
