"""The file transport: streams a recording into a session as if spoken (20 ms frames in real time, then
silence until the agent has finished) and lays the reply audio on the same timeline, ready to write as a WAV.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from attune.core import events as ev
from attune.core.audio import FRAME, FRAME_S, SAMPLE_RATE
from attune.core.events import SessionEvent
from attune.pipeline.session import Session

TAIL_MAX_S = 60.0  # s of silence streamed after the file while nothing happens
TAIL_HARD_CAP_S = 600.0  # s of silence streamed after the file at most, even while a reply is in progress


@dataclass
class FileRun:
    """The session's events and the reply audio on the input's timeline (``output_rate`` Hz): sample 0 of
    ``output`` is session time ``origin_s``, where this recording started (0 in a fresh session), so a long
    session streamed one recording at a time keeps one recording's worth of audio per run, not the session's."""

    output_rate: int
    events: list[SessionEvent] = field(default_factory=list)
    output: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    streamed_s: float = 0.0
    input_lag_s: list[float] = field(default_factory=list)  # per frame sent: real time elapsed - stream processed
    origin_s: float = 0.0

    def place(self, event: SessionEvent) -> None:
        chunk = event.audio
        if chunk is None:
            return
        start = int(round((chunk.timestamp_s - self.origin_s) * self.output_rate))
        samples = chunk.samples[max(0, -start):]  # audio from before this recording began is not on its timeline
        start = max(0, start)
        end = start + len(samples)
        if end > len(self.output):
            self.output = np.concatenate([self.output, np.zeros(end - len(self.output) + self.output_rate,
                                                                 dtype=np.float32)])
        self.output[start:end] += samples


async def stream_file(session: Session, samples: np.ndarray, *, speed: float = 1.0,
                      on_event: Callable[[SessionEvent], None] | None = None,
                      tail_max_s: float = TAIL_MAX_S) -> FileRun:
    """Stream 16 kHz mono ``samples`` at ``speed`` x real time (0 = as fast as possible), then silence until the
    session is idle. The session must already be entered (``async with``). The output starts where the
    recording starts (``FileRun.origin_s`` on the session clock) and covers at least its duration (silence where
    the agent said nothing)."""
    run = FileRun(session.settings.reply.output_sample_rate, origin_s=session.now)
    consumer = asyncio.create_task(_consume(session, run, on_event))
    try:
        await _feed(session, samples, speed, tail_max_s, run.input_lag_s)
        await asyncio.sleep(0)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    while not session.events.empty():
        _take(run, session.events.get_nowait(), on_event)
    run.streamed_s = session.now - run.origin_s
    run.output = run.output[: int(run.streamed_s * run.output_rate) + run.output_rate // 2]
    # Never shorter than the input: with no reply at all the output is silence as long as the recording.
    covered = -(-len(samples) * run.output_rate // SAMPLE_RATE)
    if len(run.output) < covered:
        run.output = np.concatenate([run.output, np.zeros(covered - len(run.output), dtype=np.float32)])
    return run


async def _feed(session: Session, samples: np.ndarray, speed: float, tail_max_s: float,
                lag: list[float]) -> None:
    """The file, then silence until the session is idle. The tail gives up after ``tail_max_s`` of stream time
    with no reply in progress (a reply in progress is waited for, up to ``TAIL_HARD_CAP_S``).

    At real-time speed each frame appends the input lag to ``lag``: the real time since the first frame minus
    the stream time the session has processed, less the frame just sent (0 when the session keeps up)."""
    silence = np.zeros(FRAME, dtype=np.float32)
    t0 = time.perf_counter()
    n_file = -(-len(samples) // FRAME)
    min_tail = int((session.settings.turn.end_of_turn_silence_ms / 1000 + 0.3) * 50)
    i = 0
    while True:
        in_file = i < n_file
        frame = samples[i * FRAME:(i + 1) * FRAME] if in_file else silence
        if len(frame) < FRAME:
            frame = np.concatenate([frame, np.zeros(FRAME - len(frame), dtype=np.float32)])
        await session.push_audio(frame)
        i += 1
        if speed == 1.0:
            lag.append(max(0.0, time.perf_counter() - t0 - session.now - 0.02))
        if speed > 0:
            await asyncio.sleep(max(0.0, t0 + i * FRAME_S / speed - time.perf_counter()))
        else:
            await asyncio.sleep(0.001)
        tail_s = (i - n_file) * FRAME_S
        if in_file or i - n_file < min_tail:
            continue
        if session.idle or tail_s >= TAIL_HARD_CAP_S or (tail_s >= tail_max_s and not session.replying):
            return


async def _consume(session: Session, run: FileRun, on_event: Callable[[SessionEvent], None] | None) -> None:
    while True:
        _take(run, await session.events.get(), on_event)


def _take(run: FileRun, event: SessionEvent, on_event: Callable[[SessionEvent], None] | None) -> None:
    run.events.append(event)
    if event.type == ev.AUDIO_DELTA:
        run.place(event)
    if on_event is not None:
        on_event(event)
