"""The server's limits and bad input, each over real sockets: oversize messages (1009), foreign origins (403),
tokens (401), the connection cap (503), idle and maximum-session timers, a client that stops reading (1008),
graceful shutdown, and malformed frames of every kind, while a healthy session beside the bad ones gets its reply
whole."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from attune.core.errors import ConfigError
from attune.transports import protocol as proto
from attune.transports.server import check_bind
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


async def _status(url: str, **kw: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kw):  # type: ignore[arg-type]
            pass
    return int(info.value.response.status_code)


async def test_oversize_message_closes_1009_and_the_server_goes_on() -> None:
    async with running_server(server={"max_message_bytes": 4096}) as srv:
        async with connect(srv.url) as ws:
            await ws.send(b"\0" * 5000)
            with pytest.raises(ConnectionClosed):
                for _ in range(100):
                    await ws.recv()
            assert ws.close_code == proto.CLOSE_TOO_BIG
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            await talk(ws, log)
            await ws.close()
            await reader


async def test_origins_allow_list() -> None:
    async with running_server(server={"origins": ["https://app.example"]}) as srv:
        assert await _status(srv.url, origin="https://evil.example") == 403
        async with connect(srv.url, origin="https://app.example") as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["type"] == "session.created"
        async with connect(srv.url, origin=f"http://127.0.0.1:{srv.port}") as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["type"] == "session.created"  # the page this server serves
        async with connect(srv.url) as ws:  # no Origin: not a browser
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_token_auth() -> None:
    async with running_server(tokens=("s3cret", "other")) as srv:
        assert await _status(srv.url) == 401
        assert await _status(srv.url, additional_headers={"Authorization": "Bearer wrong"}) == 401
        assert await _status(srv.url + "?token=wrong") == 401
        async with connect(srv.url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        async with connect(srv.url + "?token=other") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        async with httpx.AsyncClient() as client:
            assert (await client.get(srv.http + "/metrics")).status_code == 401
            ok = await client.get(srv.http + "/metrics", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200 and 'attune_connections_rejected_total{reason="unauthorized"} 3.0' in ok.text
            assert (await client.get(srv.http + "/health")).status_code == 200  # liveness stays open


def test_no_token_binds_loopback_only() -> None:
    check_bind("127.0.0.1", (), "ATTUNE_TOKENS")
    check_bind("::1", (), "ATTUNE_TOKENS")
    check_bind("0.0.0.0", ("t",), "ATTUNE_TOKENS")
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(ConfigError, match="ATTUNE_TOKENS"):
            check_bind(host, (), "ATTUNE_TOKENS")


async def test_connection_cap() -> None:
    async with running_server(server={"max_sessions": 1}) as srv:
        async with connect(srv.url) as ws:
            await ws.recv()
            assert await _status(srv.url) == 503
        for _ in range(100):  # the slot frees once the first session has closed
            if not srv.attune.connections:
                break
            await asyncio.sleep(0.02)
        async with connect(srv.url) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_idle_timeout() -> None:
    async with running_server(server={"idle_timeout_s": 1.0}) as srv, connect(srv.url) as ws:
        log = Log()
        await asyncio.wait_for(collect(ws, log), 10)
    assert log.of("error")[-1]["error"]["code"] == "idle_timeout"
    assert ws.close_code == proto.CLOSE_NORMAL


async def test_maximum_session_time() -> None:
    async with running_server(server={"max_session_s": 1.5}) as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        with pytest.raises(ConnectionClosed):
            for _ in range(1000):  # an active client: only the session's age ends it
                await ws.send(SILENCE_FRAME)
                await asyncio.sleep(0.02)
        await reader
    assert log.of("error")[-1]["error"]["code"] == "session_expired"
    assert ws.close_code == proto.CLOSE_NORMAL


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    (b"", "empty_audio"),
    (b"\x01\x02\x03", "misaligned_audio"),
    (b"\0" * (2 * 16000 + 2), "frame_too_long"),
    ("{not json", "invalid_json"),
    ("UklGRiQAAABXQVZFZm10", "invalid_json"),  # text where audio is expected (base64 audio)
    ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "audio_as_text"),
    ('["type"]', "invalid_event"),
    ('{"type": "no.such.event"}', "unknown_event"),
    ('{"type": "session.update", "session": {"input_audio_format": "mp3"}}', "invalid_session_update"),
]


async def test_bad_input_beside_a_healthy_session() -> None:
    """Every malformed frame gets its documented error and the bad session stays open; NaN in float32 input is
    refused; invalid UTF-8 closes with 1007; a healthy session beside them gets its whole reply."""
    async with running_server() as srv:
        async with connect(srv.url) as good, connect(srv.url) as bad:
            good_log, bad_log = Log(), Log()
            readers = [asyncio.create_task(collect(good, good_log)), asyncio.create_task(collect(bad, bad_log))]

            async def abuse() -> None:
                for frame, _ in BAD_FRAMES:
                    await bad.send(frame)
                    await asyncio.sleep(0.02)
                await bad.send(json.dumps({"type": "session.update", "session": {"input_audio_format": "float32"}}))
                await bad.send(np.array([0.1, np.nan, np.inf, 0.2], dtype="<f4").tobytes())
                await bad.send(b"\0\0\0")
                await asyncio.sleep(0.2)

            done, _ = await asyncio.gather(talk(good, good_log), abuse())
            await wait_for(bad_log, "error", count=len(BAD_FRAMES) + 2)
            codes = [e["error"]["code"] for e in bad_log.of("error")]
            assert codes == [c for _, c in BAD_FRAMES] + ["non_finite_audio", "misaligned_audio"]
            assert set(codes) <= set(proto.ERROR_CODES)
            await bad.send(json.dumps({"type": "ping"}))
            await wait_for(bad_log, "pong")  # still open
            words = sum(len(e["delta"].split()) for e in good_log.of("response.output_audio_transcript.delta"))
            assert done["status"] == "completed"
            assert good_log.audio_bytes == int(words * 0.25 * 16000) * 2  # ToneTTS: 0.25 s per word, all of it
            assert not good_log.of("error")
            await good.close()
            await bad.close()
            await asyncio.gather(*readers)
        async with connect(srv.url) as ws:
            await ws.recv()
            await ws.send(b"\xff\xfe", text=True)  # invalid UTF-8 in a text frame
            with pytest.raises(ConnectionClosed):
                for _ in range(100):
                    await ws.recv()
            assert ws.close_code == 1007


async def test_a_client_that_stops_reading_is_closed_1008() -> None:
    """Reply audio for a client that reads nothing piles up to ``outbox_max_s``, then the server closes it with
    1008 after what it had buffered; a second session meanwhile is served normally."""
    stack = FakeStack(llm=ScriptedLLM(tokens=[" word"] * 40 + ["."]))
    async with running_server(stack, server={"outbox_max_s": 1.0}, sndbuf=4096) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        sock.setblocking(False)
        async with connect(srv.url, sock=sock, max_queue=1, max_size=2 ** 20) as slow:
            await send_audio(slow, speech(1.0))
            for _ in range(2000):  # input far faster than real time, so the reply's 10 s of audio is due at once
                await slow.send(SILENCE_FRAME)
                if not srv.attune.connections or all(c.close_code for c in srv.attune.connections.values()):
                    break
                await asyncio.sleep(0)
            async with connect(srv.url) as ws:
                log = Log()
                reader = asyncio.create_task(collect(ws, log))
                await talk(ws, log, timeout_s=40)
                await ws.close()
                await reader
            received = Log()
            await asyncio.wait_for(collect(slow, received), 30)
        assert slow.close_code == proto.CLOSE_POLICY
        assert 0 < received.audio_bytes < 40 * 0.25 * 16000 * 2
        metrics = srv.attune.metrics.render().decode()
        assert 'attune_sessions_closed_total{reason="client_not_reading"} 1.0' in metrics


async def test_sigterm_drains_sessions_then_stops() -> None:
    """The first SIGTERM: new connections get 503, open sessions get session.closing, a reply in progress
    finishes, then each socket closes with 1001 and the server stops."""
    stack = FakeStack(llm=ScriptedLLM(tokens=["One", " two", " three."], delay_s=0.05))
    async with running_server(stack, server={"shutdown_grace_s": 5.0}) as srv, connect(srv.url) as ws:
        log = Log()
        reader = asyncio.create_task(collect(ws, log))
        await send_audio(ws, speech(1.0))
        for _ in range(40):
            await ws.send(SILENCE_FRAME)
            await asyncio.sleep(0.01)
        await wait_for(log, "input_audio_buffer.speech_stopped")
        srv.server.handle_exit(signal.SIGTERM, None)
        closing = await wait_for(log, "session.closing")
        assert closing["reason"] == "server_shutdown"
        assert await _status(srv.url) == 503
        with pytest.raises(ConnectionClosed):
            for _ in range(1000):
                await ws.send(SILENCE_FRAME)
                await asyncio.sleep(0.01)
        await reader
        for _ in range(500):
            if srv.server.should_exit:
                break
            await asyncio.sleep(0.01)
        assert srv.server.should_exit
    assert ws.close_code == proto.CLOSE_GOING_AWAY
    assert log.of("response.done") and log.of("response.done")[0]["status"] == "completed"
    assert log.types().index("session.closing") < log.types().index("response.done")


class _PagedLLM(ScriptedLLM):
    """A scripted LLM that reads a mapped table, as the in-process llama.cpp does: counts the hand-backs."""

    def __init__(self) -> None:
        super().__init__()
        self.released = 0

    def release_lookup_pages(self) -> int:
        self.released += 1
        return 4096


async def test_a_closed_session_hands_memory_back_at_most_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a session the LLM's faulted-in table pages (and the freed heap) go back to the system, so RSS stays
    flat over many sessions; a second session closing within MEMORY_HANDBACK_S does not repeat it."""
    monkeypatch.setattr("attune.transports.server.MEMORY_HANDBACK_S", 3600.0)
    llm = _PagedLLM()
    async with running_server(FakeStack(llm=llm)) as srv:
        for _ in range(2):
            async with connect(srv.url) as ws:
                log = Log()
                reader = asyncio.create_task(collect(ws, log))
                await ws.send(json.dumps({"type": "conversation.item.create", "text": "Hello?"}))
                await wait_for(log, "response.done", 20)
                await ws.close()
                await reader
            for _ in range(500):
                if llm.released:
                    break
                await asyncio.sleep(0.01)
            assert llm.released == 1
    assert llm.released == 1
