"""The session's way in: a bounded queue of validated input frames, taken in batches when the loop falls behind.

``push`` checks one frame (mono, non-empty, at most ``MAX_FRAME_S``; NaN/Inf zeroed) and waits while the queue is
full; ``take`` returns the next frame joined with the frames already queued behind it, up to ``INPUT_BATCH_S``.
Frames only queue up when the event loop is behind (many sessions): one step for all of them (one VAD call, one
policy step, one clock wake-up) is how a busy server catches up instead of falling further behind. An idle one
takes each frame alone, as it comes.
"""

from __future__ import annotations

import asyncio

import numpy as np

from attune.core.audio import SAMPLE_RATE
from attune.core.errors import AudioInputError

MAX_FRAME_S = 1.0  # longest frame push_audio accepts
INPUT_BATCH_S = 0.1  # s of queued frames the input stage takes in one step when behind (a client may send 100 ms)


class InputFrames:
    """16 kHz mono float32 frames from the transport to the session's input stage."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[np.ndarray] = asyncio.Queue(size)

    async def push(self, samples: np.ndarray) -> None:
        """One input frame; raises ``AudioInputError`` for a frame that is not one. Awaits when the queue is full."""
        arr = np.asarray(samples)
        if arr.ndim != 1 or arr.size == 0:
            raise AudioInputError(f"an input frame must be a non-empty mono array, got shape {arr.shape}")
        if arr.size > MAX_FRAME_S * SAMPLE_RATE:
            raise AudioInputError(f"input frame too long: {arr.size} samples (max {int(MAX_FRAME_S * SAMPLE_RATE)})")
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0)
        await self._queue.put(arr)

    async def take(self) -> np.ndarray:
        """The next frame, joined with those already waiting behind it (up to ``INPUT_BATCH_S`` in all)."""
        frames = [await self._queue.get()]
        n = len(frames[0])
        while n < INPUT_BATCH_S * SAMPLE_RATE and not self._queue.empty():
            frames.append(self._queue.get_nowait())
            n += len(frames[-1])
        return frames[0] if len(frames) == 1 else np.concatenate(frames)

    def qsize(self) -> int:
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()
