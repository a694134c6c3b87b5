"""How the first sound (``pipeline.acknowledgement``) appears on the wire, with the fake engines over real sockets: on
``/ws`` it is the turn's first binary audio, with no transcript delta, named in ``response.done``'s trace; on
``/v1/realtime`` (the official SDK) it is the start of the assistant item's audio, in no transcript, named in
``response.done``'s ``attune`` extension; a premature commit ends the cut response as ``turn_detected``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest

from attune.pipeline.acknowledgement import phrases as first_sounds
from attune.pipeline.phrases import Phrase, PhraseVoice, prewarm
from tests.fakes import ScriptedLLM, ToneTTS
from tests.transports.realtime_util import RATE, Received, b64, read_sdk, tone_speech
from tests.ws_util import FakeStack, Log, collect, connect, running_server, send_audio, speech, wait_for

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

REPLY = "Hello, nice to hear you. How are you?"  # ScriptedLLM's, 8 words: ToneTTS speaks 0.25 s a word
ACK_S = 0.25  # "Mm." (the turn "hello there" is a plain statement), one word


async def _stack(rate: int) -> FakeStack:
    tts = ToneTTS()
    phrases = PhraseVoice(tts, None, rate)
    await prewarm(phrases, [Phrase.of(text, e, i) for text, e, i in first_sounds()])
    return FakeStack(llm=ScriptedLLM(delay_s=0.05), tts=tts, phrases=phrases)  # a slow machine's reply


@pytest.mark.parametrize("on", [True, False])
async def test_on_ws_the_first_sound_is_audio_before_the_reply_and_in_no_transcript(on: bool) -> None:
    stack = await _stack(16000)
    async with running_server(stack, agent={"acknowledgements": on}) as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await send_audio(ws, speech(1.0))
        await send_audio(ws, bytes(640) * 30)
        done = await wait_for(log, "response.done", timeout_s=15)
        await ws.close()
        await reader
    trace = done["trace"]
    deltas = " ".join(e["delta"] for e in log.of("response.output_audio_transcript.delta"))
    assert deltas == trace["reply_text"] == trace["heard_text"] == REPLY  # the sound is in no text
    audio_s = log.audio_bytes / 2 / 16000
    if on:
        assert trace["acknowledgement"] == "Mm."
        assert audio_s == pytest.approx(8 * 0.25 + ACK_S, abs=0.1)
    else:
        assert "acknowledgement" not in trace and audio_s == pytest.approx(8 * 0.25, abs=0.1)


async def test_on_realtime_the_first_sound_opens_the_item_audio_and_a_premature_commit_is_turn_detected() -> None:
    openai = pytest.importorskip("openai", reason="the openai SDK is in the dev extra")
    stack = await _stack(RATE)
    async with running_server(stack, agent={"acknowledgements": True}) as srv:
        client = openai.AsyncOpenAI(api_key="any-key", base_url=f"{srv.http}/v1")
        async with client.realtime.connect(model="attune") as conn:
            got = Received()
            reader = asyncio.create_task(read_sdk(conn, got))
            await got.wait("session.created")
            await _stream(conn, np.concatenate([tone_speech(1.0), np.zeros(int(0.6 * RATE), np.float32)]))
            done = await got.wait("response.done")
            # A second turn; the person goes on as soon as its first sound starts: the turn was not over.
            await _stream(conn, tone_speech(1.0))
            while not _audio_of(got, after=done):
                await _stream(conn, np.zeros(int(0.02 * RATE), np.float32), pace_s=0.005)
            await _stream(conn, np.concatenate([tone_speech(0.6), np.zeros(int(0.8 * RATE), np.float32)]))
            for _ in range(200):
                if len(got.of("response.done")) >= 3:
                    break
                await _stream(conn, np.zeros(int(0.1 * RATE), np.float32))
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert not got.invalid, got.invalid
    first = done["response"]
    assert first["status"] == "completed" and done["attune"]["acknowledgement"] == "Mm."
    assert first["output"][0]["content"][0]["transcript"] == REPLY  # the sound has no words
    audio = b"".join(base64.b64decode(e["delta"]) for e in got.of("response.output_audio.delta")
                     if e["response_id"] == first["id"])
    assert len(audio) / 2 / RATE == pytest.approx(8 * 0.25 + ACK_S, abs=0.1)
    dones = got.of("response.done")
    assert [d["response"]["status"] for d in dones[1:3]] == ["cancelled", "completed"]
    assert dones[1]["response"]["status_details"]["reason"] == "turn_detected"
    assert "acknowledgement" not in dones[2]["attune"]  # turn 1 and the cut reply each had one: a run of two (max_run)
    # The client's conversation matches the session's: the first part's user item and the cut response's item
    # are withdrawn, and the turn that went on is one user item, answered once.
    deleted = {e["item_id"] for e in got.of("conversation.item.deleted")}
    cut = dones[1]["response"]
    assert {o["id"] for o in cut["output"]} <= deleted
    user_items = [e["item_id"] for e in got.of("input_audio_buffer.committed")]
    assert len(user_items) == 3 and user_items[1] in deleted and not deleted & {user_items[0], user_items[2]}
    assert dones[2]["response"]["output"][0]["id"] not in deleted


def _audio_of(got: Received, after: dict[str, Any]) -> bool:
    start = got.events.index(after)
    return any(e["type"] == "response.output_audio.delta" for e in got.events[start + 1:])


async def _stream(conn: object, samples: np.ndarray, *, pace_s: float = 0.02) -> None:
    step = int(0.1 * RATE)
    for i in range(0, len(samples), step):
        await conn.input_audio_buffer.append(audio=b64(samples[i:i + step]))  # type: ignore[attr-defined]
        await asyncio.sleep(pace_s)
