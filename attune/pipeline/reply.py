"""One reply of the agent to one user turn, as three owned stages: think (ASR -> plan -> prompt -> LLM ->
splitter), speak (normalise -> TTS with prosody -> DSP -> output rate) and play (paced output on the stream clock).

A reply may start speculatively when silence begins: it transcribes, prompts and even synthesises, but holds its
events and audio until ``commit()``. Cancelling its task (barge-in, the user resuming) stops all three stages;
``heard_text()`` then says how much of the reply the user actually heard.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from attune.agent.reply_tag import ReplyTagParser
from attune.agent.text_affect import fuse_with_words
from attune.core import events as ev
from attune.core.audio import FRAME_S as OUTPUT_FRAME_S  # s per output event
from attune.core.audio import resample, trim_leading_silence
from attune.core.errors import BackendError
from attune.core.events import SessionEvent, error_event
from attune.core.frames import AudioChunk
from attune.core.normalize import normalize_for_tts
from attune.core.prosody import profile_for
from attune.core.trace import TurnTrace
from attune.pipeline.splitter import SentenceSplitter

if TYPE_CHECKING:
    from attune.agent.brain import ResponsePlanLike
    from attune.core.emotion import EmotionResult
    from attune.pipeline.session import Session

LLM_FAILED_REPLY = "Sorry, I lost my train of thought. Could you say that again?"


@dataclass
class SpokenSpan:
    """Where a sentence's audio sits on the stream clock once played; ``end_s`` grows as frames go out."""

    text: str
    start_s: float
    end_s: float
    complete: bool = False


@dataclass
class _AudioItem:
    index: int
    text: str
    samples: np.ndarray
    last: bool


@dataclass
class ReplyState:
    transcript: str = ""
    user_message: str = ""  # the user turn exactly as the LLM saw it, for the history
    reply_text: list[str] = field(default_factory=list)  # pieces handed to TTS, tag stripped
    spans: dict[int, SpokenSpan] = field(default_factory=dict)
    status: str = "in_progress"  # completed | cancelled | failed | empty
    plan: ResponsePlanLike | None = None
    user_emotion: EmotionResult | None = None


class Reply:
    """Owned by the session: ``start()`` creates its task, ``commit()`` releases it, ``cancel()`` stops it."""

    def __init__(self, session: Session, turn: int, audio: AudioChunk | None, trace: TurnTrace, *,
                 text: str | None = None) -> None:
        self.s = session
        self.turn = turn
        self.audio = audio
        self.text = text  # a typed turn: no audio to transcribe
        self.trace = trace
        self.state = ReplyState()
        self.committed = asyncio.Event()
        self.done = asyncio.Event()
        self.playing = False
        self._held: list[SessionEvent] = []
        self._sentences: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(session.settings.queue_size)
        self._audio: asyncio.Queue[_AudioItem | None] = asyncio.Queue(session.settings.queue_size)
        self.task: asyncio.Task[None] | None = None
        self._prosody: Any = None  # the plan's prosody, or the reply tag's emotion once read
        self._first_audio = asyncio.Event()  # the first sentence is synthesised (or nothing will be)
        self._onset_found = False  # the first audio chunk's leading silence has been trimmed

    # ---- control, called by the session ----
    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"reply-{self.turn}")

    def commit(self) -> None:
        if not self.committed.is_set():
            self.trace.mark("turn_committed")
            self.committed.set()
            held, self._held = self._held, []
            for event in held:
                self.s.emit(event)

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])

    def heard_text(self, at_s: float) -> str:
        """The words the user heard before stream time ``at_s``; a sentence cut midway keeps its played share."""
        words: list[str] = []
        for _, span in sorted(self.state.spans.items()):
            if span.start_s >= at_s:
                break
            duration = span.end_s - span.start_s
            fraction = 1.0 if duration <= 0 else min(1.0, (at_s - span.start_s) / duration)
            if span.complete and fraction >= 1.0:
                words.extend(span.text.split())
            else:
                sentence = span.text.split()
                words.extend(sentence[: int(math.floor(fraction * len(sentence)))])
                break
        return " ".join(words)

    def emit(self, event: SessionEvent) -> None:
        if self.committed.is_set():
            self.s.emit(event)
        else:
            self._held.append(event)

    # ---- the stages ----
    async def _run(self) -> None:
        try:
            if not await self._understand():
                return
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._think())
                tg.create_task(self._speak())
                tg.create_task(self._play())
            if self.state.status == "in_progress":
                self.state.status = "completed"
        except asyncio.CancelledError:
            self.state.status = "cancelled"
            raise
        except BackendError as exc:  # a failure before any reply text: ASR
            self.state.status = "failed"
            self.emit(error_event(f"{_kind(exc)}_failed", str(exc), retryable=exc.retryable, turn=self.turn))
        except Exception as exc:  # noqa: BLE001 - a bug must cost this reply, never the session
            self.state.status = "failed"
            logging.getLogger(__name__).exception("reply %d failed", self.turn)
            self.emit(error_event("internal_error", f"{type(exc).__name__}: {exc}", turn=self.turn))
        finally:
            self.done.set()

    async def _understand(self) -> bool:
        """ASR, the turn's emotion, the plan and the prompt. False when there is nothing to answer."""
        s = self.s
        if self.audio is not None:
            result = await asyncio.to_thread(s.backends.asr.transcribe, self.audio)
            text = result.text.strip()
        else:
            text = self.text or ""
        self.trace.mark("asr_done")
        self.state.transcript = text
        if not text or not any(ch.isalnum() for ch in text):
            self.state.status = "empty"
            return False
        self.emit(SessionEvent(ev.TRANSCRIPT, {"turn": self.turn, "transcript": text}))
        emotion = s.turn_emotion()
        if s.config.agent.fuse_words:
            emotion = fuse_with_words(emotion, text)
        self.state.user_emotion = emotion
        self.emit(SessionEvent(ev.EMOTION_TURN, {"turn": self.turn, "emotion": emotion.to_dict() if emotion else None,
                                                 "context": emotion.to_context_string() if emotion else "",
                                                 "trajectory": s.trajectory(emotion)}))
        plan = s.planner(emotion, s.config.expression.strategy)
        self.state.plan = plan
        self._prosody = plan.prosody
        self.trace.info.update(_plan_info(emotion, plan))
        self.emit(SessionEvent(ev.RESPONSE_CREATED, {"turn": self.turn, **plan.to_dict()}))
        self._messages = s.prompt.build(s.memory, text, emotion, plan)
        self.state.user_message = self._messages[-1].content
        return True

    async def _think(self) -> None:
        s = self.s
        splitter = SentenceSplitter(s.settings.first_clause_min_words)
        tags = ReplyTagParser()
        index = 0
        try:
            stream = s.backends.llm.stream(self._messages, max_tokens=s.config.llm.max_tokens,
                                           temperature=s.config.llm.temperature)
            async for piece in stream:
                if "llm_first_token" not in self.trace.marks:
                    self.trace.mark("llm_first_token")
                    self.trace.info.update(_llm_info(s.backends.llm))
                text = tags.push(piece)
                self._apply_tag(tags)
                for sentence in splitter.push(text):
                    index = await self._queue_sentence(index, sentence)
                if index and s.settings.hold_llm_for_first_audio and not self._first_audio.is_set():
                    # Leave both cores to the first clause's synthesis: the LLM is far ahead of the speech, and
                    # its thread stops once the small token queue between us is full.
                    await self._first_audio.wait()
            for sentence in splitter.push(tags.flush()) + splitter.flush():
                index = await self._queue_sentence(index, sentence)
        except BackendError as exc:
            self.state.status = "failed"
            self.emit(error_event(f"{_kind(exc)}_failed", str(exc), retryable=exc.retryable, turn=self.turn))
            if index == 0:  # nothing said yet: tell the user rather than stay silent
                await self._queue_sentence(index, LLM_FAILED_REPLY)
        finally:
            await self._sentences.put(None)

    def _apply_tag(self, tags: ReplyTagParser) -> None:
        """The reply's own [emotion] tag, once read, sets the expressed emotion's prosody for what follows."""
        if tags.raw_tag is None or "reply_tag" in self.trace.info:
            return
        self.trace.info["reply_tag"] = tags.raw_tag
        plan = self.state.plan
        if tags.emotion is None or plan is None or tags.emotion is plan.expressed_emotion:
            return
        intensity = plan.intensity if isinstance(plan.intensity, (int, float)) else 0.6
        self._prosody = profile_for(tags.emotion, intensity)
        self.trace.info["expressed_emotion"] = tags.emotion.value

    async def _queue_sentence(self, index: int, sentence: str) -> int:
        speakable = normalize_for_tts(sentence)
        if not speakable:
            return index
        self.trace.mark("first_sentence_ready")
        self.state.reply_text.append(sentence)
        await self._sentences.put((index, speakable))
        return index + 1

    async def _speak(self) -> None:
        s = self.s
        try:
            while (item := await self._sentences.get()) is not None:
                index, text = item
                prosody = self._prosody
                dsp = s.make_dsp(prosody)
                pending: np.ndarray | None = None
                async for chunk in s.backends.tts.synthesize(text, prosody):
                    if pending is not None:
                        await self._audio.put(self._item(index, text, pending, False))
                    # DSP and resampling take tens of ms per sentence: off the loop, which paces the output.
                    pending = await asyncio.to_thread(self._to_output, chunk, dsp)
                tail = await asyncio.to_thread(self._to_output, None, dsp, s.backends.tts.sample_rate)
                last = np.concatenate([pending, tail]) if pending is not None else tail
                await self._audio.put(self._item(index, text, last, True))
                self._first_audio.set()
        except BackendError as exc:
            self.state.status = "failed"
            self.emit(error_event(f"{_kind(exc)}_failed", str(exc), retryable=exc.retryable, turn=self.turn))
            while await self._sentences.get() is not None:
                pass  # let think finish; nothing more is spoken
        finally:
            self._first_audio.set()
            await self._audio.put(None)

    def _item(self, index: int, text: str, samples: np.ndarray, last: bool) -> _AudioItem:
        """The reply's first audio starts at the voice's onset: a TTS engine's leading silence is dead air."""
        if not self._onset_found:  # the first chunk only: a sentence is never cut away
            self._onset_found = True
            samples = trim_leading_silence(samples, self.s.settings.output_sample_rate)
        return _AudioItem(index, text, samples, last)

    def _to_output(self, chunk: AudioChunk | None, dsp: Any, rate: int | None = None) -> np.ndarray:
        out_rate = self.s.settings.output_sample_rate
        if chunk is None:
            samples = dsp.flush() if dsp is not None else np.zeros(0, dtype=np.float32)
            src = rate or out_rate
        else:
            samples = dsp.push(chunk.samples) if dsp is not None else chunk.samples
            src = chunk.sample_rate
        samples = np.asarray(samples, dtype=np.float32)
        if samples.size == 0 or src == out_rate:
            return samples
        return resample(samples, src, out_rate)

    async def _play(self) -> None:
        s = self.s
        await self.committed.wait()
        rate = s.settings.output_sample_rate
        step = int(OUTPUT_FRAME_S * rate)
        while (item := await self._audio.get()) is not None:
            for start in range(0, len(item.samples), step):
                frame = item.samples[start:start + step]
                ts = await s.schedule_output(len(frame) / rate)
                self._record_span(item, ts, ts + len(frame) / rate)
                s.emit(SessionEvent(ev.AUDIO_DELTA, {"turn": self.turn, "sentence": item.index},
                                    AudioChunk(frame, rate, ts)))
            if item.last and item.index in self.state.spans:
                self.state.spans[item.index].complete = True

    def _record_span(self, item: _AudioItem, start: float, end: float) -> None:
        span = self.state.spans.get(item.index)
        if span is None:
            self.playing = True
            if self.trace.first_audio_stream_s is None:
                self.trace.first_audio_stream_s = start
                self.trace.mark("first_audio_out")
            self.state.spans[item.index] = SpokenSpan(item.text, start, end)
            self.s.emit(SessionEvent(ev.TRANSCRIPT_DELTA, {"turn": self.turn, "delta": item.text}))
        else:
            span.end_s = end


def _kind(exc: BaseException) -> str:
    name = type(exc).__name__.lower()
    for kind in ("asr", "llm", "tts", "emotion"):
        if name.startswith(kind):
            return kind
    return "backend"


def _llm_info(llm: Any) -> dict[str, int]:
    """The prompt's size and how much of it the KV cache served (llama-cpp), for the trace."""
    out = {}
    for attr, key in (("last_prompt_tokens", "llm_prompt_tokens"), ("last_reused_tokens", "llm_reused_tokens")):
        value = getattr(llm, attr, None)
        if isinstance(value, int):
            out[key] = value
    return out


def _plan_info(emotion: EmotionResult | None, plan: ResponsePlanLike) -> dict[str, Any]:
    return {
        "user_emotion": emotion.primary.emotion.value if emotion else None,
        "user_confidence": round(emotion.confidence, 3) if emotion else None,
        "strategy": plan.strategy,
        "expressed_emotion": plan.expressed_emotion.value,
    }

