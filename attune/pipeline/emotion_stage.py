"""The session's emotion stage: the user's speech, and only the user's, through the streaming emotion detector.

``EmotionStage`` is owned by the session: its gate says whether input frames go to the detector (opened from a
stream time for each turn, closed while the agent speaks), ``run()`` is the task that analyses them in hops, and
``turn_emotions`` holds the readings of the turn so far (what ``TurnContext.window_emotions`` is made of). Each
reading is also sent out as an ``emotion.measurement`` event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE
from attune.core.emotion import EmotionResult
from attune.core.errors import BackendError
from attune.core.events import SessionEvent, error_event

log = logging.getLogger(__name__)
EMOTION_WORKERS = 2  # threads for emotion hops, shared by every session of the process


@functools.cache
def _emotion_pool() -> ThreadPoolExecutor:
    """Emotion hops get threads of their own: in asyncio's default pool they would queue behind ASR and TTS work
    (hundreds of ms each), and with many sessions the hops' lag would grow by seconds."""
    return ThreadPoolExecutor(EMOTION_WORKERS, thread_name_prefix="attune-emotion")


class StreamingEmotion(Protocol):
    """What the session needs of ``attune.backends.emotion.detector.VoiceEmotionDetector``."""

    def analyze_streaming(self, chunk: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[EmotionResult]: ...

    def reset_stream(self) -> None: ...

    def hops_ready(self, n_samples: int) -> int:
        """How many results ``analyze_streaming`` would give for ``n_samples`` more (0: it only buffers)."""
        ...


class EmotionStage:
    """``open(start_s, audio)`` starts a turn's analysis at stream time ``start_s`` (with the turn's audio so far
    from there, if any); ``feed(frame, now_s)`` passes an input frame that starts at ``now_s`` while the gate is
    open (the part before ``start_s`` is dropped); ``gate`` may be set directly to pause and resume."""

    def __init__(self, detector: StreamingEmotion | None, queue_size: int,
                 emit: Callable[[SessionEvent], None]) -> None:
        self.detector = detector
        self.emit = emit
        self.gate = False
        self.turn_emotions: list[EmotionResult] = []
        self.from_s = 0.0  # stream time before which no input reaches the emotion window
        self._offset = 0.0
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(queue_size)

    def open(self, start_s: float, audio: np.ndarray | None, *, keep: bool = False) -> None:
        """``keep``: the turn's windows so far stay (a turn that goes on after a premature commit)."""
        if self.detector is None:
            return
        self.from_s = start_s
        self._put(("reset", (start_s, keep)))
        if audio is not None and len(audio):
            self._put(("audio", audio))
        self.gate = True

    def feed(self, frame: np.ndarray, now_s: float) -> None:
        if not self.gate:
            return
        skip = int(round((self.from_s - now_s) * SAMPLE_RATE))
        if skip < len(frame):
            self._put(("audio", frame[max(0, skip):]))

    def _put(self, item: tuple[str, Any]) -> None:
        if self.detector is None:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("emotion stage is behind; dropping user audio from analysis")

    async def run(self) -> None:
        detector = self.detector
        assert detector is not None
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            batch: list[np.ndarray] = []
            for kind, value in [*items, ("end", None)]:
                if kind == "audio":
                    batch.append(value)
                    continue
                if batch:
                    await self._analyze(detector, np.concatenate(batch))
                    batch = []
                if kind == "reset":
                    start_s, keep = value
                    detector.reset_stream()
                    self._offset = float(start_s)
                    if not keep:
                        self.turn_emotions = []

    async def _analyze(self, detector: StreamingEmotion, samples: np.ndarray) -> None:
        try:
            if detector.hops_ready(len(samples)) == 0:
                # Only buffering until the next hop: a worker-thread round trip per 20 ms frame would cost more
                # (GIL hand-offs) than the copy, and with many sessions it starves the loop.
                results = detector.analyze_streaming(samples, SAMPLE_RATE)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(_emotion_pool(), detector.analyze_streaming, samples, SAMPLE_RATE)
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
        off = self._offset
        if result.stream_start_s is not None and result.stream_end_s is not None:
            result = replace(result, stream_start_s=result.stream_start_s + off, stream_end_s=result.stream_end_s + off)
        self.turn_emotions.append(result)
        self.emit(SessionEvent(ev.EMOTION_MEASUREMENT, result.to_dict()))
