"""What a ``/v1/realtime`` connection maps onto its ``Session``: a GA ``session.update`` turned into session
settings (turn detection, instructions, voice, formats, token bound) and the GA ``session`` object that
``session.created`` / ``session.updated`` report. Synchronous; ``realtime_connection.py`` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from attune.pipeline import session_backends as running
from attune.pipeline.endpoint import EndpointSettings
from attune.pipeline.session import Session
from attune.transports.realtime_protocol import (
    FORMAT_RATES,
    OPENAI_VOICES,
    REALTIME_RATE,
    SessionChange,
    TurnMode,
    format_object,
)

NO_BARGE_IN_MS = 10**9  # interrupt_response false: speech over the agent never interrupts it
MANUAL_END_OF_TURN_MS = 5000  # turn_detection null: the longest silence inside one committed turn
EAGERNESS_SCALE = {"low": 1.6, "medium": 1.0, "auto": 1.0, "high": 0.6}  # x the configured end-of-turn silences
EAGERNESS_MAX_MS = {"low": 8000, "medium": 4000, "auto": 4000, "high": 2000}  # OpenAI's longest waits


@dataclass
class Span:
    """A sentence of an assistant item on the item's own audio time (what ``audio_end_ms`` counts)."""

    text: str
    start_ms: float
    end_ms: float


def heard_text(spans: list[Span], audio_end_ms: float) -> str:
    """The words heard of an item played up to ``audio_end_ms``; a sentence cut midway keeps its played share."""
    words: list[str] = []
    for span in spans:
        if span.start_ms >= audio_end_ms:
            break
        duration = span.end_ms - span.start_ms
        share = 1.0 if duration <= 0 else min(1.0, (audio_end_ms - span.start_ms) / duration)
        sentence = span.text.split()
        words.extend(sentence[: int(share * len(sentence))])
        if share < 1.0:
            break
    return " ".join(words)


@dataclass
class RealtimeState:
    """The Realtime side of one session: formats, turn mode, modality and what the client asked to be called.
    ``base``: the session's settings when the connection opened (what eagerness and server_vad scale from)."""

    base: Any
    model: str
    session_id: str
    input_format: str = "audio/pcm"
    output_format: str = "audio/pcm"
    turn: TurnMode = field(default_factory=TurnMode)
    modality: str = "audio"
    voice: str = "attune"
    transcription: dict[str, Any] = field(default_factory=lambda: {"model": "whisper"})

    @property
    def input_rate(self) -> int:
        return FORMAT_RATES[self.input_format]

    def voice_choice(self, name: str, providers: tuple[str, ...]) -> tuple[str | None, bool]:
        """(the TTS provider it names, or None; whether it is a known name that keeps the configured voice)."""
        if name in providers:
            return name, True
        return None, name in OPENAI_VOICES or name == "attune"


def start(session: Session, state: RealtimeState, *, predicted: bool) -> None:
    """A new Realtime session: replies at 24 kHz, and the turn mode the server runs by (semantic_vad where the
    end of the turn is predicted, server_vad where silence alone ends it)."""
    st = session.settings
    state.turn = TurnMode("semantic_vad" if predicted else "server_vad")
    if st.reply.output_sample_rate != REALTIME_RATE:
        session.apply(running.SessionChange(replace(st, reply=replace(st.reply, output_sample_rate=REALTIME_RATE))))


def apply(change: SessionChange, session: Session, state: RealtimeState) -> None:
    """The settings part of an update (formats, turn detection, modality, token bound); instructions and voice
    go through ``LiveSettings`` (the connection's part, which may resolve a persona)."""
    st = session.settings
    if change.input_format is not None:
        state.input_format = change.input_format
    if change.output_modalities is not None:
        state.modality = change.output_modalities[0]
    if change.transcription is not None:
        state.transcription = {k: v for k, v in change.transcription.items() if k in ("model", "language", "prompt")}
    reply = st.reply
    if change.output_format is not None:
        state.output_format = change.output_format
        reply = replace(reply, output_sample_rate=FORMAT_RATES[change.output_format])
    if change.max_output_tokens is not None:
        reply = replace(reply, max_tokens=change.max_output_tokens or state.base.reply.max_tokens)
    st = replace(st, reply=reply)
    if change.turn is not None:
        state.turn = change.turn
        st = turn_settings(st, change.turn, state.base)
    if st != session.settings:
        session.apply(running.SessionChange(st))


def turn_settings(st: Any, mode: TurnMode, base: Any) -> Any:
    """``SessionSettings`` for a turn mode: server_vad = silence alone (its thresholds), semantic_vad = the predicted
    end of turn with its silences scaled by eagerness, none = the client commits and asks for each response."""
    turn, policy = st.turn, st.policy
    barge = base.policy.barge_in_min_ms if mode.interrupt_response else NO_BARGE_IN_MS
    policy = replace(policy, barge_in_min_ms=barge, auto_respond=mode.create_response)
    endpoint = None
    if mode.kind == "none":
        end = MANUAL_END_OF_TURN_MS
    elif mode.kind == "server_vad":
        end = mode.silence_duration_ms or base.turn.end_of_turn_silence_ms
        turn = replace(turn, vad_threshold=mode.threshold if mode.threshold is not None else base.turn.vad_threshold,
                       preroll_ms=(mode.prefix_padding_ms if mode.prefix_padding_ms is not None
                                   else base.turn.preroll_ms))
    else:
        end = base.turn.end_of_turn_silence_ms
        endpoint = _eager(base.endpoint, mode.eagerness)
    turn = turn.ending_after(end, base.turn.speculate_silence_ms)
    return replace(st, turn=turn, policy=policy, endpoint=endpoint)


def _eager(endpoint: EndpointSettings | None, eagerness: str) -> EndpointSettings | None:
    if endpoint is None:
        return None
    k, cap = EAGERNESS_SCALE[eagerness], EAGERNESS_MAX_MS[eagerness]
    return replace(endpoint, complete_ms=max(32, int(endpoint.complete_ms * k)),
                   likely_ms=max(32, int(endpoint.likely_ms * k)),
                   unfinished_ms=min(cap, max(100, int(endpoint.unfinished_ms * k))))


def describe(session: Session, state: RealtimeState, extension: dict[str, Any]) -> dict[str, Any]:
    """The GA ``session`` object (``RealtimeSessionCreateRequest``'s shape) plus ``attune``, Attune's part."""
    st = session.settings
    t = state.turn
    detection: dict[str, Any] | None
    if t.kind == "none":
        detection = None
    elif t.kind == "server_vad":
        detection = {"type": "server_vad", "threshold": st.turn.vad_threshold, "prefix_padding_ms": st.turn.preroll_ms,
                     "silence_duration_ms": st.turn.end_of_turn_silence_ms, "create_response": t.create_response,
                     "interrupt_response": t.interrupt_response, "idle_timeout_ms": None}
    else:
        detection = {"type": "semantic_vad", "eagerness": t.eagerness, "create_response": t.create_response,
                     "interrupt_response": t.interrupt_response}
    return {
        "type": "realtime", "object": "realtime.session", "id": state.session_id, "model": state.model,
        "instructions": st.persona.description, "output_modalities": [state.modality],
        "max_output_tokens": st.reply.max_tokens, "tools": [], "tool_choice": "auto", "tracing": None,
        "audio": {
            "input": {"format": format_object(state.input_format), "transcription": state.transcription,
                      "noise_reduction": None, "turn_detection": detection},
            "output": {"format": format_object(state.output_format), "voice": state.voice, "speed": 1.0},
        },
        "attune": {"strategy": st.strategy, **extension},
    }
