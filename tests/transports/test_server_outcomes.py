"""Honest outcomes and admission, through the real ASGI app on fake engines: every turn that got a reply ends in
``response.done`` with its status, ``/metrics`` counts turns by outcome (completed, failed, cancelled, dropped)
and sessions by close reason; past the replies the LLM can prepare in time a turn is refused at once (spoken,
``server_busy``, counted dropped) and new sessions get 503 with ``Retry-After``, while a turn within it waits and
is told its place and an estimate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from attune.backends.base import ChatMessage, TokenStream
from attune.core.errors import LLMError
from attune.pipeline.reply import BUSY_REPLY, LLM_FAILED_REPLY
from tests.fakes import ScriptedLLM
from tests.ws_util import FakeStack, Log, collect, connect, running_server, talk, wait_for

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends


class KeywordLLM(ScriptedLLM):
    """A scripted LLM that fails on a user turn containing "fail" and streams slowly on one containing "slow"."""

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128,
               temperature: float = 0.7) -> TokenStream:
        said = messages[-1].content

        async def pieces(report: Any) -> AsyncGenerator[str, None]:
            if "fail" in said:
                raise LLMError("fake LLM refused this one", retryable=True)
            delay = 0.4 if "slow" in said else self.delay_s
            for token in self.tokens[:max_tokens]:
                await asyncio.sleep(delay)
                yield token

        return TokenStream(pieces)


def _typed(text: str) -> str:
    return json.dumps({"type": "conversation.item.create", "text": text})


def _said(log: Log, turn: int) -> str:
    return " ".join(e["delta"] for e in log.of("response.output_audio_transcript.delta") if e["turn"] == turn)


async def _metrics(srv: Any) -> str:
    async with httpx.AsyncClient(base_url=srv.http) as c:
        return (await c.get("/metrics")).text


async def test_every_turn_ends_in_response_done_and_is_counted_by_outcome() -> None:
    stack = FakeStack(llm=KeywordLLM(delay_s=0.01))
    async with running_server(stack) as srv:
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            completed = await talk(ws, log)  # 1: spoken, answered
            await ws.send(_typed("Please fail now."))  # 2: the LLM fails: said aloud, failed
            failed = await wait_for(log, "response.done", count=2)
            await ws.send(_typed("Tell me a slow story."))  # 3: cancelled by the client
            await wait_for(log, "response.created", count=3)
            await ws.send(json.dumps({"type": "response.cancel"}))
            cancelled = await wait_for(log, "response.done", count=3)
            await ws.close()
            await reader
        async with connect(srv.url) as ws:  # 4: the client leaves while its reply is being prepared
            gone = Log()
            reader = asyncio.create_task(collect(ws, gone))
            await ws.send(_typed("Another slow one, please."))
            await wait_for(gone, "response.created")
            await ws.close()
            await reader
        for _ in range(200):
            if not srv.attune.connections:
                break
            await asyncio.sleep(0.02)
        metrics = await _metrics(srv)
    assert completed["status"] == "completed"
    assert failed["status"] == "failed" and _said(log, 2) == LLM_FAILED_REPLY
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "client_cancel"
    types = log.types()
    assert types[types.index("response.cancelled") + 1] == "response.done"  # the cancelled turn's end, at once
    assert [e["turn"] for e in log.of("response.done")] == [1, 2, 3]
    for outcome in ("completed", "failed", "cancelled", "dropped"):
        assert f'attune_turns_total{{outcome="{outcome}"}} 1.0' in metrics, (outcome, metrics)
    assert 'attune_sessions_closed_total{reason="client_closed"} 2.0' in metrics


async def test_a_reply_the_server_cuts_off_is_still_reported_before_the_close() -> None:
    """The maximum session time ends a session mid-reply: the client still hears that turn ended, cancelled, and
    it counts as dropped."""
    stack = FakeStack(llm=KeywordLLM(delay_s=0.01))
    async with running_server(stack, server={"max_session_s": 1.5}) as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await ws.send(_typed("A slow answer, please."))
        await asyncio.wait_for(reader, 15)
        metrics = await _metrics(srv)
    assert log.of("error")[-1]["error"]["code"] == "session_expired"
    cut = log.of("response.cancelled")
    assert cut and cut[0]["reason"] == "session_closed"
    assert log.of("response.done")[-1]["status"] == "cancelled"
    assert 'attune_turns_total{outcome="dropped"} 1.0' in metrics
    assert 'attune_sessions_closed_total{reason="maximum_session_time"} 1.0' in metrics


async def _wait_llm(srv: Any, busy: int, waiting: int) -> None:
    llm = srv.attune.shared_llm
    for _ in range(500):
        if (llm.busy, llm.waiting) == (busy, waiting):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"LLM busy {llm.busy}, waiting {llm.waiting}")


async def test_past_capacity_a_turn_is_refused_at_once_and_new_sessions_get_503() -> None:
    """max_replying 2 and a slow LLM (about 3 s a reply): the first turn is answered, the second waits and is
    told its place and an estimate, the third is refused at once (said aloud, server_busy with retry_after_s,
    response.done failed, counted dropped); while full, a new session is refused with 503 and Retry-After."""
    stack = FakeStack(llm=KeywordLLM(delay_s=0.01))
    async with running_server(stack, server={"max_replying": 2}) as srv:
        srv.attune.shared_llm.calibrate(3.0)
        clients = [await connect(srv.url) for _ in range(3)]
        logs = [Log() for _ in clients]
        readers = [asyncio.create_task(collect(ws, lg)) for ws, lg in zip(clients, logs, strict=True)]
        await clients[0].send(_typed("A slow one for the first."))
        await _wait_llm(srv, 1, 0)
        await clients[1].send(_typed("A slow one for the second."))
        await _wait_llm(srv, 1, 1)
        await clients[2].send(_typed("A slow one for the third."))
        await wait_for(logs[2], "error", 10)  # at once, while the first reply is still being written
        with pytest.raises(InvalidStatus) as denied:
            async with connect(srv.url):
                pass
        async with httpx.AsyncClient(base_url=srv.http) as c:
            health_resp = await c.get("/health")
            health = health_resp.json()
        refused = await wait_for(logs[2], "response.done", 20)
        done = [await wait_for(lg, "response.done", 20) for lg in logs[:2]]
        for ws in clients:
            await ws.close()
        await asyncio.gather(*readers)
        metrics = await _metrics(srv)
    busy = logs[2].of("error")[0]
    assert busy["error"]["code"] == "server_busy" and busy["error"]["retryable"] is True
    assert busy["retry_after_s"] > 0 and refused["status"] == "failed"
    assert _said(logs[2], 1) == BUSY_REPLY and logs[2].audio_bytes > 0
    assert denied.value.response.status_code == 503
    assert int(denied.value.response.headers["Retry-After"]) >= 1
    assert health_resp.status_code == 503 and health["status"] == "full"  # a balancer sends new ones elsewhere
    assert health["engines"]["llm"]["capacity"] == 2 and health["engines"]["llm"]["refused_total"] == 1
    queued = logs[1].of("response.queued")
    assert queued and queued[0]["position"] == 1 and queued[0]["estimated_wait_s"] > 0
    assert not logs[0].of("response.queued")
    assert [d["status"] for d in done] == ["completed", "completed"]
    assert 'attune_turns_total{outcome="dropped"} 1.0' in metrics
    assert 'attune_turns_total{outcome="completed"} 2.0' in metrics
    assert 'attune_connections_rejected_total{reason="replies_at_capacity"} 1.0' in metrics
    assert "attune_llm_requests_queued_total 1.0" in metrics


async def test_a_spoken_turn_past_capacity_is_refused_before_its_asr_pass() -> None:
    """max_replying 1, held by a slow typed reply: a spoken turn of another session is refused when its speech
    ends (server_busy, the apology, response.done failed, no transcript) and the ASR never hears it; the
    shedding shows in its trace (no speculative reply in the pause)."""
    stack = FakeStack(llm=KeywordLLM(delay_s=0.01))
    async with running_server(stack, server={"max_replying": 1}) as srv:
        srv.attune.shared_llm.calibrate(3.0)
        holder, speaker = await connect(srv.url), await connect(srv.url)
        lh, ls = Log(), Log()
        readers = [asyncio.create_task(collect(holder, lh)), asyncio.create_task(collect(speaker, ls))]
        await holder.send(_typed("A slow one, please."))
        await _wait_llm(srv, 1, 0)
        refused = await talk(speaker, ls)
        asr_calls = len(stack.asr.calls)
        await wait_for(lh, "response.done", 20)
        for ws in (holder, speaker):
            await ws.close()
        await asyncio.gather(*readers)
    assert asr_calls == 0  # the typed turn needs none, and the spoken one was refused before its pass
    assert refused["status"] == "failed" and refused["trace"]["admission"] == "refused"
    assert refused["trace"]["speculation_shed"] is True
    assert ls.of("error")[0]["error"]["code"] == "server_busy" and _said(ls, 1) == BUSY_REPLY
    assert not ls.of("conversation.item.input_audio_transcription.completed")


async def test_a_long_wait_is_told_again_and_again() -> None:
    """The second of two sessions waits behind a slow reply: it hears response.queued more than once (every
    2 s), never silence, and its estimate stays positive."""
    stack = FakeStack(llm=KeywordLLM(delay_s=0.01))
    async with running_server(stack, server={"max_replying": 4}) as srv:
        a, b = await connect(srv.url), await connect(srv.url)
        la, lb = Log(), Log()
        readers = [asyncio.create_task(collect(a, la)), asyncio.create_task(collect(b, lb))]
        await a.send(_typed("A slow one, please."))
        await _wait_llm(srv, 1, 0)
        await b.send(_typed("And a slow one for me."))
        await wait_for(lb, "response.done", 30)
        await a.close()
        await b.close()
        await asyncio.gather(*readers)
    told = lb.of("response.queued")
    assert len(told) >= 2 and all(e["position"] == 1 and e["estimated_wait_s"] > 0 for e in told)


def test_every_error_code_sent_is_in_the_catalogue() -> None:
    from attune.core.errors import ServerBusy
    from attune.transports import protocol as proto

    assert ServerBusy.code in proto.ERROR_CODES


async def test_a_replys_admission_figures_teach_the_server_a_listening_sessions_cost() -> None:
    """The trace's ``admitted_listening`` and ``admitted_ahead`` reach the shared LLM with the reply's
    voice-to-voice (``SharedLLM.observe_reply``): 5.7 s heard, 2.7 s alone, one 1.8 s hold ahead, 8 listening."""
    async with running_server(FakeStack()) as srv:
        llm = srv.attune.shared_llm
        llm.calibrate(1.8)
        llm.calibrate_voice(2.7)
        llm.listen_floor_s = 0.0
        srv.attune._observe_reply(5.7, {"admitted_listening": 8, "admitted_ahead": 1, "admitted_capacity": 2})
        assert llm.listen_cost_s() == pytest.approx(0.15)
        srv.attune._observe_reply(2.0, {"admitted_alone": True, "admitted_ahead": 0, "admitted_listening": 0})
        assert llm.listen_cost_s() == pytest.approx(0.15)  # heard alone: no listeners, no sample


async def test_every_open_session_counts_as_listening_until_it_closes() -> None:
    """The admission counts the sessions listening beside a reply's (``SharedLLM.listening``): two open, one
    listens beside the other; closed, none."""
    async with running_server(FakeStack()) as srv:
        llm = srv.attune.shared_llm
        async with connect(srv.url), connect(srv.url):
            for _ in range(200):
                if llm.sessions_open() == 2:
                    break
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient() as client:
                health = (await client.get(srv.http + "/health")).json()
            assert llm.sessions_open() == 2 and health["engines"]["llm"]["listening"] == 1
        for _ in range(200):
            if llm.sessions_open() == 0:
                break
            await asyncio.sleep(0.01)
        assert llm.sessions_open() == 0 and llm.listening() == 0
