"""The session runner: audio frames in, events out, one conversation. File, microphone and WebSocket transports
all drive this same object.

Frames (16 kHz mono float32, normally 20 ms) go to ``push_audio()``; the transport reads ``events`` (a bounded
queue of ``SessionEvent``). The session's clock is the input stream: it advances with every frame, and the
reply's audio is paced against it, so a transport must keep sending frames (silence included) while the agent
speaks. Owned tasks: the input stage (turn detection, barge-in), the emotion stage (user speech only) and at most
one ``Reply`` at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from attune.agent.brain import Planner, PromptBuilder, default_planner
from attune.agent.memory import ConversationMemory
from attune.agent.persona import Persona
from attune.backends.base import ASRBackend, LLMBackend, TTSBackend
from attune.backends.tts.prosody_map import native_dimensions
from attune.config import AgentConfig, Config, PipelineConfig
from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE
from attune.core.emotion import EmotionResult
from attune.core.errors import AudioInputError, BackendError
from attune.core.events import SessionEvent, error_event
from attune.core.frames import SpeechStarted, SpeechStopped
from attune.core.prosody import ProsodyParameters
from attune.core.trace import TraceWriter, TurnTrace
from attune.pipeline.reply import Reply
from attune.pipeline.turn import (
    SilenceBegan,
    SpeechResumed,
    TurnDetector,
    TurnEvent,
    TurnSettings,
    UserTurn,
    VoiceActivity,
)

log = logging.getLogger(__name__)
MAX_FRAME_S = 1.0  # longest frame push_audio accepts


class StreamingEmotion(Protocol):
    """What the session needs of ``attune.backends.emotion.detector.VoiceEmotionDetector``."""

    def analyze_streaming(self, chunk: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[EmotionResult]: ...

    def reset_stream(self) -> None: ...


Aggregator = Callable[[list[EmotionResult]], EmotionResult | None]


@dataclass
class SessionBackends:
    """The engines one session uses; ``emotion`` None runs without emotion analysis."""

    asr: ASRBackend
    llm: LLMBackend
    tts: TTSBackend
    vad: VoiceActivity
    emotion: StreamingEmotion | None = None
    aggregate: Aggregator | None = None
    planner: Planner = field(default_factory=default_planner)
    dsp_factory: Callable[[int, Any], Any] | None = None  # (sample_rate, ProsodyParameters) -> push/flush DSP


def default_aggregate() -> Aggregator:
    from attune.backends.emotion.detector import aggregate_results

    return aggregate_results


def default_dsp_factory() -> Callable[[int, Any], Any]:
    from attune.agent.prosody_dsp import ProsodyApplicator

    return ProsodyApplicator


class Session:
    """Use as ``async with Session(...) as s``: push frames, read ``s.events``; ``s.turns`` holds the traces."""

    def __init__(self, config: Config, backends: SessionBackends, *, persona: Persona | None = None) -> None:
        self.config = config
        self.settings: PipelineConfig = config.pipeline
        self.agent_settings: AgentConfig = config.agent
        self.backends = backends
        self.planner = backends.planner
        self.aggregate = backends.aggregate or default_aggregate()
        self.memory = ConversationMemory(config.agent.history_max_tokens)
        self.prompt = PromptBuilder(persona or Persona(config.agent.name, config.agent.persona or
                                                       Persona().description), reply_tag=config.agent.reply_tag)
        p = self.settings
        self.detector = TurnDetector(backends.vad, TurnSettings(
            threshold=p.vad_threshold, preroll_ms=p.preroll_ms, min_speech_ms=p.min_speech_ms,
            speculate_ms=p.speculate_silence_ms, end_of_turn_ms=p.end_of_turn_silence_ms, max_turn_s=p.max_turn_s))
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue(p.event_queue_size)
        self.turns: list[TurnTrace] = []
        self.emotion_trajectory: list[EmotionResult] = []  # one aggregate per committed turn
        self.trace_writer = TraceWriter(config.resolve_path(config.logging.trace_path)
                                        if config.logging.trace_path else None)
        self.now = 0.0  # the stream clock: seconds of input received
        self._wall_at_now = time.perf_counter()
        self._clock = asyncio.Condition()
        self._input: asyncio.Queue[np.ndarray | None] = asyncio.Queue(p.queue_size)
        self._emotion_q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(p.queue_size * 4)
        self._turn_emotions: list[EmotionResult] = []
        self._emotion_gate = False
        self._emotion_offset = 0.0
        self._ignore_turn = False
        self._turn_index = 0
        self._reply: Reply | None = None
        self._playhead = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # ---- lifecycle ----
    async def __aenter__(self) -> Session:
        self._tasks = [asyncio.create_task(self._input_stage(), name="session-input")]
        if self.backends.emotion is not None:
            self._tasks.append(asyncio.create_task(self._emotion_stage(), name="session-emotion"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reply is not None:
            await self._reply.cancel()
            self._finish_reply(self._reply, heard_at=self.now)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- the transport's side ----
    async def push_audio(self, samples: np.ndarray) -> None:
        """One input frame: mono float32 at 16 kHz, at most ``MAX_FRAME_S`` long. Awaits when the queue is full."""
        arr = np.asarray(samples)
        if arr.ndim != 1 or arr.size == 0:
            raise AudioInputError(f"an input frame must be a non-empty mono array, got shape {arr.shape}")
        if arr.size > MAX_FRAME_S * SAMPLE_RATE:
            raise AudioInputError(f"input frame too long: {arr.size} samples (max {int(MAX_FRAME_S * SAMPLE_RATE)})")
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0)
        await self._input.put(arr)

    @property
    def idle(self) -> bool:
        """No turn in progress, no reply pending and no reply audio still to be heard."""
        return (self._reply is None and not self.detector.in_speech and self._input.empty()
                and self._playhead <= self.now)

    async def submit_text(self, text: str) -> None:
        """A typed user turn (``conversation.item.create``): answered like a spoken one, without ASR or emotion."""
        if not text.strip():
            raise AudioInputError("empty text turn")  # the transport reports it; the session goes on
        await self._interrupt("user_text")
        self._turn_emotions = []
        self._turn_index += 1
        trace = TurnTrace(turn=self._turn_index, speech_start_s=self.now, speech_end_s=self.now)
        trace.mark("speech_stopped")
        self._reply = Reply(self, self._turn_index, None, trace, text=text.strip())
        self._reply.start()
        self._reply.commit()

    @property
    def replying(self) -> bool:
        """A reply is in progress (speculative, thinking or speaking)."""
        return self._reply is not None

    async def cancel_response(self) -> None:
        """Stop the current reply now (a client's ``response.cancel``)."""
        await self._interrupt("client_cancel")

    def emit(self, event: SessionEvent) -> None:
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s (is the transport reading events?)", event.type)

    # ---- used by Reply ----
    def turn_emotion(self) -> EmotionResult | None:
        return self.aggregate(list(self._turn_emotions)) if self._turn_emotions else None

    def trajectory(self, current: EmotionResult | None) -> str:
        """improving | declining | stable | volatile over this session's turns, ``current`` included."""
        from attune.backends.emotion.detector import trajectory

        return trajectory([*self.emotion_trajectory, *([current] if current else [])])

    def make_dsp(self, prosody: Any) -> Any:
        factory = self.backends.dsp_factory
        if factory is None or prosody is None or not self.config.expression.apply_prosody:
            return None
        # The provider about to speak applies some dimensions natively (Piper the rate; espeak-ng rate, pitch
        # and volume); the DSP does the rest, so nothing is applied twice.
        if isinstance(prosody, ProsodyParameters):
            planned = getattr(self.backends.tts, "planned_provider", None)
            provider = planned() if callable(planned) else getattr(self.backends.tts, "name", "")
            prosody = prosody.neutralized(*native_dimensions(provider))
        return factory(self.backends.tts.sample_rate, prosody)

    async def schedule_output(self, duration_s: float) -> float:
        """Reserve the next ``duration_s`` of output; returns its stream start time once it is due to be sent
        (at most ``output_lookahead_ms`` ahead of the input clock)."""
        start = max(self._playhead, self.now)
        lookahead = self.settings.output_lookahead_ms / 1000.0
        async with self._clock:
            await self._clock.wait_for(lambda: self.now >= start - lookahead)
        start = max(self._playhead, start)
        self._playhead = start + duration_s
        return start

    # ---- the input stage ----
    async def _input_stage(self) -> None:
        while True:
            frame = await self._input.get()
            if frame is None:
                return
            try:
                await self._take_frame(frame)
            except Exception as exc:  # noqa: BLE001 - a bug must cost a frame, never the session
                log.exception("input stage failed on a frame")
                self.emit(error_event("internal_error", f"{type(exc).__name__}: {exc}"))

    async def _take_frame(self, frame: np.ndarray) -> None:
        self.detector.feed(frame)
        if self._emotion_gate:
            self._queue_emotion(("audio", frame))
        self.now += len(frame) / SAMPLE_RATE
        self._wall_at_now = time.perf_counter()
        async with self._clock:
            self._clock.notify_all()
        for event in self.detector.drain():
            await self._on_turn_event(event)
        await self._check_barge_in()
        await self._reap_reply()

    def _agent_engaged(self) -> bool:
        """A committed reply is pending or playing, or its audio is still being heard."""
        r = self._reply
        return (r is not None and r.committed.is_set()) or self._playhead > self.now + 1e-3

    async def _check_barge_in(self) -> None:
        """Decide a tentative turn (speech that began while the agent was engaged): it interrupts once it lasts
        ``barge_in_min_ms``; it becomes an ordinary turn if the agent finishes first."""
        if not self.detector.in_speech or not self._ignore_turn:
            return
        if not self._agent_engaged():
            self._adopt_turn(barge_in=False)
        elif self.detector.speech_s * 1000.0 >= self.settings.barge_in_min_ms:
            await self._interrupt("barge_in")
            self._adopt_turn(barge_in=True)

    def _adopt_turn(self, *, barge_in: bool) -> None:
        self._ignore_turn = False
        self.emit(SessionEvent(ev.SPEECH_STARTED, {"audio_start_ms": int(self.now * 1000), "barge_in": barge_in}))
        self._open_emotion_gate(self.now, None)  # from here on the agent is silent: the voice is the user's

    async def _interrupt(self, reason: str) -> None:
        reply = self._reply
        at = self.now
        self._playhead = min(self._playhead, at)
        if reply is None:
            return
        await reply.cancel()
        self._finish_reply(reply, heard_at=at, reason=reason)

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, SpeechStarted):
            await self._on_speech_started(event)
        elif isinstance(event, SilenceBegan):
            self._emotion_gate = False
            if not self._ignore_turn:
                self._start_reply(event.audio, event.timestamp_s)
        elif isinstance(event, SpeechResumed):
            if self._reply is not None and not self._reply.committed.is_set():
                await self._reply.cancel()  # speculative work on a turn that is not over: discard it
                self._reply = None
                self._turn_index -= 1
            if not self._ignore_turn:
                self._emotion_gate = True
        elif isinstance(event, SpeechStopped):
            self._emotion_gate = False
            if not self._ignore_turn:
                self.emit(SessionEvent(ev.SPEECH_STOPPED, {"audio_end_ms": int(event.timestamp_s * 1000)}))
        elif isinstance(event, UserTurn):
            self._on_user_turn(event)

    async def _on_speech_started(self, event: SpeechStarted) -> None:
        if self._agent_engaged():
            self._ignore_turn = True  # tentative: a backchannel ("mhm") unless it lasts to barge-in
            return
        self._ignore_turn = False
        self.emit(SessionEvent(ev.SPEECH_STARTED, {"audio_start_ms": int(event.timestamp_s * 1000)}))
        self._open_emotion_gate(event.timestamp_s, self.detector)

    def _start_reply(self, audio: Any, speech_end_s: float) -> None:
        if self._reply is not None:
            return
        self._turn_index += 1
        trace = TurnTrace(turn=self._turn_index, speech_start_s=audio.timestamp_s, speech_end_s=speech_end_s)
        trace.mark("speech_stopped", at=self._wall_at_now - (self.now - speech_end_s))
        self._reply = Reply(self, self._turn_index, audio, trace)
        self._reply.start()

    def _on_user_turn(self, turn: UserTurn) -> None:
        if self._ignore_turn:
            self._ignore_turn = False
            return
        if self._reply is None:
            self._start_reply(turn.audio, turn.end_s)
        assert self._reply is not None
        self._reply.commit()

    async def _reap_reply(self) -> None:
        reply = self._reply
        if reply is not None and reply.done.is_set() and reply.committed.is_set() and self._playhead <= self.now:
            self._finish_reply(reply, heard_at=None)

    def _finish_reply(self, reply: Reply, *, heard_at: float | None, reason: str = "") -> None:
        """Record the turn: history (only what was heard), trajectory, trace; emit done or cancelled."""
        if self._reply is reply:
            self._reply = None
        if not reply.committed.is_set() or (reply.state.status == "empty" and heard_at is None):
            return
        st = reply.state
        interrupted = heard_at is not None
        full = " ".join(st.reply_text)
        if heard_at is not None:
            heard = reply.heard_text(heard_at)
        else:  # a failed reply was heard up to where its audio stopped
            heard = full if st.status == "completed" else reply.heard_text(float("inf"))
        if st.transcript:
            self.memory.add_user(st.user_message or st.transcript)
            self.memory.add_assistant(heard, interrupted=heard != full)
        if st.user_emotion is not None:
            self.emotion_trajectory.append(st.user_emotion)
        status = "cancelled" if interrupted else st.status
        reply.trace.info.update({"transcript": st.transcript, "reply_text": full,
                                 "heard_text": heard, "status": status})
        self.turns.append(reply.trace)
        try:
            self.trace_writer.write(reply.trace)
        except OSError as exc:
            log.warning("cannot write trace: %s", exc)
        data = {"turn": reply.turn, "status": status, "trace": reply.trace.to_dict()}
        if interrupted:
            self.emit(SessionEvent(ev.RESPONSE_CANCELLED, {**data, "reason": reason or "barge_in"}))
        else:
            self.emit(SessionEvent(ev.RESPONSE_DONE, data))

    # ---- the emotion stage ----
    def _open_emotion_gate(self, offset_s: float, detector: TurnDetector | None) -> None:
        if self.backends.emotion is None:
            return
        self._queue_emotion(("reset", offset_s))
        if detector is not None:
            self._queue_emotion(("audio", detector.turn_audio_so_far().samples))
        self._emotion_gate = True

    def _queue_emotion(self, item: tuple[str, Any]) -> None:
        if self.backends.emotion is None:
            return
        try:
            self._emotion_q.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("emotion stage is behind; dropping user audio from analysis")

    async def _emotion_stage(self) -> None:
        detector = self.backends.emotion
        assert detector is not None
        while True:
            items = [await self._emotion_q.get()]
            while not self._emotion_q.empty():
                items.append(self._emotion_q.get_nowait())
            batch: list[np.ndarray] = []
            for kind, value in [*items, ("end", None)]:
                if kind == "audio":
                    batch.append(value)
                    continue
                if batch:
                    await self._analyze(detector, np.concatenate(batch))
                    batch = []
                if kind == "reset":
                    detector.reset_stream()
                    self._emotion_offset = float(value)
                    self._turn_emotions = []

    async def _analyze(self, detector: StreamingEmotion, samples: np.ndarray) -> None:
        try:
            results = await asyncio.to_thread(detector.analyze_streaming, samples, SAMPLE_RATE)
        except BackendError as exc:
            self.emit(error_event("emotion_failed", str(exc), retryable=exc.retryable))
            return
        except Exception as exc:  # noqa: BLE001 - emotion is an extra; the conversation goes on without it
            log.exception("emotion analysis failed")
            self.emit(error_event("emotion_failed", f"{type(exc).__name__}: {exc}"))
            return
        for result in results:
            self._on_emotion(result)

    def _on_emotion(self, result: EmotionResult) -> None:
        off = self._emotion_offset
        if result.stream_start_s is not None and result.stream_end_s is not None:
            result = replace(result, stream_start_s=result.stream_start_s + off, stream_end_s=result.stream_end_s + off)
        self._turn_emotions.append(result)
        self.emit(SessionEvent(ev.EMOTION_MEASUREMENT, result.to_dict()))

