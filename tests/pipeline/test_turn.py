"""Turn detection: the pure TurnDetector driven by an energy VAD, and Silero VAD on real synthetic speech."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from attune.core.audio import FRAME, load_wav, resample
from attune.core.frames import SpeechStarted, SpeechStopped
from attune.pipeline.turn import (
    EnergyVAD,
    SilenceBegan,
    SpeechResumed,
    TurnDetector,
    TurnSettings,
    UserTurn,
)

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out

RATE = 16000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def run(detector: TurnDetector, *parts: np.ndarray) -> list:
    out = []
    for part in parts:
        for i in range(0, len(part), FRAME):  # 20 ms frames, as transports send them
            detector.feed(part[i:i + FRAME])
            out.extend(detector.drain())
    return out


def test_one_turn_with_preroll_and_speculation_signal() -> None:
    d = TurnDetector(EnergyVAD(), TurnSettings(preroll_ms=300, end_of_turn_silence_ms=500, speculate_silence_ms=100))
    events = run(d, silence(1.0), tone(1.0), silence(1.0))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SilenceBegan, SpeechStopped, UserTurn]
    started, began, stopped, turn = events
    assert started.timestamp_s == pytest.approx(1.0 - 0.3, abs=0.04)  # pre-roll included
    assert stopped.timestamp_s == pytest.approx(2.0, abs=0.04)
    assert began.timestamp_s == stopped.timestamp_s
    assert turn.audio.duration_s == pytest.approx(1.3, abs=0.05)
    assert turn.audio.duration_s >= 1.0 + 0.3 - 0.04
    assert np.allclose(turn.audio.samples, began.audio.samples)


def test_short_click_is_not_a_turn_and_pause_resumes() -> None:
    d = TurnDetector(EnergyVAD(), TurnSettings(min_speech_ms=200, end_of_turn_silence_ms=500, speculate_silence_ms=100))
    assert run(d, silence(0.5), tone(0.06), silence(1.0)) == []
    events = run(d, tone(0.6), silence(0.25), tone(0.6), silence(0.7))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SilenceBegan, SpeechResumed, SilenceBegan, SpeechStopped, UserTurn]
    assert events[-1].audio.duration_s > 1.4  # both parts are one turn


def test_speech_duration_and_max_turn() -> None:
    d = TurnDetector(EnergyVAD(), TurnSettings(max_turn_s=2.0))
    run(d, tone(0.5))
    assert d.in_speech and d.speech_s == pytest.approx(0.5, abs=0.04)
    events = run(d, tone(2.0))
    assert any(isinstance(e, UserTurn) for e in events)


@pytest.mark.real
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_silero_finds_spoken_turns(tmp_path) -> None:
    from attune.pipeline.turn import SileroVAD

    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "I had a really long day at work today."], check=True)
    speech, rate = load_wav(wav)
    speech = resample(speech, rate, RATE)
    d = TurnDetector(SileroVAD(), TurnSettings(end_of_turn_silence_ms=500))
    noise = (np.random.default_rng(0).normal(0, 0.003, RATE)).astype(np.float32)  # quiet room noise
    events = run(d, noise, speech, silence(1.0), speech, silence(1.0))
    turns = [e for e in events if isinstance(e, UserTurn)]
    assert len(turns) == 2
    assert turns[0].audio.duration_s == pytest.approx(len(speech) / RATE, abs=0.5)
    assert turns[0].start_s < 1.0 + 0.1  # starts where the speech starts (with pre-roll), not in the noise
    assert turns[0].start_s > 0.4


def test_trim_leading_silence_keeps_the_onset() -> None:
    from attune.core.audio import trim_leading_silence

    rate = 16000
    tone = 0.3 * np.sin(np.arange(rate // 2) * 0.1).astype(np.float32)
    audio = np.concatenate([np.full(rate // 4, 1e-5, np.float32), tone])
    out = trim_leading_silence(audio, rate, keep_s=0.03)
    assert len(audio) - len(out) == rate // 4 - int(0.03 * rate)
    assert np.array_equal(out[-len(tone):], tone)
    quiet = np.full(rate, 1e-5, np.float32)
    assert trim_leading_silence(quiet, rate) is quiet  # no onset: unchanged
    assert len(trim_leading_silence(tone, rate)) == len(tone)  # already starts loud


def test_trim_silence_keeps_the_decay_it_is_told_to() -> None:
    from attune.core.audio import trim_silence

    rate = 16000
    tone = 0.3 * np.sin(np.arange(rate // 2) * 0.1).astype(np.float32)
    hush = np.full(rate // 4, 1e-5, np.float32)
    out = trim_silence(np.concatenate([hush, tone, hush]), rate, keep_before_s=0.03, keep_after_s=0.06)
    assert len(out) == int(0.03 * rate) + len(tone) + int(0.06 * rate)
    assert np.array_equal(out[int(0.03 * rate):][:len(tone)], tone)  # the voice is all there
    quiet = np.full(rate, 1e-5, np.float32)
    assert trim_silence(quiet, rate, keep_after_s=0.0) is quiet  # nothing loud: unchanged
    assert len(trim_silence(tone, rate, keep_after_s=0.0)) == len(tone)  # already starts and ends loud


class _BatchLog:
    """An energy VAD that records how many chunks each model call was given."""

    def __init__(self) -> None:
        self.inner = EnergyVAD()
        self.calls: list[int] = []

    def probability(self, chunk: np.ndarray) -> float:
        self.calls.append(1)
        return self.inner.probability(chunk)

    def probabilities(self, chunks: np.ndarray) -> np.ndarray:
        self.calls.append(len(chunks))
        return np.array([self.inner.probability(c) for c in chunks])

    def reset(self) -> None:
        return None


def test_several_frames_at_once_are_one_vad_call_with_the_same_turns() -> None:
    audio = np.concatenate([silence(0.5), tone(1.0), silence(1.0)])
    one_by_one = run(TurnDetector(EnergyVAD()), audio)
    vad = _BatchLog()
    d = TurnDetector(vad)
    batched = []
    for i in range(0, len(audio), 5 * FRAME):  # 100 ms at a time, as a busy session's input stage hands them over
        d.feed(audio[i:i + 5 * FRAME])
        batched.extend(d.drain())
    assert [type(e) for e in batched] == [type(e) for e in one_by_one]
    assert [getattr(e, "timestamp_s", None) for e in batched] == [getattr(e, "timestamp_s", None) for e in one_by_one]
    assert max(vad.calls) >= 3 and sum(vad.calls) == len(audio) // 512
    assert len(vad.calls) < sum(vad.calls)


def test_silero_batched_probabilities_equal_chunk_by_chunk() -> None:
    from attune.backends.vad import VAD_CHUNK
    from attune.pipeline.turn import SileroVAD

    t = np.arange(VAD_CHUNK * 40) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (t % 0.6 < 0.3)
             + np.random.default_rng(0).normal(0, 0.01, len(t))).astype(np.float32)
    one, many = SileroVAD(), SileroVAD()
    seq = np.array([one.probability(c) for c in audio.reshape(-1, VAD_CHUNK)])
    chunks = audio.reshape(-1, VAD_CHUNK)
    batched = np.concatenate([many.probabilities(chunks[i:i + 7]) for i in range(0, len(chunks), 7)])
    assert seq.max() > 0.1 and seq.max() - seq.min() > 0.05  # the stream has something to tell apart
    np.testing.assert_allclose(batched, seq, rtol=0, atol=1e-6)  # the LSTM state and context carry across calls


def test_a_shorter_end_of_turn_keeps_the_speculative_start_before_it() -> None:
    t = TurnSettings(speculate_silence_ms=96, end_of_turn_silence_ms=400)
    assert t.ending_after(1200) == TurnSettings(speculate_silence_ms=96, end_of_turn_silence_ms=1200)
    assert t.ending_after(100).speculate_silence_ms == 68  # 32 ms before the end, never after it
    assert t.ending_after(40).speculate_silence_ms == 32
    assert t.ending_after(1200, speculate_ms=300).speculate_silence_ms == 300  # a base value may come back
