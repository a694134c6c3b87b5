"""A real uvicorn server on a loopback port with the fake engines of ``tests/fakes.py``, and a small client, for
the WebSocket tests: ``async with running_server(...) as srv`` then ``await connect(srv.url)``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fakes import FakeEmotion, FixedASR, ScriptedLLM, ToneTTS, calm_planner, speech_frame
from websockets.asyncio.client import ClientConnection, connect

from attune.config import load_config
from attune.pipeline.session import SessionBackends
from attune.pipeline.session_backends import Voice
from attune.pipeline.turn import EnergyVAD
from attune.transports.server import AttuneServer, Engines, GracefulServer, uvicorn_config

FRAME = 320


@dataclass
class FakeStack:
    asr: FixedASR = field(default_factory=FixedASR)
    llm: ScriptedLLM = field(default_factory=ScriptedLLM)
    tts: Any = field(default_factory=ToneTTS)
    phrases: Any = None  # a PhraseVoice over ``tts`` (the speech cache: first sounds)

    def fresh(self) -> SessionBackends:
        return SessionBackends(asr=self.asr, llm=self.llm, voice=Voice(self.tts, self.phrases), vad=EnergyVAD(),
                               emotion=FakeEmotion(), aggregate=lambda rs: rs[-1] if rs else None, planner=calm_planner)


@dataclass
class Running:
    attune: AttuneServer
    server: GracefulServer
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_server(stack: FakeStack | None = None, *, server: dict[str, Any] | None = None,
                         pipeline: dict[str, Any] | None = None, tokens: tuple[str, ...] = (),
                         sndbuf: int | None = None, data_dir: str | None = None,
                         personas: dict[str, Any] | None = None, agent: dict[str, Any] | None = None
                         ) -> AsyncIterator[Running]:
    """``sndbuf``: the kernel send buffer of every accepted socket (inherited from the listening one), small to
    make a client that stops reading fill the server's buffers quickly. ``data_dir``: the persona store's
    folder (default: a fresh temporary one, removed afterwards); ``personas``: more of the ``personas`` settings."""
    stack = stack or FakeStack()
    scratch = None if data_dir else tempfile.TemporaryDirectory(prefix="attune-personas-")
    config = load_config(environ={}, overrides={
        "pipeline": {"vad": "energy", "output_sample_rate": 16000, **(pipeline or {})},
        "server": {"port": 0, **(server or {})},
        "personas": {"data_dir": data_dir or (scratch.name if scratch else ""), **(personas or {})},
        "agent": agent or {}})
    attune = AttuneServer(Engines(config, stack.fresh, llm=stack.llm, tts=stack.tts, asr=stack.asr),
                          tokens=tokens)
    srv = GracefulServer(uvicorn_config(attune.app, "127.0.0.1", 0, config.server), attune)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    for _ in range(500):
        if srv.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield Running(attune, srv, port)
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 15)
        if scratch is not None:
            scratch.cleanup()


def speech(seconds: float, start: int = 0) -> bytes:
    frames = [speech_frame(start + i) for i in range(int(seconds * 50))]
    return pcm16(np.concatenate(frames))


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


SILENCE_FRAME = bytes(FRAME * 2)


async def send_audio(ws: ClientConnection, data: bytes, *, pace_s: float = 0.0) -> None:
    """``data`` in 20 ms frames; ``pace_s`` between frames (0: a short yield only)."""
    for i in range(0, len(data), FRAME * 2):
        await ws.send(data[i:i + FRAME * 2])
        await asyncio.sleep(pace_s)


@dataclass
class Log:
    """What a client received: JSON events in order and the reply audio's byte count."""

    events: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    audio: list[bytes] = field(default_factory=list)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def collect(ws: ClientConnection, log: Log) -> None:
    """Read until the socket closes."""
    with contextlib.suppress(Exception):
        async for message in ws:
            if isinstance(message, bytes):
                log.audio_bytes += len(message)
                log.audio.append(message)
            else:
                log.events.append(json.loads(message))


async def wait_for(log: Log, kind: str, timeout_s: float = 10.0, count: int = 1) -> dict[str, Any]:
    for _ in range(int(timeout_s * 100)):
        found = log.of(kind)
        if len(found) >= count:
            return found[count - 1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {kind} (x{count}) within {timeout_s} s; got {log.types()}")


async def talk(ws: ClientConnection, log: Log, *, speech_s: float = 1.0, timeout_s: float = 15.0) -> dict[str, Any]:
    """One spoken turn, then silence streamed until the reply is done; returns response.done."""
    n_done = len(log.of("response.done"))
    await send_audio(ws, speech(speech_s))
    for _ in range(int(timeout_s * 50)):
        if len(log.of("response.done")) > n_done:
            return log.of("response.done")[-1]
        await ws.send(SILENCE_FRAME)
        await asyncio.sleep(0.005)
    raise AssertionError(f"no response.done; got {log.types()}")


__all__ = ["FakeStack", "Log", "collect", "connect", "running_server", "send_audio", "speech", "talk", "wait_for"]
