"""The load benchmark's client side: N reference clients stream the same utterance in real time, staggered, to one
server; each session's emotion-event lag and turn latency are measured from the send time of the audio they
describe. A benchmark that prints figures, never a test."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from attune.core.stats import percentile
from attune.transports.client import FRAME_S, ClientRun, stream_file

REALTIME_LAG_S = 1.0  # an emotion hop or an end of turn reported later than this after its audio: real time lost


@dataclass(frozen=True)
class LoadResult:
    sessions: int
    emotion_lag_ms: tuple[float, float, float]  # p50, p95, max: arrival after the hop's last audio was sent
    stop_lag_ms: tuple[float, float, float]  # speech_stopped arrival after the audio proving it was sent
    voice_to_voice_ms: tuple[float, float, float]  # the server's trace, LLM queue included
    llm_wait_ms: tuple[float, float, float]
    hops: int
    turns: int
    failures: int

    @property
    def realtime(self) -> bool:
        return (self.hops > 0 and self.emotion_lag_ms[1] <= REALTIME_LAG_S * 1000
                and self.stop_lag_ms[1] <= REALTIME_LAG_S * 1000 and self.failures == 0)

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "emotion_lag_ms": self.emotion_lag_ms, "stop_lag_ms": self.stop_lag_ms,
                "voice_to_voice_ms": self.voice_to_voice_ms, "llm_queue_wait_ms": self.llm_wait_ms,
                "emotion_hops": self.hops, "turns": self.turns, "failures": self.failures,
                "realtime": self.realtime}


def _sent_at(run: ClientRun, stream_ms: float) -> float | None:
    i = int(np.ceil(stream_ms / 1000.0 / FRAME_S)) - 1
    return run.sent_at[i] if 0 <= i < len(run.sent_at) else None


def lags(run: ClientRun, end_of_turn_silence_ms: float) -> tuple[list[float], list[float]]:
    """(emotion lags, speech-stopped lags) in ms: event arrival minus the send time of the audio it needed."""
    t0 = run.sent_at[0] if run.sent_at else 0.0
    emo, stop = [], []
    for e in run.events:
        if e["type"] == "emotion.measurement" and "audio_end_ms" in e:
            sent = _sent_at(run, float(e["audio_end_ms"]))
            if sent is not None:
                emo.append((t0 + e["t"] - sent) * 1000.0)
        elif e["type"] == "input_audio_buffer.speech_stopped":
            sent = _sent_at(run, float(e["audio_end_ms"]) + end_of_turn_silence_ms)
            if sent is not None:
                stop.append(max(0.0, (t0 + e["t"] - sent) * 1000.0))
    return emo, stop


def _stats(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    return (round(percentile(values, 50), 1), round(percentile(values, 95), 1), round(max(values), 1))


async def run_load(url: str, samples: np.ndarray, rate: int, sessions: int, *, token: str | None = None,
                   stagger_s: float = 0.1, tail_max_s: float = 20.0,
                   end_of_turn_silence_ms: float = 400.0) -> LoadResult:
    """``sessions`` clients, started ``stagger_s`` apart, each streaming ``samples`` once in real time."""
    async def one(i: int) -> ClientRun | BaseException:
        await asyncio.sleep(i * stagger_s)
        try:
            return await stream_file(url, samples, rate, token=token, tail_max_s=tail_max_s)
        except Exception as exc:  # noqa: BLE001 - a failed session is counted, not fatal
            return exc

    runs = await asyncio.gather(*(one(i) for i in range(sessions)))
    emo: list[float] = []
    stop: list[float] = []
    v2v: list[float] = []
    wait: list[float] = []
    failures = 0
    for run in runs:
        if not isinstance(run, ClientRun) or run.close_code not in (1000, None):
            failures += 1
            continue
        e, s = lags(run, end_of_turn_silence_ms)
        emo += e
        stop += s
        for done in run.of("response.done"):
            trace = done.get("trace") or {}
            if isinstance(trace.get("voice_to_voice_ms"), (int, float)):
                v2v.append(float(trace["voice_to_voice_ms"]))
            if isinstance(trace.get("llm_queue_wait_ms"), (int, float)):
                wait.append(float(trace["llm_queue_wait_ms"]))
    return LoadResult(sessions, _stats(emo), _stats(stop), _stats(v2v), _stats(wait), len(emo), len(v2v), failures)
