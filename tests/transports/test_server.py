"""The WebSocket server with the fake engines, over real sockets: the protocol document's example session, every
event it can send documented, settings, push-to-talk, edge resampling, the shared LLM's queue, /health and
/metrics."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from attune.core import events as ev
from attune.transports import protocol as proto
from tests.fakes import ScriptedLLM
from tests.ws_util import (
    SILENCE_FRAME,
    FakeStack,
    Log,
    collect,
    connect,
    running_server,
    send_audio,
    speech,
    talk,
    wait_for,
)

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


async def _get(url: str, **kw: object) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url, **kw)  # type: ignore[arg-type]


def _example() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8").split("## Example session", 1)[1]
    block = text.split("```", 2)[1]
    return [(line[0], line[1:].strip()) for line in block.splitlines() if line[:1] in ("→", "←")]


def _has_keys(expected: object, got: object) -> bool:
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(k in got and _has_keys(v, got[k]) for k, v in expected.items())
    return True


async def test_protocol_example() -> None:
    """Drive the server through docs/PROTOCOL.md's example: each ← arrives in order with at least its keys."""
    steps = _example()
    assert len(steps) > 10
    async with running_server() as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        expected: list[dict[str, object]] = []
        for arrow, body in steps:
            if arrow == "←":
                expected.append(json.loads(body))
                continue
            if body.startswith("audio: speech"):
                await send_audio(ws, speech(float(body.split()[2])))
            elif body == "audio: silence until response.done":
                await _silence_until(ws, log, "response.done", len(log.of("response.done")) + 1)
            else:
                await ws.send(body)
                await asyncio.sleep(0.2)
        await ws.close()
        await reader
    cursor = 0
    for want in expected:
        for i in range(cursor, len(log.events)):
            got = log.events[i]
            if got["type"] == want["type"] and _has_keys(want, got):
                cursor = i + 1
                break
        else:
            raise AssertionError(f"{want} not found in order; events: {log.types()}")
    assert log.audio_bytes > 0


async def _silence_until(ws: object, log: Log, kind: str, count: int, max_s: float = 15.0) -> None:
    for _ in range(int(max_s * 100)):
        if len(log.of(kind)) >= count:
            return
        await ws.send(SILENCE_FRAME)  # type: ignore[attr-defined]
        await asyncio.sleep(0.005)
    raise AssertionError(f"no {kind}; got {log.types()}")


def test_every_server_event_is_documented() -> None:
    """Every JSON event type the server can send has its own section in docs/PROTOCOL.md, and the session's event
    names are all in the server's catalogue (or are binary audio)."""
    doc = DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `([a-z_.]+)`", doc, flags=re.M))
    session_names = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)}
    assert session_names - {ev.AUDIO_DELTA} <= set(proto.SERVER_EVENTS)
    assert set(proto.SERVER_EVENTS) <= headings, set(proto.SERVER_EVENTS) - headings
    assert set(proto.CLIENT_EVENTS) <= headings, set(proto.CLIENT_EVENTS) - headings
    codes = set(re.findall(r"`([a-z_]+)`", "\n".join(row for row in doc.splitlines() if row.startswith("| `"))))
    assert set(proto.ERROR_CODES) <= codes, set(proto.ERROR_CODES) - codes


async def test_sent_event_types_are_in_the_catalogue() -> None:
    async with running_server() as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await talk(ws, log)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send("not json")
        await asyncio.sleep(0.2)
        await ws.close()
        await reader
    assert set(log.types()) <= set(proto.SERVER_EVENTS)
    assert ev.AUDIO_DELTA not in log.types()


async def test_session_update_strategy_persona_and_turn_detection() -> None:
    stack = FakeStack()
    async with running_server(stack) as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await ws.send(json.dumps({"type": "session.update", "session": {
            "strategy": "match", "persona": "You are a pirate.",
            "turn_detection": {"silence_duration_ms": 600, "threshold": 0.4}}}))
        updated = await wait_for(log, "session.updated")
        assert updated["session"]["strategy"] == "match"
        assert updated["session"]["turn_detection"]["silence_duration_ms"] == 600
        await talk(ws, log)
        await ws.send(json.dumps({"type": "session.update", "session": {"strategy": "loud"}}))
        await ws.send(json.dumps({"type": "session.update", "session": {"colour": "red"}}))
        await asyncio.sleep(0.2)
        await ws.close()
        await reader
    assert log.of("response.created")[0]["strategy"] == "match"
    assert stack.llm.calls[0][0].content.startswith("You are a pirate.")
    codes = [e["error"]["code"] for e in log.of("error")]
    assert codes == ["invalid_session_update", "invalid_session_update"]
    assert "strategy" in log.of("error")[0]["error"]["message"]


async def test_declared_input_rate_is_resampled_at_the_edge() -> None:
    """A 48 kHz client is heard like a 16 kHz one; an absurd rate is an error event, not a crash."""
    async with running_server() as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await ws.send(json.dumps({"type": "session.update", "session": {"input_sample_rate": 2}}))
        await wait_for(log, "error")
        await ws.send(json.dumps({"type": "session.update", "session": {"input_sample_rate": 48000}}))
        await wait_for(log, "session.updated")
        t = np.arange(48000) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
        await send_audio_rate(ws, tone, 48000)
        for _ in range(200):
            if log.of("response.done"):
                break
            await ws.send(bytes(960 * 2))
            await asyncio.sleep(0.005)
        await ws.close()
        await reader
    assert log.of("error")[0]["error"]["code"] == "invalid_session_update"
    started = log.of("input_audio_buffer.speech_started")
    stopped = log.of("input_audio_buffer.speech_stopped")
    assert started and stopped
    assert abs(stopped[0]["audio_end_ms"] - 1000) <= 100  # 1 s of 48 kHz audio is 1 s at 16 kHz
    assert log.of("response.done")


async def send_audio_rate(ws: object, samples: np.ndarray, rate: int) -> None:
    step = rate // 50
    pcm = (samples * 32767).astype("<i2")
    for i in range(0, len(pcm), step):
        await ws.send(pcm[i:i + step].tobytes())  # type: ignore[attr-defined]
        await asyncio.sleep(0)


async def test_push_to_talk_commit_and_clear() -> None:
    """commit ends the turn at once (no end-of-turn silence needed); clear forgets the speech heard so far."""
    stack = FakeStack()
    # Partial passes off: they call the ASR while the user speaks, and this test counts the turn's ASR calls.
    async with running_server(stack, pipeline={"end_of_turn_silence_ms": 5000, "partial_asr": False}) as srv, \
            connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await send_audio(ws, speech(0.6))
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await wait_for(log, "input_audio_buffer.cleared")
        await send_audio(ws, bytes(640) * 10)
        assert not log.of("input_audio_buffer.speech_stopped")
        await send_audio(ws, speech(0.8))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await wait_for(log, "input_audio_buffer.committed")
        # No more audio from the client: the server keeps the clock running, so the reply plays out.
        await wait_for(log, "response.done", timeout_s=10)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await wait_for(log, "error")
        await ws.close()
        await reader
    assert len(stack.asr.calls) == 1
    assert stack.asr.calls[0].duration_s < 1.3  # the cleared speech is not part of the turn
    assert log.of("error")[0]["error"]["code"] == "buffer_empty"
    assert log.audio_bytes > 0


async def test_typed_turn_and_cancel() -> None:
    stack = FakeStack(llm=ScriptedLLM(tokens=["One", " two", " three", " four", " five."] * 6))
    async with running_server(stack) as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}}))
        await wait_for(log, "response.output_audio_transcript.delta", timeout_s=10)
        await ws.send(json.dumps({"type": "response.cancel"}))
        cancelled = await wait_for(log, "response.cancelled", timeout_s=10)
        await ws.send(json.dumps({"type": "conversation.item.create", "text": "   "}))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {}}))
        await asyncio.sleep(0.3)
        await ws.close()
        await reader
    assert cancelled["reason"] == "client_cancel"
    assert log.of("conversation.item.input_audio_transcription.completed")[0]["transcript"] == "Hi there"
    assert [e["error"]["code"] for e in log.of("error")] == ["invalid_request", "invalid_item"]


async def test_shared_llm_queues_sessions_and_tells_them() -> None:
    """Two sessions speak at once; the one LLM slot serves them in turn: the second gets response.queued and its
    trace counts the wait; each session's prompt figures are its own."""
    stack = FakeStack(llm=ScriptedLLM(delay_s=0.05))
    async with running_server(stack) as srv, connect(srv.url) as a, connect(srv.url) as b:
        logs = [Log(), Log()]
        readers = [asyncio.create_task(collect(ws, lg)) for ws, lg in ((a, logs[0]), (b, logs[1]))]
        await asyncio.gather(talk(a, logs[0]), talk(b, logs[1]))
        health = (await _get(srv.http + "/health")).json()
        metrics = (await _get(srv.http + "/metrics")).text
        await a.close()
        await b.close()
        await asyncio.gather(*readers)
    queued = [lg for lg in logs if lg.of("response.queued")]
    assert len(queued) == 1
    assert queued[0].of("response.queued")[0]["position"] == 1
    trace = queued[0].of("response.done")[0]["trace"]
    assert trace["llm_queued"] is True and trace["llm_queue_wait_ms"] > 0
    assert health["engines"]["llm"]["queued_total"] == 1 and health["engines"]["llm"]["served"] == 2
    assert "attune_llm_requests_queued_total 1.0" in metrics


async def test_health_and_metrics() -> None:
    async with running_server() as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await talk(ws, log)
        health = (await _get(srv.http + "/health")).json()
        metrics = await _get(srv.http + "/metrics")
        page = await _get(srv.http + "/")
        worklet = await _get(srv.http + "/static/capture-worklet.js")
        await ws.close()
        await reader
    assert health["status"] == "ok" and health["sessions"] == 1
    assert health["engines"]["asr"]["name"] == "fixed" and health["engines"]["tts"]["name"] == "tone"
    trace = log.of("response.done")[0]["trace"]  # the only turn: admitted alone, its voice-to-voice a lone one's
    assert trace["admitted_alone"] is True and trace["admitted_capacity"] >= 1
    assert trace["admitted_ahead"] == 0 and trace["admitted_listening"] == 0  # what the admission reckoned with
    llm = health["engines"]["llm"]  # a lone reply within budget: the derived capacity, nothing cut, and why
    assert llm["capacity_cut"] == 0 and llm["capacity_reason"] == "derived"
    assert llm["capacity"] == llm["derived_capacity"] >= 1
    assert llm["turns_in_progress"] == 0 and llm["listen_cost_s"] >= 0  # nobody mid-turn once the reply is done
    assert health["engines"]["llm"]["voice_to_voice_s"] == pytest.approx(trace["voice_to_voice_ms"] / 1000, abs=2e-3)
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("attune_sessions_active 1.0", 'attune_turns_total{outcome="completed"} 1.0',
                 "attune_voice_to_voice_seconds_count 1.0", "attune_emotion_measurements_total"):
        assert name in text, name
    assert page.status_code == 200 and "AudioWorklet" not in page.text and "app.js" in page.text
    assert worklet.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")


@pytest.mark.parametrize("body", ['{"type": "session.update", "session": {"input_sample_rate": 1e400}}',
                                  '{"type": "session.update", "session": {"input_sample_rate": true}}'])
async def test_session_update_rejects_non_numbers(body: str) -> None:
    async with running_server() as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await ws.send(body)
        err = await wait_for(log, "error")
        await ws.close()
        await reader
    assert err["error"]["code"] in ("invalid_session_update", "invalid_json")


async def test_reference_client_streams_at_the_files_rate_and_keeps_the_reply() -> None:
    """The reference client declares its file's 22,050 Hz, the server resamples; the reply audio lands on the
    input's timeline after the utterance, and the event log holds the turn."""
    from attune.transports.client import stream_file

    t = np.arange(int(1.0 * 22050)) / 22050
    utterance = np.concatenate([np.zeros(11025, np.float32), (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)])
    async with running_server() as srv:
        run = await stream_file(srv.url, utterance, 22050, speed=0.0, tail_max_s=10.0)
    assert run.close_code == 1000
    assert run.of("session.updated")[0]["session"]["input_sample_rate"] == 22050
    assert run.of("response.done")[0]["status"] == "completed"
    out = run.output()
    voiced = np.flatnonzero(np.abs(out) > 0.05)
    assert voiced.size and voiced[0] / run.output_rate > 1.4  # after the 0.5 s lead-in and the 1 s utterance
    assert abs((voiced[-1] - voiced[0]) / run.output_rate - 2.0) < 0.05  # the whole 2 s reply, in one piece


async def test_load_clients_measure_lag() -> None:
    from attune_lab.load_client import run_load

    t = np.arange(16000) / 16000
    utterance = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    async with running_server() as srv:
        result = await run_load(srv.url, utterance, 16000, 3, stagger_s=0.05, tail_max_s=8.0)
    assert result.sessions == 3 and result.failures == 0 and result.turns == 3
    assert result.hops >= 3 and all(v >= 0 for v in result.emotion_lag_ms)
    assert result.to_dict()["realtime"] in (True, False)


async def test_voice_chooses_the_provider_of_the_shared_router() -> None:
    """``session.update`` voice: this session's replies come from that provider of the one shared router;
    another session keeps the router's default chain."""
    from attune.backends.tts.router import VoiceModelRouter
    from tests.fakes import ToneTTS

    piper, espeak = ToneTTS(), ToneTTS()
    piper.name, espeak.name = "piper", "espeak"
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, sample_rate=16000)
    async with running_server(FakeStack(tts=router)) as srv, connect(srv.url) as ws, connect(srv.url) as other:
        log, other_log = Log(), Log()
        readers = [asyncio.create_task(collect(ws, log)), asyncio.create_task(collect(other, other_log))]
        await wait_for(log, "session.created")
        assert log.of("session.created")[0]["voices"] == ["espeak", "piper"]
        await ws.send(json.dumps({"type": "session.update", "session": {"voice": "espeak"}}))
        assert (await wait_for(log, "session.updated"))["session"]["voice"] == "espeak"
        await talk(ws, log)
        assert espeak.texts and not piper.texts
        await talk(other, other_log)
        assert piper.texts  # the default chain starts with piper
        await ws.close()
        await other.close()
        await asyncio.gather(*readers)
