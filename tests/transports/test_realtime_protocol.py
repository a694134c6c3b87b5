"""The Realtime wire core without a loop or a socket: bounded base64 decode, G.711 both ways, the GA session.update
mapped (refused fields named, the rest applied), what truncate counts as heard, and the policy's held turn."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from attune.core.frames import AudioChunk
from attune.pipeline.endpoint import EndpointSettings
from attune.pipeline.settings import SessionSettings
from attune.pipeline.turn import UserTurn
from attune.pipeline.turn_policy import PolicySettings, StartReply, TurnPolicy
from attune.transports import realtime_protocol as rt
from attune.transports.realtime_session import Span, heard_text, turn_settings

LAYER = "unit"  # STYLE.md layer 1: pure cores, loop-free, no models


def test_pcm_round_trip_and_bounded_decode() -> None:
    x = (0.5 * np.sin(np.arange(2400) / 7.0)).astype(np.float32)
    back = rt.decode_append(rt.encode_output(x, "audio/pcm"), "audio/pcm")
    assert np.max(np.abs(back - x)) < 1e-4
    too_long = "A" * (rt.max_append_chars("audio/pcm") + 4)
    with pytest.raises(rt.RealtimeError) as err:
        rt.decode_append(too_long, "audio/pcm")
    assert err.value.code == "audio_too_long" and err.value.param == "audio"
    for bad in ("not base64!", "", base64.b64encode(b"\x01").decode(), 42):
        with pytest.raises(rt.RealtimeError) as err:
            rt.decode_append(bad, "audio/pcm")
        assert err.value.code == "invalid_audio"


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_g711_round_trip(fmt: str) -> None:
    x = (0.6 * np.sin(np.arange(800) / 5.0)).astype(np.float32)
    wire = rt.encode_output(x, fmt)
    assert len(base64.b64decode(wire)) == len(x)  # one byte a sample
    back = rt.decode_append(wire, fmt)
    assert np.max(np.abs(back - x)) < 0.02  # 8-bit companding: within a few percent of full scale
    assert np.corrcoef(back, x)[0, 1] > 0.999


def test_session_update_names_what_it_cannot_honour_and_keeps_the_rest() -> None:
    change = rt.parse_session_update({"session": {
        "type": "realtime", "instructions": "Be kind.", "tools": [{"type": "mcp", "server_label": "x"}],
        "tool_choice": "required", "output_modalities": ["text"], "max_output_tokens": "inf",
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "semantic_vad",
                                                                                  "eagerness": "high"}},
                  "output": {"voice": "marin"}}}})
    assert change.instructions == "Be kind." and change.input_format == "audio/pcmu"
    assert change.turn is not None and change.turn.kind == "semantic_vad" and change.turn.eagerness == "high"
    assert change.output_modalities == ("text",) and change.max_output_tokens == 0 and change.voice == "marin"
    assert change.refused == ("tools (MCP servers)", "tool_choice")
    empty = rt.parse_session_update({"session": {"tools": [], "tool_choice": "auto"}})
    assert empty.refused == ()
    manual = rt.parse_session_update({"session": {"audio": {"input": {"turn_detection": None}}}})
    assert manual.turn is not None and manual.turn.kind == "none" and not manual.turn.create_response
    for bad, param in ((({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}),
                        "session.audio.input.format.rate"),
                       ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
                       ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "x"}}}},
                        "session.audio.input.turn_detection.eagerness")):
        with pytest.raises(rt.RealtimeError) as err:
            rt.parse_session_update({"session": bad})
        assert err.value.param == param


def test_turn_modes_map_onto_session_settings() -> None:
    base = SessionSettings(endpoint=EndpointSettings(complete_ms=200, likely_ms=700, unfinished_ms=1200))
    server = turn_settings(base, rt.TurnMode("server_vad", silence_duration_ms=300, threshold=0.7), base)
    assert server.endpoint is None and server.turn.end_of_turn_silence_ms == 300 and server.turn.vad_threshold == 0.7
    eager = turn_settings(base, rt.TurnMode("semantic_vad", eagerness="high"), base)
    patient = turn_settings(base, rt.TurnMode("semantic_vad", eagerness="low"), base)
    assert eager.endpoint and patient.endpoint
    assert eager.endpoint.likely_ms < base.endpoint.likely_ms < patient.endpoint.likely_ms  # type: ignore[union-attr]
    manual = turn_settings(base, rt.TurnMode("none", create_response=False, interrupt_response=False), base)
    assert not manual.policy.auto_respond and manual.policy.barge_in_min_ms > 10**6


def test_truncate_counts_only_what_was_played() -> None:
    spans = [Span("One two three.", 0, 1000), Span("Four five.", 1000, 1600)]
    assert heard_text(spans, 2000) == "One two three. Four five."
    assert heard_text(spans, 1000) == "One two three."
    assert heard_text(spans, 700) == "One two"
    assert heard_text(spans, 1200) == "One two three."  # a third of two words: neither
    assert heard_text(spans, 0) == ""


def test_policy_holds_ended_turns_until_respond() -> None:
    policy = TurnPolicy(PolicySettings(auto_respond=False))
    a = AudioChunk(np.ones(1600, np.float32), 16000, 1.0)
    b = AudioChunk(np.ones(800, np.float32), 16000, 3.0)
    assert policy.on_turn_event(UserTurn(a, 1.0, 1.1), audible=False) == []
    assert policy.on_turn_event(UserTurn(b, 3.0, 3.05), audible=False) == []
    decisions = policy.respond()
    assert len(decisions) == 1 and isinstance(decisions[0], StartReply)
    held = decisions[0].audio
    assert held is not None and len(held.samples) == 2400 and held.timestamp_s == 1.0  # both turns, answered once
    assert policy.respond() == []


def test_parse_client_errors_carry_the_event_id() -> None:
    with pytest.raises(rt.RealtimeError) as err:
        rt.parse_client('{"type": "conversation.item.retrieve", "event_id": "e9"}')
    assert err.value.code == "unknown_event" and err.value.event_id == "e9"
    with pytest.raises(rt.RealtimeError) as err:
        rt.parse_client("[1]")
    assert err.value.code == "invalid_event"
