"""The WebSocket server: one port serving the protocol at ``/ws`` (and the OpenAI Realtime protocol over the same
sessions at ``/v1/realtime``), the web client at ``/`` (its persona page at
``/personas``), ``GET /health``, ``GET /metrics`` and the persona API under ``/v1/`` (``persona_api.py``), as a
Starlette ASGI app on uvicorn with ``websockets``' Sans-I/O protocol as its WebSocket implementation (an ASGI app,
unlike ``websockets``' own ``process_request``, can read request bodies and file uploads on the same port, which
the persona API needs).

Hardening: the Host and Origin gate of ``guard.py`` on every route (403), an explicit max message size (1009), no
compression, bearer-token auth (401; with no token configured only a loopback address may be bound), a connection
cap and reply admission (503 with ``Retry-After``; ``SharedLLM``'s capacity), idle and maximum-session timers
(``connection.py``), and a graceful SIGTERM: sessions are told, replies in progress may finish for
``shutdown_grace_s``, then every socket is closed with 1001 and the process exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from attune.agent.persona_store import PersonaStore
from attune.agent.persona_voice import VoiceRegistry
from attune.backends.base import ASRBackend, HealthProbe, LLMBackend, MappedPages, TTSBackend
from attune.config import Config, ServerConfig
from attune.core.errors import ConfigError
from attune.core.events import SessionEvent
from attune.core.process_memory import release_free_memory
from attune.pipeline.admission_ledger import AdmissionLedger
from attune.pipeline.session import Session, SessionBackends
from attune.pipeline.shared_llm import SharedLLM
from attune.transports.connection import Connection, ConnectionLimits, close_label
from attune.transports.guard import GuardMiddleware, Refusal, RequestGuard
from attune.transports.live_settings import voices_of
from attune.transports.metrics import CONTENT_TYPE, ServerMetrics
from attune.transports.persona_api import PersonaAPI, PersonaService
from attune.transports.protocol import RESPONSE_QUEUED

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"
WS_IMPLEMENTATION = "websockets-sansio"  # uvicorn's WebSocket protocol built on websockets' Sans-I/O core
RETRY_AFTER_S = 5  # s a client refused for the session cap or a shutdown is asked to wait
MEMORY_HANDBACK_S = 5.0  # s at least between two hand-backs of freed memory after a session


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tokens_from_env(settings: ServerConfig, environ: Any = None) -> tuple[str, ...]:
    raw = (os.environ if environ is None else environ).get(settings.token_env, "")
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def check_bind(host: str, tokens: tuple[str, ...], token_env: str) -> None:
    """With no token configured, only a loopback address may be bound (a ``ConfigError`` otherwise)."""
    if not tokens and not loopback(host):
        raise ConfigError(f"refusing to bind {host} without authentication: set {token_env} to one or more "
                          "comma-separated tokens, or bind 127.0.0.1")


@dataclass
class Engines:
    """What sessions are served with: ``fresh()`` makes one session's backends (its own VAD and emotion stream
    state over the shared ASR, LLM and TTS); the LLM is wrapped here so that sessions share it fairly."""

    config: Config
    fresh: Callable[[], SessionBackends]
    llm: LLMBackend
    tts: TTSBackend
    asr: ASRBackend | None = None


class AttuneServer:
    """The ASGI app (``self.app``) and the state of its sessions. ``personas``: the persona store (default: the
    one under ``personas.data_dir``, opened here; a corrupt database file is a ``StoreError`` naming it)."""

    def __init__(self, engines: Engines, *, settings: ServerConfig | None = None,
                 tokens: tuple[str, ...] = (), personas: PersonaStore | None = None,
                 bound_host: str | None = None) -> None:
        self.engines = engines
        self.settings = s = settings or engines.config.server
        self.tokens = tokens
        self.metrics = ServerMetrics()
        self.guard = RequestGuard.from_settings(s, bound_host)
        ledger = AdmissionLedger(engines.config.resolve_path(s.admission_ledger)) if s.admission_ledger else None
        self.shared_llm = SharedLLM(engines.llm, slots=s.llm_slots, on_wait=self.metrics.llm_wait.observe,
                                    max_requests=s.max_replying, max_wait_s=s.max_queue_wait_s, ledger=ledger,
                                    stall_s=s.llm_stall_s)
        self.voices = voices_of(engines.tts)
        self.connections: dict[str, Connection] = {}
        self.draining = False
        self.started = time.time()
        self._handed_back = 0.0  # time.monotonic() of the last _hand_back_memory
        self._ids = itertools.count(1)
        store = personas if personas is not None else PersonaStore.from_config(engines.config)
        self.personas = PersonaService(store, engines.tts, engines.config, VoiceRegistry())
        store.default_persona(engines.config.personas.default_id)  # an unknown id: ConfigError, at start-up
        api = PersonaAPI(self.personas, lambda r: self._authorized(r.headers.get("authorization"),
                                                                   r.query_params.get("token")))
        self.app = Starlette(routes=[
            Route("/", self.index),
            Route("/personas", self.personas_page),
            Route("/health", self.health),
            Route("/metrics", self.metrics_page),
            *api.routes(),
            Mount("/static", StaticFiles(directory=WEB_DIR)),
            WebSocketRoute("/ws", self.websocket),
            WebSocketRoute("/v1/realtime", self.realtime),  # OpenAI Realtime (realtime_connection.py)
        ], middleware=[Middleware(GuardMiddleware, guard=self.guard, on_refusal=self._count_refusal)])

    # ---- HTTP ----
    async def index(self, request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def personas_page(self, request: Request) -> Response:
        """The persona editor (``web/personas.html``); the page itself holds no data, the API it calls is guarded."""
        return FileResponse(WEB_DIR / "personas.html", media_type="text/html; charset=utf-8")

    async def health(self, request: Request) -> Response:
        """200 while the server takes sessions; 503 (with ``Retry-After``) while it drains or is full, so that a
        load balancer sends new conversations elsewhere."""
        report = await self.health_dict()
        if report["status"] == "ok":
            return JSONResponse(report)
        return JSONResponse(report, status_code=503, headers={"Retry-After": str(self._retry_after_s())})

    async def health_dict(self) -> dict[str, Any]:
        e = self.engines
        tts: dict[str, Any] = {"name": e.tts.name}
        if isinstance(e.tts, HealthProbe):
            try:
                tts["providers"] = await e.tts.health()
            except Exception as exc:  # noqa: BLE001 - health reports a failing engine, it never fails itself
                tts["error"] = str(exc)
        llm = self.shared_llm
        governed = llm.governor_state()
        full = len(self.connections) >= self.settings.max_sessions or self.shared_llm.full  # as refusal() says
        return {
            "status": "draining" if self.draining else "full" if full else "ok",
            "sessions": len(self.connections), "max_sessions": self.settings.max_sessions,
            "uptime_s": round(time.time() - self.started, 1),
            "engines": {
                "asr": {"name": None if e.asr is None else e.asr.name, "ready": e.asr is not None},
                "llm": {"name": llm.name, "slots": llm.slots, "busy": llm.busy, "waiting": llm.waiting,
                        "served": llm.served, "queued_total": llm.queued_total, "capacity": llm.capacity,
                        "refused_total": llm.refused_total, "reserved": llm.reserved,
                        "hold_s": round(llm.host_hold_s(), 3), "voice_to_voice_s": round(llm.lone_voice_s(), 3),
                        "derived_capacity": llm.derived_capacity, "capacity_cut": governed.cut,
                        "capacity_reason": governed.reason, "listen_cost_s": round(llm.listen_cost_s(), 3),
                        "turns_in_progress": llm.turns_in_progress(), "listening": llm.listening(),
                        "stalled_total": llm.stalled_total, "in_flight": llm.in_flight(),
                        "shared": llm.ledger is not None},
                "tts": tts,
            },
        }

    def _observe_reply(self, voice_to_voice_s: float, trace: dict[str, Any]) -> None:
        """A completed reply's voice-to-voice, for the shared LLM's admission (``SharedLLM.observe_reply``)."""
        at, ahead, listening = (trace.get(k) for k in ("admitted_capacity", "admitted_ahead", "admitted_listening"))
        self.shared_llm.observe_reply(voice_to_voice_s, alone=bool(trace.get("admitted_alone")),
                                      queued=bool(trace.get("llm_queued")),
                                      admitted_at=at if isinstance(at, int) else None,
                                      listening=listening if isinstance(listening, int) else 0,
                                      ahead=ahead if isinstance(ahead, int) else None)

    async def metrics_page(self, request: Request) -> Response:
        if self.tokens and not self._authorized(request.headers.get("authorization"),
                                                request.query_params.get("token")):
            return PlainTextResponse("unauthorized\n", status_code=401)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    # ---- the handshake ----
    def _authorized(self, header: str | None, query_token: str | None) -> bool:
        if not self.tokens:
            return True
        given = query_token or ""
        if header and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return any(hmac.compare_digest(given.encode(), t.encode()) for t in self.tokens)

    def refusal(self, ws: WebSocket) -> Refusal | None:
        """Why a WebSocket handshake is refused, or None: the Host/Origin gate (also the middleware's), the token,
        a shutdown, the session cap, and replies at capacity. Any WebSocket route of this server asks it."""
        refused = self.guard.check_request(ws.scope)
        if refused is not None:
            return refused
        h = ws.headers
        if not self._authorized(h.get("authorization"), ws.query_params.get("token")):
            return Refusal(401, "unauthorized", "missing or invalid token")
        if self.draining:
            return Refusal(503, "shutting_down", "server shutting down")
        if len(self.connections) >= self.settings.max_sessions:
            return Refusal(503, "too_many_sessions", "too many sessions")
        if self.shared_llm.full:
            return Refusal(503, "replies_at_capacity", "every reply this server can prepare in time is taken")
        return None

    def _retry_after_s(self) -> int:
        """Seconds a refused client should wait: until a reply's place frees, or ``RETRY_AFTER_S``."""
        llm = self.shared_llm
        if llm.full and not self.draining:
            return max(1, math.ceil(llm.estimated_wait_s(1)))
        return RETRY_AFTER_S

    def _count_refusal(self, refusal: Refusal) -> None:
        self.metrics.rejected.labels(refusal.code).inc()

    async def deny(self, ws: WebSocket, refusal: Refusal) -> None:
        """Answer a refused handshake with its HTTP status (503s with ``Retry-After``), logged at debug level."""
        self._count_refusal(refusal)
        log.debug("websocket refused: %s", refusal.message)
        headers = {"Retry-After": str(self._retry_after_s())} if refusal.status == 503 else None
        await ws.send_denial_response(PlainTextResponse(refusal.message + "\n", status_code=refusal.status,
                                                        headers=headers))

    async def websocket(self, ws: WebSocket) -> None:
        """``/ws``: Attune's own wire format."""
        await self._serve(ws, self._ws_connection)

    async def realtime(self, ws: WebSocket) -> None:
        """``/v1/realtime``: the OpenAI Realtime protocol over the same session (``?model=`` is reported back;
        the key the SDK sends as ``Authorization: Bearer`` is checked like ``/ws``'s token)."""
        await self._serve(ws, self._realtime_connection)

    def _ws_connection(self, ws: WebSocket, session: Session, **kw: Any) -> Connection:
        limits = replace(kw.pop("limits"), max_message_bytes=self.settings.max_message_bytes)
        return Connection(ws, session, limits=limits, **kw)

    def _realtime_connection(self, ws: WebSocket, session: Session, **kw: Any) -> Connection:
        from attune.transports.realtime_connection import RealtimeConnection

        limits = replace(kw.pop("limits"), max_message_bytes=self.settings.realtime_max_message_bytes)
        model = (ws.query_params.get("model") or "attune")[:64]
        predicted = session.settings.endpoint is not None and session.backends.end_of_turn is not None
        return RealtimeConnection(ws, session, limits=limits, model=model, predicted=predicted, **kw)

    async def _serve(self, ws: WebSocket, connect: Callable[..., Connection]) -> None:
        """One session on ``ws``, whichever the wire format: the same admission checks (``refusal``: the
        Host/Origin gate, the token, capacity), engines, limits, metrics and shutdown."""
        refusal = self.refusal(ws)
        if refusal is not None:
            await self.deny(ws, refusal)
            return
        await ws.accept()
        session_id = f"sess_{next(self._ids)}"
        holder: dict[str, Session] = {}

        def on_queued(place: int) -> None:
            session = holder.get("s")
            if session is not None:
                session.emit_for_reply(SessionEvent(RESPONSE_QUEUED, {
                    "position": place, "estimated_wait_s": self.shared_llm.estimated_wait_s(place)}))

        view = self.shared_llm.for_session(on_queued)  # the session's LLM, and its door (``pipeline.shedding``)
        backends = replace(self.engines.fresh(), llm=view, admission=view)
        session = holder["s"] = Session(self.engines.config, backends)
        s = self.settings
        limits = ConnectionLimits(idle_timeout_s=s.idle_timeout_s, max_session_s=s.max_session_s,
                                  outbox_max_s=s.outbox_max_s, outbox_max_events=s.outbox_max_events)
        persona = await self.personas.for_new_session()
        conn: Connection | None = None
        listening = self.shared_llm.session_opened()  # it listens on the cores the replies need: admission counts it
        try:
            async with session:
                conn = connect(ws, session, session_id=session_id, limits=limits, metrics=self.metrics,
                               shared_tts=self.engines.tts, voices=self.voices, personas=self.personas,
                               persona=persona)
                conn.on_voice_to_voice = self._observe_reply  # the derived admission's budget and its check
                self.connections[session_id] = conn
                self.metrics.sessions.inc()
                self.metrics.sessions_active.inc()
                reason = await conn.run()
                self.metrics.closed.labels(close_label(reason)).inc()
            conn.collect_last()  # what the session said as it closed (a reply it cut off): counted before it leaves
        finally:
            self.shared_llm.session_closed(listening)
            if conn is not None:
                self.connections.pop(session_id, None)
                self.metrics.sessions_active.dec()
        await conn.finish()
        await self._hand_back_memory()

    async def _hand_back_memory(self) -> None:
        """After a session: the heap pages freed since (malloc_trim) and the LLM's embedding-table pages its turns
        faulted in go back to the system, at most every ``MEMORY_HANDBACK_S``, so RSS stays flat over many
        sessions (each session's replies touch other rows of the table, and a turn's buffers are freed to the
        heap, where glibc keeps them)."""
        now = time.monotonic()
        if now - self._handed_back < MEMORY_HANDBACK_S:
            return
        self._handed_back = now
        llm = self.engines.llm
        await asyncio.to_thread(release_free_memory)
        if isinstance(llm, MappedPages):
            await asyncio.to_thread(llm.release_lookup_pages)

    # ---- shutdown ----
    async def drain(self, grace_s: float | None = None) -> None:
        """Refuse new sessions, tell the open ones, give their replies ``grace_s`` to finish, close them."""
        self.draining = True
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        await asyncio.gather(*(c.shutdown(grace) for c in list(self.connections.values())), return_exceptions=True)
        deadline = time.monotonic() + grace + 3.0
        while self.connections and time.monotonic() < deadline:  # noqa: ASYNC110 - sockets closing one by one
            await asyncio.sleep(0.05)


class GracefulServer(uvicorn.Server):
    """uvicorn's server whose first SIGTERM/SIGINT drains the sessions (``AttuneServer.drain``) before it stops;
    a second one stops at once. The process then exits normally instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, attune: AttuneServer) -> None:
        super().__init__(config)
        self.attune = attune
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self.should_exit:
            self.force_exit = self.should_exit = True
            return
        log.info("signal %s: draining %d session(s)", signal.Signals(sig).name, len(self.attune.connections))
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        async def drain() -> None:
            try:
                await self.attune.drain()
            finally:
                self.should_exit = True

        self._drain_task = asyncio.create_task(drain(), name="attune-drain")


class ClientFaultFilter(logging.Filter):
    """uvicorn logs two client faults at ERROR level, each time: a refused handshake ("ASGI callable returned
    without completing handshake", though the denial was sent; the routes log their refusals at debug level) and
    a text frame of invalid UTF-8 (with a traceback; the socket is closed with 1007). Any client could flood the
    log with them. The first is dropped; the second is logged once at info level, without the traceback, then
    at debug level."""

    DENIAL = "ASGI callable returned without completing handshake."
    BAD_UTF8 = "Invalid UTF-8 sequence received from client."

    def __init__(self) -> None:
        super().__init__()
        self.bad_utf8 = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message == self.DENIAL:
            return False
        if message == self.BAD_UTF8:
            self.bad_utf8 += 1
            log.log(logging.INFO if self.bad_utf8 == 1 else logging.DEBUG,
                    "a client sent a text frame of invalid UTF-8; closed with 1007 (%d so far; further ones are "
                    "logged at debug level)", self.bad_utf8)
            return False
        return True


CLIENT_FAULTS = ClientFaultFilter()


def uvicorn_config(app: Any, host: str, port: int, settings: ServerConfig, **extra: Any) -> uvicorn.Config:
    """The pinned choices: websockets' Sans-I/O protocol, the message size limit (the larger route's: each route's
    connection holds its own), no compression; client faults kept out of the error log (``ClientFaultFilter``,
    installed once uvicorn has configured its loggers)."""
    config = uvicorn.Config(app, host=host, port=port, ws=WS_IMPLEMENTATION,
                            ws_max_size=max(settings.max_message_bytes, settings.realtime_max_message_bytes),
                            ws_per_message_deflate=False, ws_ping_interval=20.0, ws_ping_timeout=20.0,
                            lifespan="off", log_level="warning", timeout_graceful_shutdown=5, **extra)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if CLIENT_FAULTS not in uvicorn_log.filters:
        uvicorn_log.addFilter(CLIENT_FAULTS)
    return config
