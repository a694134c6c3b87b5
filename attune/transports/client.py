"""The reference WebSocket client: streams a recording to a server in real time (20 ms PCM16 frames at the file's own
rate, declared with ``session.update``, then silence until the agent has finished), and keeps the reply audio on
the input's timeline and every event. ``run_agent.py client`` and ``bench-load`` use it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attune.core.audio import FRAME_S, float_to_pcm16, pcm16_to_float
from attune.core.errors import AttuneError
from attune.transports.protocol import MAX_INPUT_RATE, MIN_INPUT_RATE

SETTLE_S = 1.0  # s of quiet (no reply in progress, no audio arriving) after which the tail ends
QUIET_TURN_S = 5.0  # s without events after which a turn the server has not ended counts as over
# s without events a turn the server ended (speech_stopped) is waited for: the server owes it a reply, a refusal
# or, for a turn heard as noise, an empty transcript (``empty: true``), and its ASR pass may wait behind other
# sessions' on a loaded machine.
ANSWER_PATIENCE_S = 20.0


class ClientError(AttuneError):
    """The server refused the connection or closed it with an error."""


@dataclass
class ClientRun:
    """Everything one streamed file produced: events (with ``t`` = wall seconds since the first frame was sent),
    reply audio on the input's timeline (each chunk at the input stream's position when it arrived), and the
    frames' send times (for lag measurements)."""

    output_rate: int = 24000
    events: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (stream time, PCM16)
    sent_at: list[float] = field(default_factory=list)  # wall time each 20 ms frame was sent
    close_code: int | None = None
    close_reason: str = ""

    def output(self) -> np.ndarray:
        """The reply audio as float32 at ``output_rate``, each chunk at the stream time it arrived (or later, where
        chunks arrived faster than they play)."""
        total = int((max((t for t, _ in self.chunks), default=0.0) + 1.0) * self.output_rate)
        total += sum(len(b) // 2 for _, b in self.chunks)
        out = np.zeros(total, dtype=np.float32)
        cursor = 0
        for t, data in self.chunks:
            samples = pcm16_to_float(data)
            start = max(cursor, int(t * self.output_rate))
            out[start:start + len(samples)] = samples
            cursor = start + len(samples)
        return out[: max(cursor, 1)]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def stream_time(self, wall: float) -> float:
        return (wall - self.sent_at[0]) if self.sent_at else 0.0


def _frames(samples: np.ndarray, rate: int) -> list[bytes]:
    step = int(round(FRAME_S * rate))
    return [float_to_pcm16(samples[i:i + step]) for i in range(0, len(samples), step)]


async def stream_file(url: str, samples: np.ndarray, rate: int, *, token: str | None = None, speed: float = 1.0,
                      tail_max_s: float = 30.0, session: dict[str, Any] | None = None,
                      on_event: Callable[[dict[str, Any]], None] | None = None) -> ClientRun:
    """Stream mono float ``samples`` at ``rate`` Hz (8-48 kHz; sent as is, the server resamples), then silence
    until every reply has finished playing or ``tail_max_s``. ``speed`` 0 = as fast as possible."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise ClientError(f"input rate {rate} Hz is outside {MIN_INPUT_RATE}..{MAX_INPUT_RATE}; resample it first")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    run = ClientRun()
    try:
        ws = await connect(url, additional_headers=headers, compression=None, max_size=2 ** 22)
    except InvalidStatus as exc:
        raise ClientError(f"the server refused the connection: HTTP {exc.response.status_code}") from exc
    except OSError as exc:
        raise ClientError(f"cannot connect to {url}: {exc}") from exc
    async with ws:
        reader = asyncio.create_task(_read(ws, run, on_event))
        try:
            update = {"type": "session.update", "session": {"input_sample_rate": rate, **(session or {})}}
            await ws.send(json.dumps(update))
            await _send(ws, run, _frames(samples, rate), speed, tail_max_s, rate)
            await ws.close()
        except ConnectionClosed:
            pass
        await asyncio.wait([reader], timeout=5.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        run.close_code, run.close_reason = ws.close_code, ws.close_reason or ""
    return run


async def _read(ws: Any, run: ClientRun, on_event: Callable[[dict[str, Any]], None] | None) -> None:
    from websockets.exceptions import ConnectionClosed

    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            now = time.perf_counter()
            if isinstance(message, bytes):  # placed where the input stream was when it arrived
                run.chunks.append((len(run.sent_at) * FRAME_S, message))
                continue
            event = json.loads(message)
            event["t"] = round(run.stream_time(now), 4)
            if event.get("type") == "session.created":
                run.output_rate = int(event["session"]["output_sample_rate"])
            run.events.append(event)
            if on_event is not None:
                on_event(event)


def _busy(run: ClientRun, now_s: float) -> bool:
    """A turn or a reply is in progress: a reply was created and has not finished, or speech began after the last
    finished reply or turn heard as noise (its transcript ``empty``) and events still arrive (a turn the server
    has not ended goes quiet after ``QUIET_TURN_S``; one it ended, ``speech_stopped``, after ``ANSWER_PATIENCE_S``)."""
    kinds = [e["type"] for e in run.events]

    def last(*names: str) -> int:
        return max((i for i, k in enumerate(kinds) if k in names), default=-1)

    noise = max((i for i, e in enumerate(run.events)
                 if e["type"] == "conversation.item.input_audio_transcription.completed" and e.get("empty")),
                default=-1)
    ended = max(last("response.done", "response.cancelled"), noise)
    if last("response.created") > ended:
        return True
    patience = ANSWER_PATIENCE_S if last("input_audio_buffer.speech_stopped") > ended else QUIET_TURN_S
    recent = bool(run.events) and now_s - float(run.events[-1].get("t", 0.0)) < patience
    return last("input_audio_buffer.speech_started") > ended and recent


async def _send(ws: Any, run: ClientRun, frames: list[bytes], speed: float, tail_max_s: float, rate: int) -> None:
    silence = bytes(int(round(FRAME_S * rate)) * 2)
    t0 = time.perf_counter()
    i = 0
    while True:
        in_file = i < len(frames)
        tail_s = (i - len(frames)) * FRAME_S
        if not in_file:
            last_audio = run.chunks[-1][0] if run.chunks else 0.0
            now_s = run.stream_time(time.perf_counter())
            quiet = not _busy(run, now_s) and now_s - last_audio >= SETTLE_S
            if (tail_s >= 1.0 and quiet) or tail_s >= tail_max_s:
                return
        await ws.send(frames[i] if in_file else silence)
        run.sent_at.append(time.perf_counter())
        i += 1
        if speed > 0:
            await asyncio.sleep(max(0.0, t0 + i * FRAME_S / speed - time.perf_counter()))
        else:
            await asyncio.sleep(0)
