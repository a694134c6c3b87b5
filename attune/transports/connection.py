"""One WebSocket connection driving one ``Session``: the asyncio glue between a socket and the protocol's pure core.

Owned tasks: the reader (client messages -> session), the pump (session events -> a bounded outbox; it never
blocks, so the session never waits on this client), the writer (outbox -> socket; it is the one that waits for a
slow client), the clock keeper (silence while the client sends no audio, so replies still play), and the watch
(idle and maximum-session timers; a reply in progress or still playing counts as activity, so a client that typed
a turn and listens is never cut off mid-reply). A client that stops reading fills its outbox and is closed with
1008; the audio it did get is a whole prefix of the reply, never a stream with holes.

Every turn ends in ``response.done`` with its ``status``: a cancelled reply's ``response.cancelled`` is followed
by ``response.done`` (``status: cancelled``, the same ``reason``), and a reply the closing session cut off is
still reported to a client that is there to read it. ``/metrics`` counts each turn once by outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
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
# Close reasons -> the fixed labels of attune_sessions_closed_total{reason}.
CLOSE_LABELS = {"client closed": "client_closed", "idle timeout": "idle_timeout",
                "maximum session time": "maximum_session_time", "server shutting down": "server_shutting_down",
                "client not reading": "client_not_reading", "server overloaded": "server_overloaded",
                "internal error": "internal_error"}
# Turn outcomes counted in attune_turns_total{outcome}.
OUTCOMES = ("completed", "failed", "cancelled", "dropped")


def close_label(reason: str) -> str:
    """The metrics label of a close reason (``"client not reading: output buffer full"`` ->
    ``client_not_reading``)."""
    return CLOSE_LABELS.get(reason.split(":")[0], "other")


def turn_outcome(event: SessionEvent, refused: bool = False) -> str | None:
    """The outcome a turn's last event reports: ``completed`` | ``failed`` | ``cancelled`` | ``dropped`` (the
    server refused the turn, ``refused``, or the session ended before the reply was heard); None for others."""
    if event.type == ev.RESPONSE_CANCELLED:
        return "dropped" if event.data.get("reason") == "session_closed" else "cancelled"
    if event.type == ev.RESPONSE_DONE:
        status = str(event.data.get("status", "failed"))
        return "dropped" if refused else status if status in OUTCOMES else "failed"
    return None


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
    max_message_bytes: int = 0  # a larger client message closes the socket with 1009; 0 = the server's own cap


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
        self._pushing = 0  # client audio pushes in progress
        self.close_code: int | None = None
        self._last: list[str] = []  # the closing session's last messages (collect_last), for finish()
        self._queue_counted = False  # this reply's wait for the LLM is counted
        self._refused_turns: set[Any] = set()  # turns the shared LLM refused (server_busy): counted as dropped
        # told the voice-to-voice (s) of each completed reply and its trace (the server's admission: a lone one's sets
        # the budget, every one checks the derived capacity against it)
        self.on_voice_to_voice: Callable[[float, dict[str, Any]], None] | None = None
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
    def _greeting(self) -> None:
        self.send_json({"type": proto.SESSION_CREATED, "session_id": self.session_id, "voices": list(self.voices),
                        "session": self.live.describe(self.session)})

    async def run(self) -> str:
        self._greeting()
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
        after what is already buffered for it, if it reads again before the keep-alive ping gives up on it.
        What the session said as it closed (``collect_last``) is sent first where the client is still there and
        reading."""
        last, self._last = self._last, []
        if self.close_code is None:
            return
        if self.close_code != proto.CLOSE_POLICY and last:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(self._send_all(last), FLUSH_TIMEOUT_S)
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(self.socket.close(self.close_code, self._closing.result()[1]), CLOSE_TIMEOUT_S)

    def collect_last(self) -> None:
        """Once the session is closed: its events left after ``run()`` (the pump has stopped; the close cut a
        reply off) are counted now and kept for ``finish()``."""
        out = self._last
        while not self.session.events.empty():
            event = self.session.events.get_nowait()
            self._observe(event)
            if event.type == ev.AUDIO_DELTA:
                continue
            out.append(str(proto.encode_event(event)))
            if event.type == ev.RESPONSE_CANCELLED:
                out.append(str(proto.encode_event(done_of_cancelled(event))))

    async def _send_all(self, messages: list[str]) -> None:
        for message in messages:
            await self.socket.send_text(message)

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
            if self._oversized(data, text):
                self.close_soon(proto.CLOSE_TOO_BIG, "message too big")
                return
            try:
                if data is not None:
                    await self._on_audio(data)
                elif text is not None:
                    await self._on_text(text)
            except ProtocolError as exc:
                self.send_error(exc.code, str(exc))
            except AttuneError as exc:
                self.send_error("invalid_request", str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug costs this message, never the session
                log.exception("connection %s: a client message failed", self.session_id)
                self.send_error("internal_error", f"{type(exc).__name__}: {str(exc)[:160]}")

    def _oversized(self, data: bytes | None, text: str | None) -> bool:
        """The route's own message cap (the server's, which websockets enforces, is the largest route's)."""
        cap = self.limits.max_message_bytes
        if not cap:
            return False
        if data is not None:
            return len(data) > cap
        return text is not None and len(text) * 4 > cap and len(text.encode("utf-8", "surrogatepass")) > cap

    async def _on_audio(self, data: bytes) -> None:
        samples = proto.decode_audio(data, self.live.input_audio_format, self.live.input_sample_rate)
        await self._push(self.live.to_16k(samples))

    async def _push(self, samples: np.ndarray) -> None:
        """Client audio (16 kHz) into the session, at most 1 s a frame. While it is being pushed (a full input
        queue makes that wait) the clock keeper adds no silence: that would land inside the client's audio."""
        self._last_audio = time.monotonic()
        self._pushing += 1
        try:
            for start in range(0, len(samples), SAMPLE_RATE):
                await self.session.push_audio(samples[start:start + SAMPLE_RATE])
        finally:
            self._pushing -= 1
            self._last_audio = time.monotonic()

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
            if gap < CLOCK_GAP_S or self._pushing:
                t_next = None
                await asyncio.sleep(max(0.01, CLOCK_GAP_S - gap))
                continue
            t_next = time.monotonic() if t_next is None else t_next
            await self.session.push_audio(silence)
            t_next += FRAME / SAMPLE_RATE
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    @property
    def active(self) -> bool:
        """The server is doing something for this client: a turn or reply in progress, reply audio still to be
        heard, or messages waiting to be sent."""
        return not self.session.idle or bool(self._outbox)

    async def _watch(self) -> None:
        lim = self.limits
        while True:
            now = time.monotonic()
            if self.active:
                self._last_seen = now  # the idle timer counts the client's silence only while nothing happens
            if now - self._started >= lim.max_session_s:
                self.send_error("session_expired", f"the session reached its maximum length of {lim.max_session_s:g} s")
                self.close_soon(proto.CLOSE_NORMAL, "maximum session time")
                return
            if now - self._last_seen >= lim.idle_timeout_s:
                self.send_error("idle_timeout", f"no message from the client and no reply for {lim.idle_timeout_s:g}"
                                " s", retryable=True)
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
            if event.type == ev.RESPONSE_CANCELLED:
                self._enqueue(_Out(proto.encode_event(done_of_cancelled(event))))

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
            code = str(d.get("code", "internal_error"))
            m.errors.labels(code).inc()
            if code == "server_busy" and d.get("turn") is not None:
                self._refused_turns.add(d["turn"])
        elif (outcome := turn_outcome(event, d.get("turn") in self._refused_turns)) is not None:
            m.turns.labels(outcome).inc()
            self._refused_turns.discard(d.get("turn"))
            v2v = (d.get("trace") or {}).get("voice_to_voice_ms")
            if isinstance(v2v, (int, float)):
                m.voice_to_voice.observe(v2v / 1000.0)
                trace = d.get("trace") or {}
                if self.on_voice_to_voice is not None and outcome == "completed":
                    self.on_voice_to_voice(v2v / 1000.0, trace)
        elif event.type == ev.RESPONSE_CREATED:
            self._queue_counted = False
        elif event.type == proto.RESPONSE_QUEUED and not self._queue_counted:  # told again while it waits: once
            m.llm_queued.inc()
            self._queue_counted = True


def done_of_cancelled(event: SessionEvent) -> SessionEvent:
    """The ``response.done`` that ends a cancelled turn (after its ``response.cancelled``): ``status:
    cancelled``, its ``reason`` and ``trace``."""
    return SessionEvent(ev.RESPONSE_DONE, {**event.data, "status": "cancelled"})


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
