"""The protocol's pure core, loop-free: decoding and validating client messages, input audio at the edge, the
streaming resampler, and the wire form of session events."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.signal import resample_poly

from attune.core import events as ev
from attune.core.errors import ProtocolError
from attune.core.events import SessionEvent, error_event
from attune.core.frames import AudioChunk
from attune.transports import protocol as proto

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


@pytest.mark.parametrize(("text", "code"), [
    ("{", "invalid_json"), ("", "invalid_json"), ("[" * 100000, "invalid_json"), ("42", "invalid_event"),
    ('{"type": 3}', "invalid_event"), ('{"type": "nope"}', "unknown_event"),
    ('{"type": "input_audio_buffer.append", "audio": ""}', "audio_as_text"),
])
def test_decode_text_errors(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        proto.decode_text(text)
    assert info.value.code == code


def test_decode_text_known_events() -> None:
    for kind in proto.CLIENT_EVENTS:
        assert proto.decode_text(json.dumps({"type": kind})).type == kind


def _update(session: object) -> proto.SessionUpdate:
    return proto.parse_session_update(proto.ClientEvent("session.update", {"session": session}), ("piper", "espeak"))


def test_session_update_valid() -> None:
    u = _update({"input_sample_rate": 44100, "strategy": "match", "voice": "espeak", "persona": " Be brief. ",
                 "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}})
    assert (u.input_sample_rate, u.strategy, u.voice, u.persona) == (44100, "match", "espeak", "Be brief.")
    assert u.turn_detection == proto.TurnDetection(silence_duration_ms=700)
    assert _update({}) == proto.SessionUpdate()


@pytest.mark.parametrize("session", [
    None, [], {"input_sample_rate": 7999}, {"input_sample_rate": 48001}, {"input_sample_rate": 16000.5},
    {"input_sample_rate": "16000"}, {"input_sample_rate": True}, {"input_sample_rate": math.nan},
    {"strategy": "shout"}, {"voice": "csm"}, {"persona": ""}, {"persona": "x" * 5000}, {"input_audio_format": "mp3"},
    {"turn_detection": {"threshold": 2}}, {"turn_detection": {"type": "semantic_vad"}}, {"turn_detection": 3},
    {"turn_detection": {"eagerness": "high"}}, {"temperature": 0.5},
])
def test_session_update_invalid(session: object) -> None:
    with pytest.raises(ProtocolError) as info:
        _update(session)
    assert info.value.code == "invalid_session_update"


def test_decode_audio() -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    assert np.allclose(proto.decode_audio(pcm, "pcm16", 16000), [0, 0.5, -1, 32767 / 32768])
    floats = np.array([0.25, -2.0], dtype="<f4").tobytes()
    assert np.allclose(proto.decode_audio(floats, "float32", 16000), [0.25, -1.0])  # clipped


@pytest.mark.parametrize(("data", "fmt", "code"), [
    (b"", "pcm16", "empty_audio"), (b"\0" * 3, "pcm16", "misaligned_audio"), (b"\0" * 6, "float32", "misaligned_audio"),
    (np.array([np.nan], dtype="<f4").tobytes(), "float32", "non_finite_audio"),
    (np.array([0.0, -np.inf], dtype="<f4").tobytes(), "float32", "non_finite_audio"),
    (b"\0" * (2 * 8001), "pcm16", "frame_too_long"),
])
def test_decode_audio_errors(data: bytes, fmt: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        proto.decode_audio(data, fmt, 8000)
    assert info.value.code == code


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_streaming_resampler_matches_one_shot(rate: int) -> None:
    x = (0.1 * np.random.default_rng(1).standard_normal(rate * 2)).astype(np.float32)
    r = proto.StreamingResampler(rate)
    step = rate // 50 + 7  # frames that do not align with the filter's blocks
    y = np.concatenate([r.push(x[i:i + step]) for i in range(0, len(x), step)])
    g = math.gcd(rate, 16000)
    ref = resample_poly(x, 16000 // g, rate // g)
    assert len(ref) - len(y) <= r.delay_s * 16000 + 16000 // 50
    assert np.max(np.abs(y - ref[: len(y)])) < 1e-5


def test_streaming_resampler_passthrough_at_16k() -> None:
    x = np.ones(320, dtype=np.float32)
    assert proto.StreamingResampler(16000).push(x) is x


def test_encode_event() -> None:
    err = json.loads(proto.encode_event(error_event("llm_failed", "down", retryable=True, turn=2)))
    assert err == {"type": "error", "error": {"code": "llm_failed", "message": "down", "retryable": True}, "turn": 2}
    audio = proto.encode_event(SessionEvent(ev.AUDIO_DELTA, {}, AudioChunk(np.array([0.5, -2.0], np.float32), 16000)))
    assert audio == np.array([16384, -32767], dtype="<i2").tobytes()
    nan = json.loads(proto.encode_event(SessionEvent(ev.EMOTION_MEASUREMENT, {"x": float("nan"), "y": [1.0]})))
    assert nan == {"type": "emotion.measurement", "x": None, "y": [1.0]}
