"""Hearing the turn while it is spoken: Whisper passes over the turn so far every ``partial_step_ms`` of new
speech, the words that successive passes agree on sent out as partial transcripts and evaluated into the LLM's
KV cache (after the voice note, read from the voice so far), and, once silence begins, the end-of-turn model's
verdict.

``TurnListener`` is owned by the session (one turn at a time; ``reset()`` between turns, ``close()`` at the end)
and runs every engine call off the event loop, one at a time, so the passes never fight the reply for the two
cores: a pass or a prefill step is skipped while the session's input is behind (``backlog_frames()`` above
``MAX_BACKLOG_FRAMES``), and while the session sheds work ahead of a reply (``speculate()`` False: the shared LLM
would not admit its reply now, ``pipeline.shedding``); the end-of-turn model, which is cheap, always runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from attune.backends.base import ASRBackend, ChatMessage, LLMBackend
from attune.core.audio import SAMPLE_RATE
from attune.core.emotion import EmotionResult
from attune.core.errors import BackendError
from attune.core.frames import AudioChunk
from attune.pipeline.partial import DecodeSchedule, TranscriptAgreement
from attune.pipeline.understanding import EarlyVoice

log = logging.getLogger(__name__)
MAX_BACKLOG_FRAMES = 3  # input frames waiting beyond which background work yields to real-time input
PREDICT_SILENCE_S = 0.2  # silence the end-of-turn model hears after the last voiced chunk (as Pipecat's 200 ms)
PREFILL_STEP_TOKENS = 4  # tokens per prefill call: the reply never waits longer than one step for the context
# A pass over this much of the turn, with words heard but none settled yet, prefills the voice note and tone alone
# (where they lead the turn): a short turn (a RAVDESS sentence, ~1.5 s of speech) often settles no word before it
# ends, and its note (~20 tokens) was then all evaluated after the speech.
NOTE_ALONE_S = 0.9


# (samples so far, their encoder states, words so far, the early voice) -> the early voice from now on, or None
VoiceReader = Callable[[np.ndarray, "np.ndarray | None", str, "EarlyVoice | None"], "EarlyVoice | None"]


class BackgroundWorker:
    """One worker thread at a lower CPU priority (``nice`` raised by 10 on Linux) for work that must never slow
    real-time input or a reply: partial Whisper passes and KV prefill. On two cores the scheduler then gives the event
    loop (VAD, pacing) and the reply's engines the CPU first.

    Thread pools follow their creator's priority: llama.cpp's OpenMP team belongs to the thread that calls it, so
    prefill calls made here run niced; CTranslate2's workers are created when a model loads and keep that
    thread's priority, so the partial passes, which decode on a sibling handle of the reply's Whisper model
    (``pipeline.stack``), run at normal priority. Where priorities cannot be changed, work still runs.
    """

    def __init__(self, nice: int = 10) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attune-background",
                                        initializer=_lower_priority, initargs=(nice,))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the worker thread and wait for it (blocking: start-up only)."""
        return self._pool.submit(fn, *args).result()

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import functools

        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority(nice: int) -> None:
    import os
    import threading

    try:  # Linux: a thread is a task, and PRIO_PROCESS with its id sets that thread's nice value alone
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError, PermissionError):
        log.debug("cannot lower the background worker's priority here")


class EndOfTurnModel(Protocol):
    def complete_probability(self, samples: np.ndarray) -> float: ...


@dataclass(frozen=True)
class ListenSettings:
    partial_asr: bool = True
    prefill: bool = True
    step_s: float = 0.3
    min_s: float = 0.6


class TurnListener:
    """Feed it the session's view of the turn; read ``probability`` and ``words`` for the end-of-turn policy and
    ``settled`` for the final transcript.

    ``prompt_for(voice, words)`` returns the chat messages of this turn as far as the voice note (of ``voice``)
    and ``words``, the user's words so far (what the reply's prompt will start with); ``emit_delta(text)`` sends
    one partial transcript event. ``voice_so_far()`` is the voice as read so far (None: not yet; the prefill
    waits for it); without it the voice is not read and the note says so. ``read_voice(samples, states, words,
    early)``, where the session reads each whole turn with a head on the ASR's encoder pass, reads the turn so far
    the same way instead, on every pass that settles words or, before any is settled, hears words over at least
    ``NOTE_ALONE_S`` of the turn (asked for its encoder states; the note and tone are then prefilled alone),
    and returns the early voice to use from then on, or None to keep ``early``: a new one only where the reply
    would not keep the old one's note and tone, so the prefill re-evaluates the turn from its note (while the
    person still speaks) only when the answer would change, and the early reading ends close to the whole
    turn's. The voice is kept in
    ``early`` (the reply's prompt keeps its note and tone where they agree with the whole turn's,
    ``EarlyVoice.agrees_with``).
    """

    def __init__(self, asr: ASRBackend, llm: LLMBackend, model: EndOfTurnModel | None, *, settings: ListenSettings,
                 prompt_for: Callable[[EmotionResult | None, str], Sequence[ChatMessage]],
                 emit_delta: Callable[[str], None], backlog_frames: Callable[[], int],
                 worker: BackgroundWorker | None = None,
                 voice_so_far: Callable[[], EmotionResult | None] | None = None,
                 read_voice: VoiceReader | None = None, speculate: Callable[[], bool] | None = None,
                 note_first: bool = False) -> None:
        self.asr = asr
        self.worker = worker
        self.llm = llm if settings.prefill and llm.capabilities.prefill else None
        self.model = model
        self.settings = settings
        self.prompt_for = prompt_for
        self.voice_so_far = voice_so_far
        self.read_voice = read_voice if self.llm is not None else None
        self.early: EarlyVoice | None = None  # the voice whose note the prefill evaluated this turn
        self.emit_delta = emit_delta
        self.backlog_frames = backlog_frames
        self.speculate = speculate or (lambda: True)
        self.agreement = TranscriptAgreement()
        self.schedule = DecodeSchedule(settings.step_s, settings.min_s)
        self.probability: float | None = None  # the model's P(complete) for the current silence
        self.words: str | None = None  # the latest whole-turn transcript known (a pass or the reply's ASR)
        self.prefilled_tokens = 0
        self.passes = 0
        self.shed = 0  # passes due this turn that were not run: the session shed them under load
        self._work: asyncio.Task[None] | None = None
        self._predict: asyncio.Task[None] | None = None
        self._generation = 0  # bumped by reset(): results of an older turn are dropped
        self._held = False  # a reply has taken this turn's prompt: no re-reading or prefill until speech resumes
        # The voice note and tone lead the turn's message (``agent.voice_note_first``), so they are worth
        # prefilling before any word is settled; with the words first nothing of the turn is known by then.
        self.note_first = note_first

    @property
    def settled(self) -> str:
        return self.agreement.settled

    def figures(self) -> dict[str, int]:
        """What was done while this turn was spoken, for its reply's trace."""
        out = {"partial_passes": self.passes, "llm_prefilled_tokens": self.prefilled_tokens}
        if self.shed:
            out["partial_passes_shed"] = self.shed
        return out

    # ---- driven by the session ----
    def on_speech(self, turn_s: float, audio: Callable[[], AudioChunk]) -> None:
        """The turn has ``turn_s`` of audio so far; ``audio()`` returns it (called only when a pass starts).
        Starts a pass when one is due, none is running and the input keeps up."""
        if not self.settings.partial_asr or (self._work is not None and not self._work.done()):
            return
        if not self.schedule.due(turn_s) or self.backlog_frames() > MAX_BACKLOG_FRAMES:
            return
        self.schedule.started(turn_s)  # run or shed, the next pass is a step later
        if not self.speculate():
            self.shed += 1
            return
        self._work = asyncio.create_task(self._pass(audio(), self._generation), name="listen-pass")

    def on_silence(self, audio: AudioChunk) -> None:
        """Silence began: ask the end-of-turn model about ``audio`` (the turn up to its last voiced chunk)."""
        self.probability = None
        if self.model is None:
            return
        pad = np.zeros(int(PREDICT_SILENCE_S * SAMPLE_RATE), np.float32)
        samples = np.concatenate([audio.samples.astype(np.float32, copy=False), pad])
        if self._predict is not None:
            self._predict.cancel()
        self._predict = asyncio.create_task(self._run_model(samples, self._generation), name="listen-eot")

    def hold(self) -> None:
        """A reply has begun on the turn so far (the speculative one, at the silence): it took the early voice and
        the prompt as they are, so a pass still in flight neither reads the voice again nor prefills (a new note
        would evict from the KV cache the prompt the reply is about to extend, and both would meet the reply's
        own ASR pass on the two cores). The person speaking again (``on_resume``) lets the work go on."""
        self._held = True

    def on_resume(self) -> None:
        self._held = False
        self.probability = None
        if self._predict is not None:
            self._predict.cancel()

    def heard(self, words: str) -> None:
        """A whole-turn transcript from elsewhere (the speculative reply's ASR): the newest words known."""
        self.words = words

    def reset(self) -> None:
        """Forget this turn (the next one starts from nothing); work still running is cancelled."""
        self._generation += 1
        for task in (self._work, self._predict):
            if task is not None:
                task.cancel()
        self._work = self._predict = None
        self.agreement.reset()
        self.schedule.reset()
        self.probability = self.words = None
        self.early = None
        self.prefilled_tokens = self.passes = self.shed = 0
        self._held = False

    async def close(self) -> None:
        tasks = [t for t in (self._work, self._predict) if t is not None]
        self.reset()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the work, off the loop ----
    async def _background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.worker is not None:
            return await self.worker.run(fn, *args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _run_model(self, samples: np.ndarray, generation: int) -> None:
        assert self.model is not None
        try:
            p = await asyncio.to_thread(self.model.complete_probability, samples)
        except BackendError as exc:
            log.warning("end-of-turn model failed: %s", exc)
            return
        if generation == self._generation:
            self.probability = p

    async def _pass(self, audio: AudioChunk, generation: int) -> None:
        states = self.read_voice is not None  # the early voice is read again from each pass
        try:
            result = await self._background(self.asr.transcribe, audio, encoder_states=states)
        except (BackendError, ValueError) as exc:
            log.debug("partial pass failed: %s", exc)
            return
        if generation != self._generation or self._held:  # an older turn's, or a reply has newer words
            return
        self.passes += 1
        self.words = result.text.strip()
        delta = self.agreement.push(self.words)
        log.debug("pass %d over %.2f s: %r (settled +%r, backlog %d)", self.passes, audio.duration_s, self.words,
                  delta, self.backlog_frames())
        if delta:
            self.emit_delta(delta)
        if self.agreement.settled or (self.words and audio.duration_s >= NOTE_ALONE_S and self.note_first):
            if states and self.read_voice is not None:
                await self._read_early(audio, result.encoder_states, generation)
            await self._prefill(generation)

    async def _read_early(self, audio: AudioChunk, states: np.ndarray | None, generation: int) -> None:
        """The voice so far, as the reply will read the whole turn (``read_voice``); on failure the windows'."""
        assert self.read_voice is not None
        try:
            early = await self._background(self.read_voice, audio.samples, states, self.words or "", self.early)
        except (BackendError, ValueError, RuntimeError) as exc:
            log.debug("early voice reading failed: %s", exc)
            return
        if generation == self._generation and early is not None and not self._held:
            self.early = early

    async def _prefill(self, generation: int) -> None:
        """Evaluate the voice note and the settled words into the KV cache, a few tokens per step, while input
        keeps up."""
        if self.llm is None or self._held:
            return
        if self.early is None:
            voice = self.voice_so_far() if self.voice_so_far is not None else None
            if voice is None and self.voice_so_far is not None:
                return  # the voice is not read yet: its note leads the turn, so the words wait for it
            self.early = EarlyVoice(voice)
        messages = list(self.prompt_for(self.early.emotion, self.agreement.settled))
        while (generation == self._generation and not self._held and self.backlog_frames() <= MAX_BACKLOG_FRAMES
               and self.speculate()):
            try:
                n = await self._background(self.llm.prefill, messages, max_new=PREFILL_STEP_TOKENS)
            except BackendError as exc:
                log.warning("prefill failed: %s", exc)
                return
            if n <= 0:
                return
            self.prefilled_tokens += n
            log.debug("prefilled %d tokens (%d this turn)", n, self.prefilled_tokens)
