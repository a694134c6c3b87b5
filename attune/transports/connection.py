"""One WebSocket connection driving one ``Session``: the asyncio glue between a socket and the protocol's pure core.

Owned tasks: the reader (client messages -> session), the pump (session events -> a bounded outbox; it never
blocks, so the session never waits on this client), the writer (outbox -> socket; it is the one that waits for a
slow client), the clock keeper (silence while the client sends no audio, so replies still play), and the watch
(idle and maximum-session timers). A client that stops reading fills its outbox and is closed with 1008; the
audio it did get is a whole prefix of the reply, never a stream with holes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from attune.backends.base import TTSBackend
from attune.core import events as ev
from attune.core.audio import FRAME, SAMPLE_RATE
from attune.core.errors import AttuneError, BackendError, PersonaError, ProtocolError
from attune.core.events import SessionEvent
from attune.pipeline.session import Session
from attune.pipeline.session_backends import ChosenPersona
from attune.transports import protocol as proto
from attune.transports.live_settings import LiveSettings
from attune.transports.metrics import ServerMetrics
from attune.transports.persona_api import PersonaService

log = logging.getLogger(__name__)
CLOCK_GAP_S = 0.2  # s without client audio after which the clock keeper streams silence
FLUSH_TIMEOUT_S = 2.0  # s the last events (an error, session.closing) get to reach the client before the close
CLOSE_TIMEOUT_S = 60.0  # s a close frame may wait for a client that stopped reading (keep-alive ends it sooner)


class Socket(Protocol):
    """What a connection needs of a WebSocket (Starlette's ``WebSocket`` fits)."""

    async def receive(self) -> Any: ...

    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout_s: float = 120.0
    max_session_s: float = 3600.0
    outbox_max_s: float = 10.0  # s of reply audio waiting for a slow client
    outbox_max_events: int = 4096


@dataclass
class _Out:
    message: str | bytes
    audio_s: float = 0.0
    turn: int | None = None


class Connection:
    """``await Connection(...).run()`` serves the socket until either side closes; returns the close reason."""

    def __init__(self, socket: Socket, session: Session, *, session_id: str, limits: ConnectionLimits,
                 metrics: ServerMetrics, shared_tts: TTSBackend | None = None, voices: tuple[str, ...] = (),
                 personas: PersonaService | None = None, persona: ChosenPersona | None = None) -> None:
        self.socket = socket
        self.session = session
        self.session_id = session_id
        self.limits = limits
        self.metrics = metrics
        self.shared_tts = shared_tts if shared_tts is not None else session.backends.tts
        self.voices = voices
        self.personas = personas  # persona_api.PersonaService: session.update's persona_id
        self.live = LiveSettings()
        if persona is not None:  # the persona of sessions that choose none (personas.default_id)
            self.live.apply(proto.SessionUpdate(persona_id=persona.record.id), session, self.shared_tts,
                            persona=persona)
        self.out_rate = session.settings.reply.output_sample_rate
        self._outbox: deque[_Out] = deque()
        self._outbox_audio_s = 0.0
        self._has_out = asyncio.Event()
        self._closing: asyncio.Future[tuple[int | None, str]] = asyncio.get_running_loop().create_future()
        self._started = time.monotonic()
        self._last_seen = self._started
        self._last_audio = self._started
        self.close_code: int | None = None
        session.on_overflow = lambda event: self.close_soon(proto.CLOSE_TRY_AGAIN, "server overloaded")

    # ---- control ----
    def close_soon(self, code: int | None, reason: str) -> None:
        """Ask the connection to end: ``code`` None = the client has gone already."""
        if not self._closing.done():
            self._closing.set_result((code, reason))

    async def shutdown(self, grace_s: float) -> None:
        """Server shutdown: tell the client, let a reply in progress finish (up to ``grace_s``), then close."""
        self.send_json({"type": proto.SESSION_CLOSING, "reason": "server_shutdown", "grace_s": grace_s})
        deadline = time.monotonic() + grace_s
        while self.session.replying and time.monotonic() < deadline and not self._closing.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the session has no "reply finished" event to wait on
        self.close_soon(proto.CLOSE_GOING_AWAY, "server shutting down")

    def send_json(self, obj: dict[str, Any]) -> None:
        self._enqueue(_Out(proto.dumps(obj)))

    def send_error(self, code: str, message: str, *, retryable: bool = False) -> None:
        self.metrics.errors.labels(code).inc()
        self.send_json(proto.error_json(code, message, retryable=retryable))

    # ---- the run ----
    async def run(self) -> str:
        self.send_json({"type": proto.SESSION_CREATED, "session_id": self.session_id, "voices": list(self.voices),
                        "session": self.live.describe(self.session)})
        tasks = [asyncio.create_task(coro, name=f"ws-{name}") for name, coro in (
            ("read", self._read()), ("pump", self._pump()), ("write", self._write()),
            ("clock", self._keep_clock()), ("watch", self._watch()))]
        for task in tasks:
            task.add_done_callback(self._on_task_done)
        code, reason = await self._closing
        if code is not None and code != proto.CLOSE_POLICY:  # a reader of its messages: let the last ones out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), FLUSH_TIMEOUT_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.close_code = code
        return reason

    async def finish(self) -> None:
        """Send the close frame (after ``run()``, once the session is closed). A client that stopped reading gets it
        after what is already buffered for it, if it reads again before the keep-alive ping gives up on it."""
        if self.close_code is None:
            return
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(self.socket.close(self.close_code, self._closing.result()[1]), CLOSE_TIMEOUT_S)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("connection %s: %s failed: %r", self.session_id, task.get_name(), exc)
            self.close_soon(1011, "internal error")

    async def _drained(self) -> None:
        while self._outbox:  # noqa: ASYNC110 - the writer pops as it sends; a 10 ms poll for the last few
            await asyncio.sleep(0.01)

    # ---- client -> session ----
    async def _read(self) -> None:
        while True:
            message = await self.socket.receive()
            kind = message.get("type")
            if kind == "websocket.disconnect":
                self.close_soon(None, "client closed")
                return
            self._last_seen = time.monotonic()
            data, text = message.get("bytes"), message.get("text")
            try:
                if data is not None:
                    await self._on_audio(data)
                elif text is not None:
                    await self._on_text(text)
            except ProtocolError as exc:
                self.send_error(exc.code, str(exc))
            except AttuneError as exc:
                self.send_error("invalid_request", str(exc))

    async def _on_audio(self, data: bytes) -> None:
        samples = proto.decode_audio(data, self.live.input_audio_format, self.live.input_sample_rate)
        self._last_audio = time.monotonic()
        samples = self.live.to_16k(samples)
        for start in range(0, len(samples), SAMPLE_RATE):
            await self.session.push_audio(samples[start:start + SAMPLE_RATE])

    async def _on_text(self, text: str) -> None:
        event = proto.decode_text(text)
        s = self.session
        if event.type == "session.update":
            update = proto.parse_session_update(event, self.voices)
            chosen = await self._persona(update.persona_id) if update.persona_id else None
            self.live.apply(update, s, self.shared_tts, persona=chosen)
            self.send_json({"type": proto.SESSION_UPDATED, "session": self.live.describe(s)})
        elif event.type == "input_audio_buffer.commit":
            committed = s.commit_input()
            if not committed:
                raise ProtocolError("nothing to commit: no speech heard since the last turn", "buffer_empty")
            self.send_json({"type": proto.BUFFER_COMMITTED, "audio_end_ms": int(s.now * 1000)})
        elif event.type == "input_audio_buffer.clear":
            await s.clear_input()
            self.send_json({"type": proto.BUFFER_CLEARED})
        elif event.type == "conversation.item.create":
            await s.submit_text(_item_text(event.data))
        elif event.type == "response.cancel":
            await s.cancel_response()
        elif event.type == "ping":
            self.send_json({"type": proto.PONG, **({"id": event.data["id"]} if "id" in event.data else {})})

    async def _persona(self, pid: str) -> ChosenPersona:
        """The record and voice of ``pid``; an unknown id or a voice that cannot load is an error naming persona_id,
        raised before anything of the update is applied."""
        if self.personas is None:
            raise ProtocolError("session.persona_id: this server has no persona store", "invalid_session_update")
        try:
            return await self.personas.resolve(pid)
        except PersonaError:
            raise ProtocolError(f"session.persona_id: no persona with id {pid!r}", "invalid_session_update") from None
        except BackendError as exc:
            raise ProtocolError(f"session.persona_id: the voice of {pid!r} cannot be used: {exc}",
                                "invalid_session_update") from None

    async def _keep_clock(self) -> None:
        """The session's clock runs on input audio; while a client sends none (push-to-talk, typed turns), silence
        at real-time pace keeps replies playing."""
        silence = np.zeros(FRAME, dtype=np.float32)
        t_next: float | None = None
        while True:
            gap = time.monotonic() - self._last_audio
            if gap < CLOCK_GAP_S:
                t_next = None
                await asyncio.sleep(CLOCK_GAP_S - gap)
                continue
            t_next = time.monotonic() if t_next is None else t_next
            await self.session.push_audio(silence)
            t_next += FRAME / SAMPLE_RATE
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    async def _watch(self) -> None:
        lim = self.limits
        while True:
            now = time.monotonic()
            if now - self._started >= lim.max_session_s:
                self.send_error("session_expired", f"the session reached its maximum length of {lim.max_session_s:g} s")
                self.close_soon(proto.CLOSE_NORMAL, "maximum session time")
                return
            if now - self._last_seen >= lim.idle_timeout_s:
                self.send_error("idle_timeout", f"no message from the client for {lim.idle_timeout_s:g} s",
                                retryable=True)
                self.close_soon(proto.CLOSE_NORMAL, "idle timeout")
                return
            await asyncio.sleep(min(0.5, lim.idle_timeout_s / 4, lim.max_session_s / 4))

    # ---- session -> client ----
    async def _pump(self) -> None:
        while True:
            event = await self.session.events.get()
            self._observe(event)
            if event.type == ev.AUDIO_DELTA:
                if event.audio is None:
                    continue
                self._enqueue(_Out(proto.encode_event(event), event.audio.duration_s, event.data.get("turn")))
                continue
            if event.type == ev.RESPONSE_CANCELLED:
                self._drop_turn_audio(event.data.get("turn"))
            self._enqueue(_Out(proto.encode_event(event)))

    def _enqueue(self, item: _Out) -> None:
        if self._closing.done():
            return
        self._outbox.append(item)
        self._outbox_audio_s += item.audio_s
        self._has_out.set()
        lim = self.limits
        if self._outbox_audio_s > lim.outbox_max_s or len(self._outbox) > lim.outbox_max_events:
            log.warning("connection %s: client is not reading (%.1f s of audio, %d messages waiting); closing",
                        self.session_id, self._outbox_audio_s, len(self._outbox))
            self.close_soon(proto.CLOSE_POLICY, "client not reading: output buffer full")

    def _drop_turn_audio(self, turn: Any) -> None:
        """Audio of a cancelled reply still waiting for the client would only play after the barge-in: drop it."""
        if turn is None:
            return
        kept = deque(o for o in self._outbox if not (o.turn == turn and o.audio_s))
        self._outbox = kept
        self._outbox_audio_s = sum(o.audio_s for o in kept)

    async def _write(self) -> None:
        while True:
            while not self._outbox:
                self._has_out.clear()
                await self._has_out.wait()
            item = self._outbox[0]
            try:
                if isinstance(item.message, bytes):
                    await self.socket.send_bytes(item.message)
                else:
                    await self.socket.send_text(item.message)
            except Exception:  # noqa: BLE001 - the client has gone (uvicorn's and Starlette's disconnect errors)
                self.close_soon(None, "client closed")
                return
            if self._outbox and self._outbox[0] is item:
                self._outbox.popleft()
                self._outbox_audio_s = max(0.0, self._outbox_audio_s - item.audio_s)

    def _observe(self, event: SessionEvent) -> None:
        m, d = self.metrics, event.data
        if event.type == ev.EMOTION_MEASUREMENT:
            m.emotion_hops.inc()
        elif event.type == ev.ERROR:
            m.errors.labels(str(d.get("code", "internal_error"))).inc()
        elif event.type in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED):
            m.turns.labels(str(d.get("status", "cancelled"))).inc()
            v2v = (d.get("trace") or {}).get("voice_to_voice_ms")
            if isinstance(v2v, (int, float)):
                m.voice_to_voice.observe(v2v / 1000.0)
        elif event.type == proto.RESPONSE_QUEUED:
            m.llm_queued.inc()


def _item_text(data: dict[str, Any]) -> str:
    """The text of ``conversation.item.create``: ``{"item": {"type": "message", "role": "user", "content":
    [{"type": "input_text", "text": ...}]}}`` (OpenAI's shape) or the shorthand ``{"text": ...}``."""
    if isinstance(data.get("text"), str):
        return str(data["text"])
    item = data.get("item")
    if isinstance(item, dict):
        parts = item.get("content")
        if isinstance(parts, list):
            texts = [str(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
            if texts:
                return " ".join(texts)
    raise ProtocolError("conversation.item.create needs item.content[].text (type input_text) or text",
                        "invalid_item")
