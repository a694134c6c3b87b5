"""The session runner: audio frames in, events out, one conversation. File, microphone and WebSocket transports
all drive this same object.

Frames (16 kHz mono float32, normally 20 ms) go to ``push_audio()``; the transport reads ``events`` (a bounded
queue of ``SessionEvent``). The session's clock is the input stream: it advances with every frame, and the
reply's audio is paced against it, so a transport must keep sending frames (silence included) while the agent
speaks. Owned tasks: the input stage (turn detection), the emotion stage (user speech only) and at most one
``Reply`` at a time. Who speaks when is decided by the pure ``TurnPolicy``; this module only executes its
decisions, and records each reply's ``ReplyOutcome`` (history, trajectory, trace, done or cancelled). The emotion
stage (``attune.pipeline.emotion_stage``) and the listener (``attune.pipeline.listening``) are its parts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from attune.agent.brain import ResponsePlanLike
from attune.agent.memory import ConversationMemory
from attune.agent.persona import Persona
from attune.agent.text_affect import fuse_with_words
from attune.backends.base import ChatMessage, Completion
from attune.config import Config
from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE
from attune.core.emotion import EmotionResult
from attune.core.errors import AudioInputError
from attune.core.events import SessionEvent, error_event
from attune.core.frames import AudioChunk, Interruption, SpeechStarted
from attune.core.trace import TurnTrace
from attune.pipeline.acknowledgement import Acknowledgement, pick_acknowledgement
from attune.pipeline.emotion_stage import EmotionStage, StreamingEmotion
from attune.pipeline.endpoint import EndOfTurnPolicy
from attune.pipeline.input_frames import MAX_FRAME_S, InputFrames
from attune.pipeline.listening import TurnListener
from attune.pipeline.pacing import paced, paced_endpoint
from attune.pipeline.reply import DSPFactory, Reply, ReplyDeps, ReplyOutcome
from attune.pipeline.session_backends import SessionBackends, SessionChange
from attune.pipeline.settings import SessionSettings
from attune.pipeline.shedding import LoadShedding
from attune.pipeline.stream_clock import StreamClock
from attune.pipeline.turn import (
    SilenceBegan,
    SpeechResumed,
    TurnDetector,
    TurnEvent,
    TurnSettings,
    UserTurn,
    join_turn_audio,
)
from attune.pipeline.turn_policy import (
    AnnounceSpeech,
    AnnounceSpeechEnd,
    CommitReply,
    Decision,
    DiscardReply,
    Listen,
    ListenFrom,
    ReplyPhase,
    ResumeTurn,
    StartReply,
    TurnPolicy,
)
from attune.pipeline.turn_record import TurnRecorder
from attune.pipeline.understanding import (
    Aggregator,
    EarlyVoice,
    TurnContext,
    Understander,
    default_aggregate,
    default_trajectory,
)

log = logging.getLogger(__name__)

__all__ = ["MAX_FRAME_S", "Aggregator", "Session", "SessionBackends", "SessionChange", "SessionSettings",
           "StreamingEmotion", "default_aggregate", "default_dsp_factory"]


def default_dsp_factory() -> DSPFactory:
    from attune.agent.prosody_dsp import ProsodyApplicator

    return ProsodyApplicator


@dataclass(frozen=True)
class CutTurn:
    """A turn committed too early (the person went on): its audio, which the turn that goes on joins, and the
    first sound its cut reply played, heard in the pause (None: it had none), which counts as the turn before's."""

    audio: AudioChunk
    sound: str | None


class Session:
    """Use as ``async with Session(...) as s``: push frames, read ``s.events``; ``s.turns`` holds the traces.

    ``s.settings`` (a ``SessionSettings``, from ``config`` and ``persona``) and ``s.backends`` (its engines and
    voice) are what the session runs by; ``apply(change)`` is the one way either changes while it runs."""

    def __init__(self, config: Config, backends: SessionBackends, *, persona: Persona | None = None) -> None:
        self.config = config
        self.backends = backends
        self.settings = self._paced(SessionSettings.from_config(config, persona))
        self.aggregate = backends.aggregate or default_aggregate()
        self.prompt = self.settings.prompt_builder()
        self.detector = TurnDetector(backends.vad, self._turn_settings(self.settings))
        self.policy = TurnPolicy(self.settings.policy)
        self.shedding = LoadShedding(backends.admission)  # work ahead of a reply, under load (``pipeline.shedding``)
        self.endpoint: EndOfTurnPolicy | None = None
        self.listener: TurnListener | None = None
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue(self.settings.event_queue_size)
        self.record = TurnRecorder(config.agent.history_max_tokens, config.resolve_path(config.logging.trace_path)
                                   if config.logging.trace_path else None)
        self.clock = StreamClock()
        self._input = InputFrames(self.settings.queue_size)
        self.emotion = EmotionStage(backends.emotion, self.settings.queue_size * 4, lambda e: self.emit(e))
        self._turn_index = 0
        self._barge_in = False  # the turn in progress began by interrupting the agent
        self._speculated = True  # False: the pause in progress started no speculative reply (shed under load)
        self._heard: dict[str, int] = {}  # the listener's figures for the turn that just ended
        self._cut: CutTurn | None = None  # a prematurely committed turn: the next turn goes on from it
        self._reply: Reply | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._discarded: set[asyncio.Task[None]] = set()  # cancelled speculative replies, until they end
        self._closed = False
        self.on_overflow: Callable[[SessionEvent], None] | None = None
        self._listen(self.settings)

    # ---- what the transports and the lab read ----
    @property
    def now(self) -> float:
        """The stream clock: seconds of input received."""
        return self.clock.now

    @property
    def echo_tail_s(self) -> float:
        """Set by a transport whose microphone hears its speaker (see ``note_agent_audio``)."""
        return self.clock.echo_tail_s

    @echo_tail_s.setter
    def echo_tail_s(self, seconds: float) -> None:
        self.clock.echo_tail_s = seconds

    @property
    def turns(self) -> list[TurnTrace]:
        return self.record.turns

    @property
    def memory(self) -> ConversationMemory:
        return self.record.memory

    @property
    def emotion_trajectory(self) -> list[EmotionResult]:
        return self.record.trajectory

    @property
    def last_completion(self) -> Completion | None:
        return self.record.last_completion

    def apply(self, change: SessionChange) -> None:
        """Run by ``change`` from now on: its voice from the next reply; its settings' turn thresholds and barge-in
        from the next frame, the rest from the next reply (the one in progress keeps what it started with).
        Queue bounds are fixed when the session opens."""
        if change.voice is not None:
            self.backends = replace(self.backends, voice=change.voice)
        if change.settings is not None:
            self._settle(change.settings)

    def _settle(self, settings: SessionSettings) -> None:
        settings = self._paced(settings)
        if settings.prompt_key != self.settings.prompt_key:
            self.prompt = settings.prompt_builder()
        self.settings = settings
        self.detector.configure(self._turn_settings(settings))
        self.policy.settings = settings.policy
        self._listen(settings)

    def _paced(self, settings: SessionSettings) -> SessionSettings:
        """The first clause's length and the end of turn's free wait for this machine's measured LLM speed
        (``pipeline.pacing``)."""
        speed = self.backends.measured.llm_speed
        reply = paced(settings.reply, speed)
        endpoint = paced_endpoint(settings.endpoint, speed, speculate_ms=settings.turn.speculate_silence_ms,
                                  clause_words=reply.first_clause_min_words, note_first=settings.voice_note_first,
                                  acknowledgements=settings.reply.acknowledgements)
        if reply is settings.reply and endpoint is settings.endpoint:
            return settings
        return replace(settings, reply=reply, endpoint=endpoint)

    def _predicted(self, settings: SessionSettings) -> bool:
        return settings.endpoint is not None and self.backends.end_of_turn is not None

    def _turn_settings(self, settings: SessionSettings) -> TurnSettings:
        """With a predicted end of turn, the detector's own silence timeout is the longest wait (an unfinished
        turn's); the policy ends a finished one sooner."""
        if settings.endpoint is None or self.backends.end_of_turn is None:
            return settings.turn
        return replace(settings.turn, end_of_turn_silence_ms=settings.endpoint.unfinished_ms)

    def _listen(self, settings: SessionSettings) -> None:
        """(Re)build the end-of-turn policy and the listener for ``settings`` (a turn in progress starts over)."""
        b, predicted = self.backends, self._predicted(settings)
        self.endpoint = EndOfTurnPolicy(settings.endpoint) if predicted and settings.endpoint else None
        if self.listener is not None:
            self.listener.reset()
        if not predicted and not settings.listen.partial_asr:
            self.listener = None
            return
        self.listener = TurnListener(
            b.listen_asr or b.asr, b.llm, b.end_of_turn if predicted else None, settings=settings.listen,
            prompt_for=self._prompt_so_far, emit_delta=self._emit_partial,
            backlog_frames=lambda: self._input.qsize(), worker=b.background, speculate=lambda: self.shedding.speculate,
            voice_so_far=self._voice_so_far if b.emotion is not None and settings.voice_note_first else None,
            read_voice=self._read_voice if b.emotion is not None and b.turn_emotion is not None
            and settings.voice_note_first else None, note_first=settings.voice_note_first)

    # ---- lifecycle ----
    async def __aenter__(self) -> Session:
        self._tasks = [asyncio.create_task(self._input_stage(), name="session-input")]
        if self.backends.emotion is not None:
            self._tasks.append(asyncio.create_task(self.emotion.run(), name="session-emotion"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.shedding.mid_turn(False)
        if self._reply is not None:
            await self._end_reply(self._reply, heard_at=self.now, reason="session_closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._discarded, return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()

    # ---- the transport's side ----
    async def push_audio(self, samples: np.ndarray) -> None:
        """One input frame: mono float32 at 16 kHz, at most ``MAX_FRAME_S`` long (``AudioInputError`` otherwise).
        Awaits when the queue is full."""
        await self._input.push(samples)

    @property
    def idle(self) -> bool:
        """No turn in progress, no reply pending and no reply audio still to be heard."""
        return (self._reply is None and not self.detector.in_speech and self._input.empty()
                and self.clock.played_out)

    async def submit_text(self, text: str) -> None:
        """A typed user turn (``conversation.item.create``): answered like a spoken one, without ASR or emotion."""
        if not text.strip():
            raise AudioInputError("empty text turn")  # the transport reports it; the session goes on
        await self._execute(self.policy.on_text(text.strip(), self.now))

    @property
    def replying(self) -> bool:
        """A reply is in progress (speculative, thinking or speaking)."""
        return self._reply is not None

    async def cancel_response(self) -> None:
        """Stop the current reply now (a client's ``response.cancel``)."""
        await self._execute(self.policy.interrupt(self.now, "client_cancel"))

    def note_agent_audio(self, until_s: float) -> None:
        """The transport itself played agent audio (a kiosk's greeting) heard until stream time ``until_s``.
        Like a reply's audio, it and ``echo_tail_s`` after it are kept out of the emotion window."""
        self.clock.note_agent_audio(until_s)

    def emit(self, event: SessionEvent) -> None:
        """Queue an event for the transport. A full queue is never silent: ``on_overflow`` (set by a transport
        that must not lose events, e.g. the WebSocket server, which then closes the connection) is told."""
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            if self.on_overflow is not None:
                self.on_overflow(event)
            else:
                log.warning("event queue full; dropping %s (is the transport reading events?)", event.type)

    def emit_for_reply(self, event: SessionEvent) -> None:
        """Emit through the current reply, so that a speculative reply's event waits for its commit."""
        if self._reply is not None:
            self._reply.emit(event)
        else:
            self.emit(event)

    async def respond(self) -> bool:
        """A client's ``response.create`` with ``PolicySettings.auto_respond`` off: start the reply to the turn
        held since it ended. False when no turn is held."""
        decisions = self.policy.respond()
        await self._execute(decisions)
        return bool(decisions)

    def hold_turn(self, samples: np.ndarray) -> None:
        """A client's recorded user turn (16 kHz mono; a Realtime audio item): held like an ended turn, answered
        at ``respond()``. It is not on the input stream, so it has no emotion windows of its own."""
        audio = AudioChunk(np.asarray(samples, dtype=np.float32), SAMPLE_RATE, max(0.0, self.now - len(samples)
                                                                                    / SAMPLE_RATE))
        self.policy.hold(audio, self.now)

    def revise_heard(self, heard_text: str) -> bool:
        """A client played less of the last reply than the stream clock counts (``conversation.item.truncate``):
        the history keeps ``heard_text`` as that reply (shorter only). False when it would not shorten it."""
        return self.memory.shorten_last_assistant(heard_text)

    def commit_input(self) -> bool:
        """Push-to-talk (``input_audio_buffer.commit``): end the user's turn now; its events follow with the next
        frame. False when nothing was heard since the last turn."""
        return self.detector.end_turn()

    async def clear_input(self) -> None:
        """``input_audio_buffer.clear``: forget what was heard of the turn in progress and any speculative reply."""
        self.detector.reset()
        self._cut = None
        await self._execute(self.policy.clear())

    # ---- what a reply is given ----
    def _reply_deps(self, early: EarlyVoice | None = None) -> ReplyDeps:
        st, b = self.settings, self.backends
        understander = Understander(b.planner, self.aggregate, default_trajectory(), self.prompt,
                                    strategy=st.strategy, fuse_words=st.fuse_words)
        return ReplyDeps(b.asr, b.llm, b.tts, understander, st.reply, functools.partial(self._turn_context, early),
                         self.schedule_output,
                         self.emit, b.dsp_factory, turn_emotion=b.turn_emotion if b.emotion is not None else None,
                         phrases=b.voice.phrases,
                         acknowledge=self._acknowledgement if st.reply.acknowledgements else None,
                         admit=self.shedding.admit)

    def _acknowledgement(self, words: str, plan: ResponsePlanLike) -> tuple[Acknowledgement, np.ndarray] | None:
        """The first sound for this turn (``pipeline.acknowledgement``): never over a barge-in, never as the last
        recorded turn's. A turn that went on after a premature commit counts the sound heard in its pause as the
        one before it: it gets another (never the same) when the rules allow, so the person who finished is not
        left in silence until the model's words."""
        st, b = self.settings, self.backends
        previous = [t.info.get("acknowledgement") for t in self.turns]
        if self._cut is not None:
            previous.append(self._cut.sound)
        return pick_acknowledgement(
            words, plan, phrases=b.voice.phrases, tts=b.tts, output_rate=st.reply.output_sample_rate,
            previous=previous, speed=b.measured.llm_speed, clause_words=st.reply.first_clause_min_words,
            barge_in=self._barge_in)

    def _turn_context(self, early: EarlyVoice | None = None) -> TurnContext:
        return TurnContext(tuple(self.emotion.turn_emotions), tuple(self.emotion_trajectory),
                           tuple(self.memory.messages()), early_voice=early)

    async def schedule_output(self, duration_s: float) -> float:
        """Reserve the next ``duration_s`` of output; returns its stream start time once it is due to be sent
        (at most ``output_lookahead_ms`` ahead of the input clock)."""
        return await self.clock.schedule_output(duration_s, self.settings.output_lookahead_ms / 1000.0)

    # ---- the input stage ----
    async def _input_stage(self) -> None:
        while True:
            frame = await self._input.take()
            try:
                await self._take_frame(frame)
            except Exception as exc:  # noqa: BLE001 - a bug must cost a frame, never the session
                log.exception("input stage failed on a frame")
                self.emit(error_event("internal_error", f"{type(exc).__name__}: {exc}"))

    async def _take_frame(self, frame: np.ndarray) -> None:
        self.detector.feed(frame)
        self.emotion.feed(frame, self.now)
        await self.clock.advance(len(frame) / SAMPLE_RATE)
        for event in self.detector.drain():
            await self._on_turn_event(event)
        if self._hear_turn():  # the end-of-turn policy ended the turn: the detector holds its events
            for event in self.detector.drain():
                await self._on_turn_event(event)
        self.shedding.mid_turn(self.detector.in_speech)  # the host's turns in progress (``pipeline.shedding``)
        await self._execute(self.policy.on_frame(in_speech=self.detector.in_speech, speech_s=self.detector.speech_s,
                                                 audible=self._audible(), now_s=self.now,
                                                 unanswered=self._unanswered()))
        await self._reap_reply()

    async def _on_turn_event(self, event: TurnEvent) -> None:
        listener = self.listener
        if listener is not None and not self.policy.tentative:
            if isinstance(event, SpeechStarted | UserTurn):
                self._heard = listener.figures()  # a reply started at the turn's end reports them
                listener.reset()  # a new turn starts from nothing; an ended one is forgotten
            elif isinstance(event, SilenceBegan):
                listener.on_silence(event.audio)
            elif isinstance(event, SpeechResumed):
                listener.on_resume()
        speculate = True
        if isinstance(event, SilenceBegan):  # asked only where it decides something: a speculative reply
            speculate = self._speculated = self.shedding.speculate
        elif isinstance(event, SpeechStarted):
            self._speculated = True
        await self._execute(self.policy.on_turn_event(event, audible=self._audible(), speculate=speculate))

    def _hear_turn(self) -> bool:
        """While the user speaks, partial passes; in a pause, the end-of-turn decision. True when the policy ended
        the turn (the detector then holds its SpeechStopped and UserTurn)."""
        d, listener = self.detector, self.listener
        if listener is None or not d.in_speech or self.policy.tentative:
            return False
        if d.silence_s * 1000.0 < self.settings.turn.speculate_silence_ms:
            if d.silence_s == 0.0:  # passes begin on speech: one begun in the silence would still be running
                listener.on_speech(d.turn_s, d.turn_audio_so_far)  # beside the reply's own pass over the same words
            return False
        reply = self._reply
        words = reply.transcript_ready if reply is not None else None
        if self.endpoint is None or (reply is None and self._speculated) or (reply is not None and words is None):
            return False  # the words are not known yet: wait for them (or for the longest silence)
        # No reply because none was started for this pause (shed under load): the end-of-turn model alone decides.
        wait_ms = self.endpoint.required_silence_ms(listener.probability, words,
                                                    sounded=reply is not None and reply.sounding)
        if d.silence_s * 1000.0 < wait_ms:
            return False
        p = listener.probability
        if reply is not None:
            reply.trace.info.update({"eot_probability": None if p is None else round(p, 3), "eot_wait_ms": wait_ms})
        return d.end_turn()

    def _prompt_so_far(self, voice: EmotionResult | None, words: str) -> list[ChatMessage]:
        """This turn's prompt as far as the user's settled words, after the note and tone of ``voice`` where they
        lead (what the reply's prompt will start with: ``Understander.understand``)."""
        plan = EarlyVoice(voice).plan(self.backends.planner, self.settings.strategy)
        return [*self.prompt.prefix(), *self.memory.messages(), self.prompt.turn_start(voice, plan, words)]

    def _read_voice(self, samples: np.ndarray, states: np.ndarray | None, words: str,
                    early: EarlyVoice | None) -> EarlyVoice | None:
        """The turn so far read as the reply reads a whole turn (the turn-emotion head on the partial pass's
        encoder states, fused with the words so far where the session fuses them): a new early voice where the
        reply would not keep ``early``'s note and tone for it, else None. Blocking (a worker thread)."""
        assert self.backends.turn_emotion is not None
        read = self.backends.turn_emotion.analyze_turn(np.asarray(samples, np.float32), states)
        voice = fuse_with_words(read, words) if self.settings.fuse_words and words else read
        if early is not None:
            planner, strategy = self.backends.planner, self.settings.strategy
            if early.agrees_with(voice, early_plan=early.plan(planner, strategy), final_plan=planner(voice, strategy)):
                return None
        return EarlyVoice(voice)

    def _voice_so_far(self) -> EmotionResult | None:
        """The turn's emotion windows so far, aggregated (None before the first)."""
        windows = self.emotion.turn_emotions
        return self.aggregate(list(windows)) if windows else None

    def _emit_partial(self, delta: str) -> None:
        self.emit(SessionEvent(ev.TRANSCRIPT_PARTIAL, {"turn": self._turn_index + 1, "delta": delta}))

    def _audible(self) -> bool:
        """Reply audio is still being heard at the current stream time."""
        return self.clock.audible

    def _unanswered(self) -> bool:
        """The reply in progress answers a spoken turn and none of its words had begun when the person's new
        speech did (its first sound may have): speech now means the turn was committed too early. The new speech
        begins where its audio is kept from (``preroll_ms`` before the voice, 300 ms by default), so a voice that
        began within about that long of the first words goes on with the turn: no one stops for a word in less
        time, and the client plays it some tens of ms after it is sent. A reply ready at the commit (its first
        clause synthesised during the end-of-turn wait) otherwise had its first word heard 0.1 s before a person
        who was only pausing went on, and the turn was cut in two (the pause set's p09, docs/BENCHMARKS.md)."""
        reply = self._reply
        return (reply is not None and reply.audio is not None
                and not reply.said_by(min(self.now, self.policy.tentative_from)))

    # ---- executing the policy's decisions ----
    async def _execute(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, AnnounceSpeech):
                data: dict[str, Any] = {"audio_start_ms": int(d.at_s * 1000)}
                if d.barge_in is not None:
                    data["barge_in"] = d.barge_in
                self._barge_in = bool(d.barge_in)  # the turn that starts here interrupted the agent
                self.emit(SessionEvent(ev.SPEECH_STARTED, data))
            elif isinstance(d, AnnounceSpeechEnd):
                self.emit(SessionEvent(ev.SPEECH_STOPPED, {"audio_end_ms": int(d.at_s * 1000)}))
            elif isinstance(d, ListenFrom):
                self._open_emotion_gate(d.offset_s, with_turn_so_far=d.with_turn_so_far, keep=d.resumed)
            elif isinstance(d, Listen):
                self.emotion.gate = d.on
            elif isinstance(d, StartReply):
                self._start_reply(d)
            elif isinstance(d, CommitReply):
                if self._reply is not None:
                    self._reply.commit()
            elif isinstance(d, DiscardReply):
                await self._discard_reply()
            elif isinstance(d, Interruption):
                await self._interrupt(d)
            elif isinstance(d, ResumeTurn):
                await self._resume(d)

    def _start_reply(self, d: StartReply) -> None:
        self._turn_index += 1
        if d.audio is None:  # a typed turn: no speech, no emotion of its own; it ends as it arrives
            self.emotion.turn_emotions = []
            trace = TurnTrace(turn=self._turn_index, speech_start_s=self.now, speech_end_s=self.now)
            trace.mark("speech_stopped")
            self._cut = None  # a typed turn answers on its own
        else:
            end, joined = d.speech_end_s, self._cut.audio if self._cut is not None else None
            audio = d.audio if joined is None else join_turn_audio(joined, d.audio)  # one turn goes on: one reply
            d = replace(d, audio=audio)
            trace = TurnTrace(turn=self._turn_index, speech_start_s=audio.timestamp_s, speech_end_s=end)
            trace.mark("speech_stopped", at=self.clock.wall_of(end))
            if joined is not None:
                trace.info["resumed"] = True
            if not self._speculated:
                trace.info["speculation_shed"] = True
        early = self.listener.early if self.listener and d.audio is not None and self.prompt.note_first else None
        self._reply = Reply(self._reply_deps(early), self._turn_index, d.audio, trace, text=d.text)
        if self.listener is not None and d.audio is not None:
            self.listener.hold()  # the reply takes the prompt as it is now (``TurnListener.hold``)
            trace.info.update(self._heard if d.commit else self.listener.figures())  # what was heard meanwhile
        self._reply.start()
        if d.commit:
            self._reply.commit()

    async def _discard_reply(self) -> None:
        """Speculative work on a turn that is not over: cancel it and forget its turn number, without waiting
        here (an LLM thread may take a moment to let go of the model; real-time input must not wait for it).
        The session owns the cancelled task until it has ended."""
        reply = self._reply
        if reply is not None:
            if reply.task is not None and not reply.task.done():
                reply.task.cancel()
                self._discarded.add(reply.task)
                reply.task.add_done_callback(self._discarded.discard)
            self._reply = None
            self._turn_index -= 1

    async def _interrupt(self, cut: Interruption) -> None:
        self.clock.cut(cut.timestamp_s)
        if self._reply is not None:
            await self._end_reply(self._reply, heard_at=cut.timestamp_s, reason=cut.reason)

    async def _resume(self, d: ResumeTurn) -> None:
        """A premature commit: the reply stops now (its first sound with it) and is not kept (nothing of it enters
        the history, the trajectory or the turns); its turn number and audio pass to the turn that goes on."""
        self.clock.cut(d.at_s)
        reply = self._reply
        if reply is None:
            return
        await reply.cancel()
        self._reply = None
        self.policy.reply_finished()
        self._turn_index -= 1
        self._cut = CutTurn(reply.audio, reply.trace.info.get("acknowledgement")) if reply.audio is not None else None
        if self.listener is not None:
            self.listener.reset()  # what it heard ended the turn too early; it listens to the rest afresh
        self.emit(self.record.dropped(reply.outcome(d.at_s), "premature_commit"))

    async def _reap_reply(self) -> None:
        reply = self._reply
        if (reply is not None and reply.finished and self.policy.phase is ReplyPhase.COMMITTED
                and self.clock.played_out):
            await self._end_reply(reply, heard_at=None)

    # ---- recording a reply ----
    async def _end_reply(self, reply: Reply, *, heard_at: float | None, reason: str = "") -> None:
        await reply.cancel()
        if self._reply is reply:
            self._reply = None
            self._cut = None  # the resumed turn is answered (or cut off): it is in the history now
            self.policy.reply_finished()
        self._record(reply.outcome(heard_at), reason)

    def _record(self, outcome: ReplyOutcome, reason: str) -> None:
        """History (only what was heard), trajectory, trace; emit done or cancelled."""
        event = self.record.record(outcome, reason)
        if event is not None:
            self.emit(event)

    def _open_emotion_gate(self, offset_s: float, *, with_turn_so_far: bool, keep: bool = False) -> None:
        """Analyse the user's voice from ``offset_s`` (with the detector's turn audio so far, which starts there),
        but never what precedes ``_echo_free_from()``: the agent's own voice and its echo are not the user's."""
        if self.backends.emotion is None:
            return
        start = max(offset_s, self.clock.echo_free_from())
        audio = None
        if with_turn_so_far:
            skip = int(round((start - offset_s) * SAMPLE_RATE))
            audio = self.detector.turn_audio_so_far().samples[skip:]
        self.emotion.open(start, audio, keep=keep)
