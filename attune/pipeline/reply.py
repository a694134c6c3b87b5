"""One reply of the agent to one user turn, as three owned stages: think (ASR -> understanding -> LLM ->
splitter, ``Sentence`` frames out), speak (``Sentence`` -> TTS -> prosody DSP -> output rate, ``SpeechAudio``
frames out) and play (paced output on the stream clock).

A ``Reply`` depends only on ``ReplyDeps`` (engines, settings, a DSP factory, an output clock, an emit callable and
what understanding needs) and ends in a frozen ``ReplyOutcome`` that the session records. It may start
speculatively when silence begins: it transcribes, prompts and even synthesises, but holds its events and audio
until ``commit()``. Cancelling it (barge-in, the user resuming) stops all three stages; ``outcome(heard_at)`` then
says how much of the reply the user actually heard.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from attune.agent.brain import ResponsePlanLike
from attune.agent.reply_tag import ReplyTagParser
from attune.backends.base import ChatMessage, Completion, TokenStream
from attune.backends.tts.router import speech_of
from attune.core import events as ev
from attune.core.audio import FRAME_S as OUTPUT_FRAME_S  # s per output event
from attune.core.audio import resample, trim_leading_silence
from attune.core.emotion import EmotionCategory, EmotionResult
from attune.core.errors import BackendError, ServerBusy
from attune.core.events import SessionEvent, error_event
from attune.core.frames import AudioChunk, Sentence, SpeechAudio, Transcript
from attune.core.normalize import normalize_for_tts
from attune.core.prosody import ProsodyParameters, profile_for
from attune.core.trace import TurnTrace
from attune.pipeline.acknowledgement import Acknowledgement, EchoFilter
from attune.pipeline.phrases import ACK_INTENSITY, BUSY_REPLY, STORE_MAX_WORDS, PhraseVoice
from attune.pipeline.reply_values import DSPFactory, ProsodyShaper, ReplyDeps, ReplyOutcome, ReplySettings
from attune.pipeline.splitter import SentenceSplitter
from attune.pipeline.understanding import Understanding

if TYPE_CHECKING:
    from attune.pipeline.shedding import Place

__all__ = ["BUSY_REPLY", "LLM_FAILED_REPLY", "DSPFactory", "ProsodyShaper", "Reply", "ReplyDeps", "ReplyOutcome",
           "ReplySettings", "SpokenSpan"]

LLM_FAILED_REPLY = "Sorry, I lost my train of thought. Could you say that again?"
ACK_INDEX = -1  # the sentence index of an acknowledgement's audio (``pipeline.acknowledgement``): before sentence 0


@dataclass
class SpokenSpan:
    """Where a sentence's audio sits on the stream clock once played; ``end_s`` grows as frames go out."""

    text: str
    start_s: float
    end_s: float
    complete: bool = False


@dataclass
class _Progress:
    """What the stages have done so far (the reply's own mutable state; never read outside it)."""

    status: str = "in_progress"
    understood: Understanding | None = None
    transcript: str = ""
    reply_text: list[str] = field(default_factory=list)  # pieces handed to TTS, tag stripped
    spoken: dict[int, str] = field(default_factory=dict)  # sentence index -> the text as synthesised
    spans: dict[int, SpokenSpan] = field(default_factory=dict)
    completion: Completion | None = None  # the LLM call's figures, as it reported them


class Reply:
    """``start()`` creates its task, ``commit()`` releases it, ``cancel()`` stops it, ``outcome()`` reports it."""

    def __init__(self, deps: ReplyDeps, turn: int, audio: AudioChunk | None, trace: TurnTrace, *,
                 text: str | None = None) -> None:
        self.d = deps
        self.turn = turn
        self.audio = audio
        self.text = text  # a typed turn: no audio to transcribe
        self.trace = trace
        self._p = _Progress()
        self._committed = False
        self._held: list[SessionEvent] = []
        self._sentences: asyncio.Queue[Sentence | None] = asyncio.Queue(deps.settings.queue_size)
        self._audio: asyncio.Queue[SpeechAudio | None] = asyncio.Queue(deps.settings.queue_size)
        self._commit = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._prosody: ProsodyParameters | None = None  # the plan's prosody, or the reply tag's emotion once read
        self._expressed: Any = None  # the EmotionCategory that prosody expresses (the speech cache's key)
        self._first_audio = asyncio.Event()  # the first model sentence is synthesised (or nothing will be)
        self._onset_found = False  # the first audio chunk's leading silence has been trimmed
        self._echo: EchoFilter | None = None  # an acknowledgement was played: its sound is not said again

    # ---- control, called by the session ----
    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"reply-{self.turn}")

    def commit(self) -> None:
        if not self._committed:
            self.trace.mark("turn_committed")
            self._committed = True
            self._commit.set()
            held, self._held = self._held, []
            for event in held:
                self.d.emit(event)

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])

    @property
    def transcript_ready(self) -> str | None:
        """The turn's transcript once ASR is done (None before): the words the end-of-turn policy reads."""
        return self._p.transcript if "asr_done" in self.trace.marks else None

    @property
    def sounding(self) -> bool:
        """Its first sound (an acknowledgement) is queued to play at the commit: what lets the end-of-turn policy
        commit a finished sentence sooner (``EndpointSettings.sounded_ms``)."""
        return self._echo is not None

    @property
    def finished(self) -> bool:
        """All three stages are over (its audio may still be playing out on the output clock)."""
        return self.task is not None and self.task.done()

    def outcome(self, heard_at: float | None = None) -> ReplyOutcome:
        """The reply as it ended; ``heard_at`` is the stream time it was cut off (None: it ran its course, and a
        failed reply was heard up to where its audio stopped)."""
        p = self._p
        full = " ".join(p.reply_text)
        if heard_at is not None:
            heard, status = self.heard_text(heard_at), "cancelled"
        else:
            status = p.status
            heard = full if status == "completed" else self.heard_text(float("inf"))
        u = p.understood
        return ReplyOutcome(self.turn, status, self._committed, p.transcript, u.user_message if u else "", full,
                            heard, u.user_emotion if u else None, u.plan if u else None, self.trace, p.completion)

    def heard_text(self, at_s: float) -> str:
        """The words the user heard before stream time ``at_s``; a sentence cut midway keeps its played share."""
        words: list[str] = []
        for _, span in sorted(self._p.spans.items()):
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

    def said_by(self, at_s: float) -> bool:
        """Some of the reply's own words (not its first sound) started playing before stream time ``at_s``."""
        return any(span.start_s < at_s for span in self._p.spans.values())

    def emit(self, event: SessionEvent) -> None:
        if self._committed:
            self.d.emit(event)
        else:
            self._held.append(event)

    # ---- the stages ----
    async def _run(self) -> None:
        p = self._p
        place: Place | None = None
        try:
            try:
                place = self.d.admit() if self.d.admit is not None else None
            except ServerBusy as exc:  # refused before its ASR pass: said at once (``pipeline.shedding``)
                await self._stages(self._refuse(exc))
                return
            if place is not None and place.alone:  # its voice-to-voice is a lone session's (the admission's budget)
                self.trace.info["admitted_alone"] = True
            if place is not None and place.capacity > 0:  # what the governor's sample was admitted at
                self.trace.info["admitted_capacity"] = place.capacity
            if place is not None:  # what the admission reckoned with (the listening cost's sample)
                self.trace.info["admitted_ahead"], self.trace.info["admitted_listening"] = place.ahead, place.listening
            messages = await self._understand()
            if messages is None:
                return
            await self._stages(self._think(messages))
            if p.status == "in_progress":
                p.status = "completed"
        except asyncio.CancelledError:
            p.status = "cancelled"
            raise
        except BackendError as exc:  # a failure before any reply text: ASR
            p.status = "failed"
            self._error(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must cost this reply, never the session
            p.status = "failed"
            logging.getLogger(__name__).exception("reply %d failed", self.turn)
            self.emit(error_event("internal_error", f"{type(exc).__name__}: {exc}", turn=self.turn))
        finally:
            if place is not None:  # its LLM request took it over, or the reply ended before one
                place.release()

    async def _stages(self, think: Coroutine[Any, Any, None]) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(think)
            tg.create_task(self._speak())
            tg.create_task(self._play())

    async def _refuse(self, exc: ServerBusy) -> None:
        """The turn was not admitted: the refusal (``server_busy`` and the short apology) at once, without its
        ASR, emotion or LLM. It is not transcribed, so the conversation does not keep it."""
        self._p.status = "failed"
        self.trace.info["admission"] = "refused"
        self._error(exc)
        neutral = EmotionCategory.NEUTRAL  # as rendered at start-up (``phrases.stock_phrases``): from the cache
        self._prosody, self._expressed = profile_for(neutral, ACK_INTENSITY), neutral
        try:
            await self._queue_sentence(0, BUSY_REPLY)
        finally:
            if not _cancelling():
                await self._sentences.put(None)

    async def _understand(self) -> tuple[ChatMessage, ...] | None:
        """ASR, then the understanding step. None when there is nothing to answer.

        A whole-turn reader that encodes the turn itself (a middle block: ``reads_asr_pass`` False) reads it
        beside the ASR's pass rather than after it, so its ~20 ms of CPU leave the path to the LLM wherever the
        ASR's two threads leave a core idle; one that reuses the ASR's pass must wait for it."""
        reader = self.d.turn_emotion
        beside = (asyncio.create_task(self._turn_emotion(None))
                  if reader is not None and self.audio is not None and not reader.reads_asr_pass else None)
        try:
            transcript, states = await self._transcribe()
            self.trace.mark("asr_done")
            self._p.transcript = transcript.text
            context = self.d.context()
            if reader is not None and self.audio is not None and any(ch.isalnum() for ch in transcript.text):
                emotion = await beside if beside is not None else await self._turn_emotion(states)
                context = replace(context, turn_emotion=emotion)
        finally:
            if beside is not None and not beside.done():  # no words to read it for, or the reply was cancelled
                beside.cancel()
        understood = self.d.understander.understand(transcript, context)
        if understood is None:  # heard as noise: the turn ends here, and says so (no reply follows)
            self._p.status = "empty"
            self.emit(SessionEvent(ev.TRANSCRIPT, {"turn": self.turn, "transcript": transcript.text, "empty": True}))
            return None
        self._p.understood = understood
        emotion, plan = understood.user_emotion, understood.plan
        self.emit(SessionEvent(ev.TRANSCRIPT, {"turn": self.turn, "transcript": transcript.text}))
        self.emit(SessionEvent(ev.EMOTION_TURN, {"turn": self.turn, "emotion": emotion.to_dict() if emotion else None,
                                                 "context": emotion.to_context_string() if emotion else "",
                                                 "trajectory": understood.trajectory}))
        self._prosody, self._expressed = plan.prosody, plan.expressed_emotion
        self.trace.info.update(_plan_info(emotion, plan))
        self.trace.info["llm_early_note"] = understood.early_note
        self.emit(SessionEvent(ev.RESPONSE_CREATED, {"turn": self.turn, **plan.to_dict()}))
        if self.audio is not None and self.d.acknowledge is not None:
            await self._acknowledge(self.d.acknowledge(transcript.text, plan))
        return understood.messages

    async def _acknowledge(self, found: tuple[Acknowledgement, np.ndarray] | None) -> None:
        """Queue the acknowledgement's audio ahead of the reply (played at commit). It is heard, not said by the
        model: no span, no transcript delta, nothing in the reply's text or the conversation memory. The model
        does not know it was said: a reply that opens with the same sound has it taken off (``EchoFilter``), and
        its text (the transcript, the memory) is what was spoken."""
        if found is None:
            return
        ack, samples = found
        self.trace.info["acknowledgement"] = ack.text
        self._echo = EchoFilter(ack.text)
        chunk = AudioChunk(samples, self.d.settings.output_sample_rate)
        await self._audio.put(SpeechAudio(chunk, "cache", (), ACK_INDEX, True))

    async def _transcribe(self) -> tuple[Transcript, np.ndarray | None]:
        """The transcript, and the ASR's encoder pass over the turn where the engine returns it (asked for only
        when a whole-turn emotion reader will use it: not one that reads a middle block, ``reads_asr_pass``)."""
        if self.audio is None:  # a typed turn
            at = self.trace.speech_end_s
            return Transcript((self.text or "").strip(), at, at), None
        audio, reader = self.audio, self.d.turn_emotion
        wanted = reader is not None and reader.reads_asr_pass  # a middle block encodes its own
        result = await asyncio.to_thread(self.d.asr.transcribe, audio, encoder_states=wanted)
        text = Transcript(result.text.strip(), audio.timestamp_s, audio.end_s, result.no_speech_prob)
        return text, result.encoder_states

    async def _turn_emotion(self, states: np.ndarray | None) -> EmotionResult | None:
        """The whole-turn reading (in a worker thread); None, logged, if it fails (the windows' aggregate then)."""
        assert self.d.turn_emotion is not None and self.audio is not None
        reader, audio = self.d.turn_emotion, self.audio
        x = resample(audio.samples, audio.sample_rate, 16000) if audio.sample_rate != 16000 else audio.samples

        def run() -> tuple[EmotionResult, float]:
            t0 = time.process_time()
            r = reader.analyze_turn(np.asarray(x, np.float32), states)
            return r, (time.process_time() - t0) * 1000.0

        try:
            result, cpu_ms = await asyncio.to_thread(run)
        except (BackendError, ValueError, RuntimeError) as exc:
            logging.getLogger(__name__).warning("turn emotion failed, using the windows: %s", exc)
            return None
        self.trace.info["emotion_turn_cpu_ms"] = round(cpu_ms, 1)
        self.trace.info["emotion_turn_reused_encoder"] = states is not None
        return result

    async def _think(self, messages: tuple[ChatMessage, ...]) -> None:
        d = self.d
        splitter = SentenceSplitter(d.settings.first_clause_min_words)
        tags = ReplyTagParser()
        index = 0
        stream: TokenStream | None = None
        try:
            stream = d.llm.stream(list(messages), max_tokens=d.settings.max_tokens,
                                  temperature=d.settings.temperature)
            async for piece in stream:
                if "llm_first_token" not in self.trace.marks:
                    self.trace.mark("llm_first_token")
                    self.trace.info.update(_llm_info(stream.completion))
                text = tags.push(piece)
                self._apply_tag(tags)
                for sentence in splitter.push(text):
                    index = await self._queue_sentence(index, sentence)
                if index > 0 and d.settings.hold_llm_for_first_audio and not self._first_audio.is_set():
                    # Leave both cores to the first clause's synthesis: the LLM is far ahead of the speech. The
                    # stream's gate holds the engine after the token in progress (only not reading would let it
                    # write two more on the same cores, the synthesis taking twice as long).
                    stream.pause()
                    try:
                        await self._first_audio.wait()
                    finally:
                        stream.resume()
            for sentence in splitter.push(tags.flush()) + splitter.flush():
                index = await self._queue_sentence(index, sentence)
        except BackendError as exc:
            self._p.status = "failed"
            self._error(exc)
            if index == 0:  # nothing said yet: tell the user rather than stay silent
                await self._queue_sentence(index, BUSY_REPLY if isinstance(exc, ServerBusy) else LLM_FAILED_REPLY)
        finally:
            self._p.completion = stream.completion if stream is not None else None
            if not _cancelling():  # a cancelled reply's stages all stop: a full queue would never take the marker
                await self._sentences.put(None)

    def _apply_tag(self, tags: ReplyTagParser) -> None:
        """The reply's own [emotion] tag, once read, sets the expressed emotion's prosody for what follows."""
        if tags.raw_tag is None or "reply_tag" in self.trace.info:
            return
        self.trace.info["reply_tag"] = tags.raw_tag
        plan = self._p.understood.plan if self._p.understood else None
        if tags.emotion is None or plan is None or tags.emotion is plan.expressed_emotion:
            return
        intensity = plan.intensity if isinstance(plan.intensity, (int, float)) else 0.6
        self._prosody, self._expressed = profile_for(tags.emotion, intensity), tags.emotion
        self.trace.info["expressed_emotion"] = tags.emotion.value

    async def _queue_sentence(self, index: int, sentence: str) -> int:
        if self._echo is not None:
            sentence = self._echo.push(sentence)
            if self._echo.dropped:
                self.trace.info["echo_dropped"] = self._echo.dropped
        speakable = normalize_for_tts(sentence)
        if not speakable:
            return index
        self.trace.mark("first_sentence_ready")
        self._p.reply_text.append(sentence)
        self._p.spoken[index] = speakable
        await self._sentences.put(Sentence(speakable, index))
        return index + 1

    async def _speak(self) -> None:
        try:
            while (sentence := await self._sentences.get()) is not None:
                await self._speak_sentence(sentence)
                self._first_audio.set()
        except BackendError as exc:
            self._p.status = "failed"
            self._error(exc)
            while await self._sentences.get() is not None:
                pass  # let think finish; nothing more is spoken
        finally:
            self._first_audio.set()
            if not _cancelling():
                await self._audio.put(None)

    async def _speak_sentence(self, sentence: Sentence) -> None:
        """One sentence through TTS and the DSP. The DSP is built from the first chunk, which says which provider
        spoke and what it applied natively; the DSP applies exactly the rest."""
        prosody = self._prosody
        phrases = self._sentence_cache(prosody)
        if phrases is not None and (hit := await phrases.lookup(sentence.text, self._expressed, prosody)):
            cached = SpeechAudio(AudioChunk(np.asarray(hit.samples), hit.sample_rate), "cache", (), sentence.index)
            self.trace.info["cached_sentences"] = self.trace.info.get("cached_sentences", 0) + 1
            await self._audio.put(self._output(sentence, cached, np.asarray(hit.samples), last=True))
            return
        first: SpeechAudio | None = None
        dsp: ProsodyShaper | None = None
        parts: list[np.ndarray] = []
        async for speech in speech_of(self.d.tts, sentence.text, prosody):
            if first is None:
                first, dsp = speech, self._make_dsp(prosody, speech)
            # DSP and resampling take tens of ms per sentence: off the loop, which paces the output. Each chunk is
            # played as it comes (a long sentence's first clause while the engine speaks the rest).
            samples = await asyncio.to_thread(self._to_output, speech.chunk, dsp)
            if samples.size:  # a shaper may hold a chunk's audio back until the next
                parts.append(samples)
                await self._audio.put(self._output(sentence, first, samples, last=False))
        tail = await asyncio.to_thread(self._to_output, None, dsp, self.d.tts.sample_rate)
        parts.append(tail)
        await self._audio.put(self._output(sentence, first, tail, last=True))
        if phrases is not None and len(sentence.text.split()) <= STORE_MAX_WORDS:  # short ones come back
            phrases.keep(sentence.text, self._expressed, prosody, np.concatenate(parts),
                         first.provider if first is not None else "")

    def _sentence_cache(self, prosody: ProsodyParameters | None) -> PhraseVoice | None:
        """The speech cache's voice when it renders sentences as this reply does (the same TTS, rate, and DSP or
        none)."""
        d, phrases = self.d, self.d.phrases
        if phrases is None or not d.settings.cache_sentences or self._expressed is None or phrases.tts is not d.tts:
            return None
        shaped = d.dsp_factory is not None and prosody is not None and d.settings.apply_prosody
        same = shaped == (phrases.dsp_factory is not None and prosody is not None)
        return phrases if same and phrases.out_rate == d.settings.output_sample_rate else None

    def _make_dsp(self, prosody: ProsodyParameters | None, speech: SpeechAudio) -> ProsodyShaper | None:
        factory = self.d.dsp_factory
        if factory is None or prosody is None or not self.d.settings.apply_prosody:
            return None
        return factory(self.d.tts.sample_rate, speech.remaining(prosody))

    def _output(self, sentence: Sentence, spoke: SpeechAudio | None, samples: np.ndarray, *,
                last: bool) -> SpeechAudio:
        """Output-rate audio of ``sentence``. The reply's first audio starts at the voice's onset: a TTS engine's
        leading silence is dead air."""
        rate = self.d.settings.output_sample_rate
        if not self._onset_found and samples.size:  # the first audio only: a sentence is never cut away
            self._onset_found = True
            samples = trim_leading_silence(samples, rate)
        provider, native = (spoke.provider, spoke.native) if spoke is not None else ("", ())
        return SpeechAudio(AudioChunk(samples, rate), provider, native, sentence.index, last)

    def _to_output(self, chunk: AudioChunk | None, dsp: ProsodyShaper | None, rate: int | None = None
                   ) -> np.ndarray:
        out_rate = self.d.settings.output_sample_rate
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
        await self._commit.wait()
        rate = self.d.settings.output_sample_rate
        step = int(OUTPUT_FRAME_S * rate)
        while (item := await self._audio.get()) is not None:
            if item.sentence_index == ACK_INDEX and self._ready_anyway():
                continue
            samples, index = item.chunk.samples, item.sentence_index
            for start in range(0, len(samples), step):
                frame = samples[start:start + step]
                ts = await self.d.schedule_output(len(frame) / rate)
                self._record_span(index, ts, ts + len(frame) / rate)
                self.emit(SessionEvent(ev.AUDIO_DELTA, {"turn": self.turn, "sentence": index},
                                       AudioChunk(frame, rate, ts)))
            if item.last and index in self._p.spans:
                self._p.spans[index].complete = True

    def _ready_anyway(self) -> bool:
        """At the commit, the model's first words are synthesised already (a speculative reply that finished its
        first clause during the end-of-turn wait): its first sound would only delay them, so it is not played,
        unless the model opened with that very sound and it was taken off for it (``EchoFilter``)."""
        if self._audio.empty() or (self._echo is not None and self._echo.dropped):
            return False
        self.trace.info["acknowledgement_skipped"] = self.trace.info.pop("acknowledgement", None)
        return True

    def _record_span(self, index: int, start: float, end: float) -> None:
        span = self._p.spans.get(index)
        if span is None:
            if self.trace.first_audio_stream_s is None:
                self.trace.first_audio_stream_s = start
                self.trace.mark("first_audio_out")
            if index == ACK_INDEX:
                return
            if "first_model_audio_stream_s" not in self.trace.info:
                self.trace.info["first_model_audio_stream_s"] = round(start, 3)  # the model's own first words
            text = self._p.spoken[index]
            self._p.spans[index] = SpokenSpan(text, start, end)
            self.emit(SessionEvent(ev.TRANSCRIPT_DELTA, {"turn": self.turn, "delta": text}))
        else:
            span.end_s = end

    def _error(self, exc: BackendError) -> None:
        if isinstance(exc, ServerBusy):
            self.emit(error_event(exc.code, str(exc), retryable=True, turn=self.turn, retry_after_s=exc.retry_after_s))
        else:
            self.emit(error_event(f"{_kind(exc)}_failed", str(exc), retryable=exc.retryable, turn=self.turn))


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _kind(exc: BaseException) -> str:
    name = type(exc).__name__.lower()
    for kind in ("asr", "llm", "tts", "emotion"):
        if name.startswith(kind):
            return kind
    return "backend"


def _llm_info(c: Completion | None) -> dict[str, float | int | bool]:
    """The call's figures for the trace: the prompt's size, how much of it the KV cache served (llama-cpp), the
    engine's time to its first token and, with a shared LLM, how long the request waited for its turn."""
    if c is None:
        return {}
    out: dict[str, float | int | bool] = {"llm_queue_wait_ms": c.queue_wait_ms, "llm_queued": c.queued}
    if c.prompt_tokens:  # an engine that tokenises here (llama-cpp); a server keeps its prompt to itself
        out.update(llm_prompt_tokens=c.prompt_tokens, llm_reused_tokens=c.reused_tokens)
    if c.ttft_s > 0:
        out["llm_ttft_ms"] = round(1000.0 * c.ttft_s, 1)  # the engine's own time to its first token (lock held)
    return out


def _plan_info(emotion: EmotionResult | None, plan: ResponsePlanLike) -> dict[str, Any]:
    return {
        "user_emotion": emotion.primary.emotion.value if emotion else None,
        "user_confidence": round(emotion.confidence, 3) if emotion else None,
        "user_emotion_reliable": emotion.reliable if emotion else None,  # False: the plan answered it plainly
        "strategy": plan.strategy,
        "expressed_emotion": plan.expressed_emotion.value,
    }
