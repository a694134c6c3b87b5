"""The kiosk: an unattended conversation loop over the local microphone and loudspeaker.

It starts listening at once and greets (as its persona, ``personas.default_id``, where one is set: that
persona's name, traits, strategy and voice, and its greeting); forgets a conversation after ``kiosk.idle_reset_s``
of quiet and begins a new one; reopens a lost or reappearing audio device and reloads failing engines, waiting
longer after each failure (``Backoff``); logs one JSON object per line; stops cleanly when ``stop`` is set
(SIGTERM). ``health_snapshot()`` is what ``GET /health`` answers: device state, engines, turns, the last error.

    Kiosk.run(stop)
      engines: load (retry with backoff) ─┐
      device:  open (rescan, backoff) ────┤  lost -> close, reopen
      conversation: Session + greeting ───┘  idle -> reset; failing engines -> reload; stop -> return
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from attune.config import Config
from attune.core import events as ev
from attune.core.audio import trim_leading_silence
from attune.core.emotion import EmotionCategory
from attune.core.errors import AudioDeviceError, TTSError
from attune.core.events import SessionEvent
from attune.pipeline.phrases import Phrase, PhraseVoice
from attune.pipeline.session import Session, SessionBackends
from attune.pipeline.session_backends import ChosenPersona, persona_change
from attune.transports.microphone import LocalAudio, run_microphone

log = logging.getLogger("attune.kiosk")
WATCH_S = 0.1  # s between checks of the idle timer and the stop signal
ENGINE_ERRORS = ("asr_failed", "llm_failed", "tts_failed")  # error codes that count a reply as failed


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: ``event`` plus ``fields`` (``JsonLineFormatter`` writes them as JSON)."""
    log.log(level, event, extra={"fields": fields})


class JsonLineFormatter(logging.Formatter):
    """Every log record as one JSON object: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (the
    message) and the record's structured ``fields``; an exception's traceback goes under ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                                "level": record.levelname, "logger": record.name, "event": record.getMessage()}
        line.update(getattr(record, "fields", {}) or {})  # probe: logging's ``extra`` lands as record attributes
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Backoff:
    """Waits before retrying: ``initial_s``, doubling after each failure up to ``max_s``; ``reset()`` after a
    success. Pure: the caller sleeps."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s = initial_s, max(initial_s, max_s)
        self.failures = 0

    def next(self) -> float:
        delay = min(self.max_s, self.initial_s * 2.0 ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass
class KioskHealth:
    """What the kiosk knows about itself; ``snapshot()`` is a JSON-ready copy."""

    started: float = field(default_factory=time.time)
    status: str = "starting"  # starting | ok | degraded | stopping
    device: dict[str, Any] = field(default_factory=lambda: {"state": "closed", "losses": 0, "opens": 0})
    engines: dict[str, Any] = field(default_factory=lambda: {"state": "loading", "loads": 0, "error": None})
    conversations: int = 0
    turns: int = 0
    failed_turns: int = 0
    last_error: dict[str, Any] | None = None

    def error(self, code: str, message: str) -> None:
        self.last_error = {"code": code, "message": message, "at": datetime.now(UTC).isoformat(timespec="seconds")}

    def snapshot(self) -> dict[str, Any]:
        listening = self.device["state"] == "open" and self.engines["state"] in ("ready", "degraded")
        status = self.status
        if status == "ok" and not listening:
            status = "degraded"
        return {"status": status, "listening": listening, "uptime_s": round(time.time() - self.started, 1),
                "device": dict(self.device), "engines": dict(self.engines), "conversations": self.conversations,
                "turns": self.turns, "failed_turns": self.failed_turns,
                "last_error": dict(self.last_error) if self.last_error else None}


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless ``stop`` is set first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


class Kiosk:
    """``await Kiosk(...).run(stop)`` until ``stop`` is set. ``load_engines`` builds (and warms) the engines;
    ``open_audio`` makes a ``LocalAudio`` (not yet entered); ``rescan`` makes PortAudio look for devices again;
    ``for_session`` gives each conversation fresh per-stream state over the shared engines; ``persona`` gives the
    stored persona each conversation runs as, over the loaded engines (None: the configured agent)."""

    def __init__(self, config: Config, *, load_engines: Callable[[], Awaitable[SessionBackends]],
                 open_audio: Callable[[], LocalAudio], rescan: Callable[[], None] = lambda: None,
                 for_session: Callable[[Config, SessionBackends], SessionBackends] | None = None,
                 persona: Callable[[SessionBackends], Awaitable[ChosenPersona | None]] | None = None,
                 ) -> None:
        self.config = config
        self.settings = config.kiosk
        self.load_engines, self.open_audio, self.rescan = load_engines, open_audio, rescan
        self.for_session = for_session or _default_for_session
        self.health = KioskHealth()
        self.session: Session | None = None
        self.persona_of = persona
        self.persona: ChosenPersona | None = None
        self._greeting: np.ndarray | None = None

    def health_snapshot(self) -> dict[str, Any]:
        """The ``GET /health`` answer."""
        snap = self.health.snapshot()
        s = self.session
        snap["conversation"] = None if s is None else {"turns": len(s.turns), "stream_s": round(s.now, 1)}
        return snap

    # ---- the outer loops ----
    async def run(self, stop: asyncio.Event) -> None:
        log_event("kiosk.start", greeting=bool(self.settings.greeting), idle_reset_s=self.settings.idle_reset_s,
                  persona=self.config.personas.default_id or None)
        engine_backoff = self._backoff()
        while not stop.is_set():
            backends = await self._load(stop, engine_backoff)
            if backends is None:
                break
            if not await self._serve(backends, stop):
                break  # stopped; otherwise the engines are failing: reload them
            self.health.engines["state"] = "reloading"
            log_event("engines.reload", logging.WARNING, failed_turns=self.health.failed_turns)
            await _sleep(stop, engine_backoff.next())
        self.health.status = "stopping"
        log_event("kiosk.stop", conversations=self.health.conversations, turns=self.health.turns)

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)

    async def _load(self, stop: asyncio.Event, backoff: Backoff) -> SessionBackends | None:
        while not stop.is_set():
            self.health.engines.update(state="loading")
            t = time.perf_counter()
            try:
                backends = await self.load_engines()
                self.persona = await self.persona_of(backends) if self.persona_of is not None else None
                self._greeting = await self._render_greeting(backends)
            except Exception as exc:  # noqa: BLE001 - any failure to load is retried; the kiosk never exits on it
                delay = backoff.next()
                self.health.engines.update(state="failed", error=f"{type(exc).__name__}: {exc}")
                self.health.error("engines_failed", str(exc))
                log_event("engines.failed", logging.ERROR, error=str(exc), retry_in_s=delay)
                await _sleep(stop, delay)
                continue
            self.health.engines.update(state="ready", error=None, loads=self.health.engines["loads"] + 1)
            log_event("engines.ready", load_s=round(time.perf_counter() - t, 2),
                      persona=self.persona.record.id if self.persona else None)
            return backends
        return None

    async def _serve(self, backends: SessionBackends, stop: asyncio.Event) -> bool:
        """Conversations over the device until ``stop`` (False) or failing engines (True)."""
        backoff = self._backoff()
        while not stop.is_set():
            try:
                audio = self.open_audio()
                audio.__enter__()
            except AudioDeviceError as exc:
                await self._device_missing(stop, backoff, str(exc))
                continue
            backoff.reset()
            self.health.device.update(state="open", opens=self.health.device["opens"] + 1,
                                      input=audio.input_device, output=audio.output_device)
            self.health.status = "ok"
            log_event("device.open", input=audio.input_device, output=audio.output_device,
                      echo_cancellation=audio.canceller.name)
            try:
                outcome = await self._conversations(backends, audio, stop)
            finally:
                audio.close()
                self.health.device["state"] = "closed"
            if outcome == "rebuild":
                return True
            if outcome == "device_lost":
                self.health.device["losses"] += 1
                await self._device_missing(stop, backoff, "lost", state="lost")
        return False

    async def _device_missing(self, stop: asyncio.Event, backoff: Backoff, why: str, *, state: str = "missing") -> None:
        delay = backoff.next()
        self.health.device["state"] = state
        self.health.status = "degraded"
        self.health.error("audio_device", why)
        log_event(f"device.{state}", logging.WARNING, error=why, retry_in_s=delay)
        await _sleep(stop, delay)
        try:
            self.rescan()
        except Exception as exc:  # noqa: BLE001 - a failed rescan is retried after the next wait
            log_event("device.rescan_failed", logging.WARNING, error=str(exc))

    async def _conversations(self, backends: SessionBackends, audio: LocalAudio, stop: asyncio.Event) -> str:
        conversation_backoff = self._backoff()
        while not stop.is_set():
            try:
                outcome = await self._conversation(backends, audio, stop)
            except AudioDeviceError as exc:
                log_event("device.lost", logging.WARNING, error=str(exc))
                return "device_lost"
            except Exception as exc:  # noqa: BLE001 - a bug costs one conversation, never the kiosk
                delay = conversation_backoff.next()
                self.health.error("internal_error", f"{type(exc).__name__}: {exc}")
                log.exception("conversation failed", extra={"fields": {"retry_in_s": delay}})
                await _sleep(stop, delay)
                continue
            conversation_backoff.reset()
            if outcome != "idle":
                return outcome
        return "stop"

    # ---- one conversation ----
    async def _conversation(self, backends: SessionBackends, audio: LocalAudio, stop: asyncio.Event) -> str:
        session = Session(self.config, self.for_session(self.config, backends))
        if self.persona is not None:  # the persona's traits, strategy and voice
            session.apply(persona_change(session.settings, session.backends.voice, self.persona))
        self.session = session
        self.health.conversations += 1
        number = self.health.conversations
        log_event("conversation.start", conversation=number)
        watch = _ConversationWatch(self, session, audio)
        async with session:
            session.echo_tail_s = audio.echo_tail_s
            self._greet(session, audio)
            watcher = asyncio.create_task(watch.run(stop), name="kiosk-watch")
            try:
                await run_microphone(session, audio, on_event=watch.on_event, stop=watch.ending)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        self.session = None
        log_event("conversation.end", conversation=number, reason=watch.outcome, turns=len(session.turns))
        return watch.outcome

    def greeting_text(self) -> str:
        """The persona's greeting where it has one, else ``kiosk.greeting`` ("" = none)."""
        own = self.persona.record.greeting.strip() if self.persona is not None else ""
        return own or self.settings.greeting.strip()

    async def _render_greeting(self, backends: SessionBackends) -> np.ndarray | None:
        """The greeting through the speech cache (neutral, as a reply's sentence would sound, in the persona's
        voice where there is one; found on disk after the first start), its leading silence trimmed. A failed TTS
        is an error of the engines (retried)."""
        text = self.greeting_text()
        if not text:
            return None
        voice = backends.voice.phrases or PhraseVoice(backends.tts, backends.dsp_factory,
                                                      self.config.pipeline.output_sample_rate)
        if self.persona is not None:
            voice = voice.speaking_with(self.persona.voice)
        phrase = Phrase.of(text, EmotionCategory.NEUTRAL)
        speech = await voice.render(phrase.text, phrase.emotion, phrase.prosody)
        if speech is None:
            raise TTSError(f"the greeting {text!r} could not be synthesised (see the warning above)", retryable=True)
        return trim_leading_silence(np.asarray(speech.samples), speech.sample_rate)

    def _greet(self, session: Session, audio: LocalAudio) -> None:
        if self._greeting is None or not len(self._greeting):
            return
        audio.play(self._greeting)
        session.note_agent_audio(session.now + audio.speaker.buffered_s)
        log_event("greeting", seconds=round(len(self._greeting) / self.config.pipeline.output_sample_rate, 2))


def _default_for_session(config: Config, backends: SessionBackends) -> SessionBackends:
    from attune.pipeline.stack import for_session

    return for_session(config, backends)


class _ConversationWatch:
    """Follows one conversation's events: counts turns and failures for the health snapshot, cuts the greeting
    when the user speaks, and ends the conversation (``ending``) on stop, idle time or failing engines."""

    def __init__(self, kiosk: Kiosk, session: Session, audio: LocalAudio) -> None:
        self.kiosk, self.session, self.audio = kiosk, session, audio
        self.ending = asyncio.Event()
        self.outcome = "stop"
        self.last_activity_s = 0.0
        self._reply_failed = False

    def on_event(self, event: SessionEvent) -> None:
        h, s = self.kiosk.health, self.session
        if event.type in (ev.SPEECH_STARTED, ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED):
            self.last_activity_s = s.now
        if event.type == ev.SPEECH_STARTED:
            self.audio.flush()  # the user speaks: a greeting still playing stops (a reply is cut by the session)
        elif event.type == ev.ERROR:
            err = event.data.get("error", event.data)
            h.error(str(err.get("code")), str(err.get("message")))
            log_event("session.error", logging.WARNING, code=err.get("code"), message=err.get("message"))
            self._reply_failed = self._reply_failed or err.get("code") in ENGINE_ERRORS
        elif event.type in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED):
            self._on_turn(event)

    def _on_turn(self, event: SessionEvent) -> None:
        h = self.kiosk.health
        trace = event.data.get("trace", {})
        h.turns += 1
        failed = self._reply_failed or event.data.get("status") == "failed"
        self._reply_failed = False
        h.failed_turns = h.failed_turns + 1 if failed else 0
        h.engines["state"] = "degraded" if failed else "ready"
        log_event("turn", status=event.data.get("status"), transcript=trace.get("transcript"),
                  user_emotion=trace.get("user_emotion"), strategy=trace.get("strategy"),
                  voice_to_voice_ms=trace.get("voice_to_voice_ms"), failed=failed)
        if h.failed_turns >= self.kiosk.settings.failed_turns_before_rebuild:
            self._end("rebuild")

    def _end(self, outcome: str) -> None:
        if not self.ending.is_set():
            self.outcome = outcome
            self.ending.set()

    async def run(self, stop: asyncio.Event) -> None:
        idle_s = self.kiosk.settings.idle_reset_s
        while not self.ending.is_set():
            if stop.is_set():
                self._end("stop")
            elif self.session.turns and self.session.idle and self.session.now - self.last_activity_s >= idle_s:
                self._end("idle")
            await asyncio.sleep(WATCH_S)
