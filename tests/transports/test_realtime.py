"""``/v1/realtime`` with the official ``openai`` SDK exactly as a user drives it (``AsyncOpenAI(base_url=...)
.realtime.connect(model=...)``), against the real ASGI app on uvicorn with the fake engines: a spoken turn with
server VAD, manual commit + ``response.create``, typed text, cancel, truncate after a barge-in, and bad input. Every
server event is validated against the SDK's own models (``openai.types.realtime``), Attune's extensions against
``docs/realtime-extensions.schema.json``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from tests.fakes import ScriptedLLM, ToneTTS
from tests.transports.realtime_util import RATE, Received, b64, read_sdk, read_ws, tone_speech
from tests.ws_util import FakeStack, running_server

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

openai = pytest.importorskip("openai", reason="the openai SDK is in the dev extra")
REPLY = "Hello, nice to hear you. How are you?"


@contextlib.asynccontextmanager
async def sdk_session(srv: Any, **connect: Any) -> AsyncIterator[tuple[Any, Received]]:
    client = openai.AsyncOpenAI(api_key="any-key", base_url=f"{srv.http}/v1")
    async with client.realtime.connect(model=connect.pop("model", "attune"), **connect) as conn:
        got = Received()
        reader = asyncio.create_task(read_sdk(conn, got))
        try:
            yield conn, got
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def stream(conn: Any, samples: np.ndarray, *, chunk_s: float = 0.1, pace_s: float = 0.02) -> None:
    step = int(chunk_s * RATE)
    for i in range(0, len(samples), step):
        await conn.input_audio_buffer.append(audio=b64(samples[i:i + step]))
        await asyncio.sleep(pace_s)


def _audio_s(events: list[dict[str, Any]], response_id: str) -> float:
    data = b"".join(base64.b64decode(e["delta"]) for e in events
                    if e["type"] == "response.output_audio.delta" and e["response_id"] == response_id)
    return len(data) / 2 / RATE


def _assert_valid(got: Received) -> None:
    assert not got.invalid, got.invalid


async def test_spoken_turn_with_server_vad_through_the_sdk() -> None:
    async with running_server() as srv, sdk_session(srv, model="attune-test") as (conn, got):
        created = await got.wait("session.created")
        assert created["session"]["model"] == "attune-test"
        await conn.session.update(session={"type": "realtime", "instructions": "You are Ada, calm and brief.",
                                           "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                                               "turn_detection": {"type": "server_vad",
                                                                                  "silence_duration_ms": 300}}}})
        updated = await got.wait("session.updated")
        assert updated["session"]["instructions"] == "You are Ada, calm and brief."
        assert updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 300
        await stream(conn, np.concatenate([tone_speech(1.2), np.zeros(int(0.6 * RATE), np.float32)]))
        done = await got.wait("response.done")
        kinds = got.types()
        order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.added",
                 "conversation.item.input_audio_transcription.completed", "response.created",
                 "response.output_item.added", "response.content_part.added", "response.output_audio.delta",
                 "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
                 "response.output_item.done", "response.done"]
        positions = [kinds.index(k) for k in order]  # each present, first occurrences in lifecycle order
        assert positions == sorted(positions), kinds
        user = got.of("conversation.item.input_audio_transcription.completed")[0]
        assert user["transcript"] == "hello there"
        assert user["item_id"] == got.of("input_audio_buffer.committed")[0]["item_id"]
        resp = done["response"]
        assert resp["status"] == "completed"
        assert resp["output"][0]["content"][0]["transcript"] == REPLY
        deltas = "".join(e["delta"] for e in got.of("response.output_audio_transcript.delta"))
        assert deltas == REPLY
        # ToneTTS speaks 0.25 s a word: the deltas carry the whole reply, no more, at 24 kHz.
        assert 0.7 * 8 * 0.25 < _audio_s(got.events, resp["id"]) < 1.3 * 8 * 0.25
        assert done["attune"]["strategy"] and "latency_ms" in done["attune"]
        user_done = [e for e in got.of("conversation.item.done") if e["item"]["role"] == "user"]
        assert user_done and user_done[0]["attune"]["emotion"] is not None
        assert got.of("emotion.turn") and got.of("emotion.measurement")
        _assert_valid(got)
        assert {e["type"] for e in got.extensions} >= {"emotion.turn", "emotion.measurement", "response.done"}


async def test_manual_commit_typed_text_cancel_and_truncate() -> None:
    slow = FakeStack(llm=ScriptedLLM([f" word{i}." for i in range(40)]), tts=ToneTTS(seconds_per_word=0.3))
    async with running_server(slow) as srv, sdk_session(srv) as (conn, got):
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await got.wait("session.updated")
        await stream(conn, np.concatenate([tone_speech(1.0), np.zeros(int(1.0 * RATE), np.float32)]))
        await asyncio.sleep(0.3)
        assert not got.of("response.created"), "turn detection off: no reply before response.create"
        assert not got.of("input_audio_buffer.speech_started"), "turn detection off: no VAD events"
        await conn.input_audio_buffer.commit()
        committed = await got.wait("input_audio_buffer.committed")
        await conn.response.create()
        first = await got.wait("response.output_audio.delta")
        await conn.response.cancel()
        done = await got.wait("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        assert got.of("conversation.item.input_audio_transcription.completed")[0]["item_id"] == committed["item_id"]
        assert first["response_id"] == done["response"]["id"]

        # Typed text: an item, then the response it asks for (with instructions for this response only).
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "I feel better"}]})
        await got.wait("conversation.item.done", count=2)
        await conn.response.create(response={"instructions": "Answer in one word."})
        created = await got.wait("response.created", count=2)
        assert srv.attune.engines.llm.calls[-1][0].content.find("Answer in one word.") >= 0
        session = next(iter(srv.attune.connections.values())).session
        assert "Answer in one word." not in session.settings.persona.description  # this response only

        # Barge-in with server VAD, then the client says how much it played.
        await conn.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}})
        item = (await got.wait("response.output_item.added", count=2))["item"]["id"]
        await got.wait("response.output_audio.delta", count=30)
        await stream(conn, tone_speech(0.8), pace_s=0.1)
        cut = await got.wait("response.done", count=2)
        assert cut["response"]["id"] == created["response"]["id"]
        assert cut["response"]["status"] == "cancelled"
        assert cut["response"]["status_details"]["reason"] == "turn_detected"
        await conn.conversation.item.truncate(item_id=item, content_index=0, audio_end_ms=600)
        truncated = await got.wait("conversation.item.truncated")
        assert truncated["audio_end_ms"] == 600
        said = [e.content for e in session.memory.exchanges if e.role == "assistant"][-1]
        assert said.startswith("word0.") and "word3." not in said  # 0.6 s of 0.3 s words: two heard at most
        _assert_valid(got)


async def _raw(srv: Any) -> Any:
    from websockets.asyncio.client import connect

    return connect(f"ws://127.0.0.1:{srv.port}/v1/realtime?model=x", max_size=None)


async def test_bad_input_gets_openai_errors_and_the_session_lives() -> None:
    async with running_server() as srv:
        async with await _raw(srv) as ws:
            got = Received()
            reader = asyncio.create_task(read_ws(ws, got))
            await got.wait("session.created")
            bad: list[tuple[str | bytes, str]] = [
                ("{not json", "invalid_json"),
                (json.dumps({"type": "input_audio_buffer.append", "audio": "@@@not base64@@@"}), "invalid_audio"),
                (json.dumps({"type": "input_audio_buffer.append", "audio": "AA=="}), "invalid_audio"),
                (json.dumps({"type": "input_audio_buffer.append", "event_id": "c1",
                             "audio": "A" * (2 * 1024 * 1024)}), "audio_too_long"),
                (json.dumps({"type": "no.such.event"}), "unknown_event"),
                (json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {
                    "type": "audio/opus"}}}}}), "invalid_value"),
                (json.dumps({"type": "session.update", "session": {"tools": [{"type": "function", "name": "f"}],
                                                                   "instructions": "Be brief."}}),
                 "unsupported_field"),
                (json.dumps({"type": "response.cancel"}), "response_cancel_not_active"),
                (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
                (json.dumps({"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 1}),
                 "item_not_found"),
                (b"\x00\x01", "binary_not_supported"),
            ]
            for i, (message, code) in enumerate(bad, 1):
                await ws.send(message)
                error = await got.wait("error", count=i)
                assert error["error"]["code"] == code, error
                assert error["error"]["type"] and error["error"]["message"]
            assert got.of("error")[3]["error"]["event_id"] == "c1"
            assert got.of("error")[6]["error"]["param"] == "tools"
            # The update with tools applied the rest, and the session still answers.
            updated = await got.wait("session.updated")
            assert updated["session"]["instructions"] == "Be brief."
            # One append (a whole recording at once, as OpenAI's examples send it): the clock keeper cannot put
            # silence between the speech and the resampler's last few samples of it, however loaded the machine.
            turn = np.concatenate([tone_speech(1.0), np.zeros(RATE, np.float32)])
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(turn)}))
            done = await got.wait("response.done")
            assert done["response"]["status"] == "completed"
            started = got.of("input_audio_buffer.speech_started")[0]["audio_start_ms"]
            stopped = got.of("input_audio_buffer.speech_stopped")[0]["audio_end_ms"]
            # 1 s of 24 kHz audio is 1 s on the session's clock (read as 16 kHz it would be 1.5 s); the start
            # includes up to the 300 ms pre-roll of the silence before it
            assert 850 < stopped - started < 1000 + 320 + 80
            reader.cancel()
            _assert_valid(got)


async def test_ws_route_keeps_its_own_size_cap() -> None:
    """``/ws`` still closes an oversize message with 1009 though the server's cap is /v1/realtime's larger one."""
    from websockets.asyncio.client import connect

    async with running_server(server={"max_message_bytes": 4096}) as srv:
        async with connect(f"ws://127.0.0.1:{srv.port}/ws", max_size=None) as ws:
            await ws.recv()
            await ws.send(bytes(8192))
            with pytest.raises(Exception) as closed:
                for _ in range(100):
                    await ws.recv()
            assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1009


async def test_token_auth_takes_the_sdk_key() -> None:
    async with running_server(tokens=("s3cret",)) as srv:
        with pytest.raises(Exception):  # noqa: B017 - the SDK's handshake error (HTTP 401)
            async with sdk_session(srv) as _:
                pass
        client = openai.AsyncOpenAI(api_key="s3cret", base_url=f"{srv.http}/v1")
        async with client.realtime.connect(model="attune") as conn:
            event = await conn.recv()
            assert event.type == "session.created"


async def test_a_turn_without_words_still_closes_its_item_and_response() -> None:
    """Noise the ASR hears no words in gets no reply; the client's item and requested response still end."""
    from tests.fakes import FixedASR

    async with running_server(FakeStack(asr=FixedASR(""))) as srv, sdk_session(srv) as (conn, got):
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await got.wait("session.updated")
        await stream(conn, np.concatenate([tone_speech(1.0), np.zeros(int(0.5 * RATE), np.float32)]))
        await conn.input_audio_buffer.commit()
        committed = await got.wait("input_audio_buffer.committed")
        await conn.response.create()
        done = await got.wait("response.done")
        assert done["response"]["status"] == "completed" and done["response"]["output"] == []
        transcribed = await got.wait("conversation.item.input_audio_transcription.completed")
        assert transcribed["item_id"] == committed["item_id"] and transcribed["transcript"] == ""
        closed = await got.wait("conversation.item.done", item__id=committed["item_id"])
        assert closed["item"]["content"][0]["transcript"] == ""
        await asyncio.sleep(0.6)  # past the quiet sweep: the session's empty transcript closed the item once
        assert len([e for e in got.of("conversation.item.input_audio_transcription.completed")
                    if e["item_id"] == committed["item_id"]]) == 1
        assert len([e for e in got.of("conversation.item.done") if e["item"]["id"] == committed["item_id"]]) == 1
        _assert_valid(got)


async def test_g711_audio_text_modality_and_item_delete() -> None:
    """mu-law both ways at 8 kHz, then a text-only response to typed text, then an item deleted from the history."""
    async with running_server() as srv, sdk_session(srv) as (conn, got):
        await conn.session.update(session={"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad",
                                                                          "silence_duration_ms": 300}},
            "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}})
        updated = await got.wait("session.updated")
        assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        from attune.transports.realtime_protocol import encode_output

        speech = np.concatenate([tone_speech(1.2, 8000), np.zeros(8000, np.float32)])
        for i in range(0, len(speech), 800):
            await conn.input_audio_buffer.append(audio=encode_output(speech[i:i + 800], "audio/pcmu"))
            await asyncio.sleep(0.02)
        done = await got.wait("response.done")
        assert done["response"]["status"] == "completed"
        mulaw = b"".join(base64.b64decode(e["delta"]) for e in got.of("response.output_audio.delta"))
        assert 0.7 * 8 * 0.25 < len(mulaw) / 8000 < 1.3 * 8 * 0.25  # one byte a sample at 8 kHz
        audio_deltas = len(got.of("response.output_audio.delta"))
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await got.wait("session.updated", count=2)
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Thanks"}]})
        await conn.response.create()
        text_done = await got.wait("response.done", count=2)
        assert text_done["response"]["output_modalities"] == ["text"]
        assert "".join(e["delta"] for e in got.of("response.output_text.delta")) == REPLY
        assert len(got.of("response.output_audio.delta")) == audio_deltas  # text only: no audio
        item_id = text_done["response"]["output"][0]["id"]
        session = next(iter(srv.attune.connections.values())).session
        before = len(session.memory.exchanges)
        await conn.conversation.item.delete(item_id=item_id)
        await got.wait("conversation.item.deleted")
        assert len(session.memory.exchanges) == before - 1
        _assert_valid(got)


async def test_a_recorded_user_item_is_answered_at_response_create() -> None:
    """``conversation.item.create`` with one ``input_audio`` part: held, then transcribed and answered."""
    async with running_server() as srv, sdk_session(srv) as (conn, got):
        await got.wait("session.created")
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_audio", "audio": b64(tone_speech(1.0))}]})
        added = await got.wait("conversation.item.added")
        assert added["item"]["content"][0]["type"] == "input_audio"
        await asyncio.sleep(0.3)
        assert not got.of("response.created"), "an item is answered at response.create, not before"
        await conn.response.create()
        done = await got.wait("response.done")
        assert done["response"]["status"] == "completed"
        heard = got.of("conversation.item.input_audio_transcription.completed")[0]
        assert heard["item_id"] == added["item"]["id"] and heard["transcript"] == "hello there"
        assert len(srv.attune.engines.asr.calls[-1].samples) == 16000  # 1 s at 24 kHz, resampled to 16 kHz
        _assert_valid(got)
