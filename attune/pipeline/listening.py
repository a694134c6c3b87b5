"""Hearing the turn while it is spoken: Whisper passes over the turn so far every ``partial_step_ms`` of new
speech, the words that successive passes agree on sent out as partial transcripts and evaluated into the LLM's
KV cache, and, once silence begins, the end-of-turn model's verdict.

``TurnListener`` is owned by the session (one turn at a time; ``reset()`` between turns, ``close()`` at the end)
and runs every engine call off the event loop, one at a time, so the passes never fight the reply for the two
cores: a pass or a prefill step is skipped while the session's input is behind (``backlog_frames()`` above
``MAX_BACKLOG_FRAMES``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from attune.backends.base import ChatMessage
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import BackendError
from attune.core.frames import AudioChunk
from attune.pipeline.partial import DecodeSchedule, TranscriptAgreement

log = logging.getLogger(__name__)
MAX_BACKLOG_FRAMES = 3  # input frames waiting beyond which background work yields to real-time input
PREDICT_SILENCE_S = 0.2  # silence the end-of-turn model hears after the last voiced chunk (as Pipecat's 200 ms)
PREFILL_STEP_TOKENS = 8  # tokens per prefill call: the reply never waits longer than one step for the context


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

    ``prompt_for(words)`` returns the chat messages of this turn with ``words`` as the user's message so far
    (what the reply's prompt will start with); ``emit_delta(text)`` sends one partial transcript event.
    """

    def __init__(self, asr: Any, llm: Any, model: EndOfTurnModel | None, *, settings: ListenSettings,
                 prompt_for: Callable[[str], Sequence[ChatMessage]], emit_delta: Callable[[str], None],
                 backlog_frames: Callable[[], int]) -> None:
        self.asr = asr
        self.llm = llm if settings.prefill and callable(getattr(llm, "prefill", None)) else None
        self.model = model
        self.settings = settings
        self.prompt_for = prompt_for
        self.emit_delta = emit_delta
        self.backlog_frames = backlog_frames
        self.agreement = TranscriptAgreement()
        self.schedule = DecodeSchedule(settings.step_s, settings.min_s)
        self.probability: float | None = None  # the model's P(complete) for the current silence
        self.words: str | None = None  # the latest whole-turn transcript known (a pass or the reply's ASR)
        self.prefilled_tokens = 0
        self.passes = 0
        self._work: asyncio.Task[None] | None = None
        self._predict: asyncio.Task[None] | None = None
        self._generation = 0  # bumped by reset(): results of an older turn are dropped

    @property
    def settled(self) -> str:
        return self.agreement.settled

    # ---- driven by the session ----
    def on_speech(self, audio: AudioChunk) -> None:
        """The turn so far (voiced, or a pause inside it). Starts a pass when one is due and none is running."""
        if not self.settings.partial_asr or (self._work is not None and not self._work.done()):
            return
        turn_s = len(audio.samples) / SAMPLE_RATE
        if not self.schedule.due(turn_s) or self.backlog_frames() > MAX_BACKLOG_FRAMES:
            return
        self.schedule.started(turn_s)
        self._work = asyncio.create_task(self._pass(audio, self._generation), name="listen-pass")

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

    def on_resume(self) -> None:
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
        self.prefilled_tokens = self.passes = 0

    async def close(self) -> None:
        tasks = [t for t in (self._work, self._predict) if t is not None]
        self.reset()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the work, off the loop ----
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
        try:
            result = await asyncio.to_thread(self.asr.transcribe, audio)
        except (BackendError, ValueError) as exc:
            log.debug("partial pass failed: %s", exc)
            return
        if generation != self._generation:
            return
        self.passes += 1
        self.words = result.text.strip()
        delta = self.agreement.push(self.words)
        if delta:
            self.emit_delta(delta)
            await self._prefill(generation)

    async def _prefill(self, generation: int) -> None:
        """Evaluate the settled words into the KV cache, a few tokens per step, while input keeps up."""
        if self.llm is None:
            return
        messages = list(self.prompt_for(self.agreement.settled))
        while generation == self._generation and self.backlog_frames() <= MAX_BACKLOG_FRAMES:
            try:
                n = await asyncio.to_thread(self.llm.prefill, messages, max_new=PREFILL_STEP_TOKENS)
            except BackendError as exc:
                log.warning("prefill failed: %s", exc)
                return
            if n <= 0:
                return
            self.prefilled_tokens += n
