"""What a networked client needs of the session, as stage tests through the fakes' Driver: push-to-talk commit
and clear, new turn thresholds at run time, a cancel that never hangs on a full audio queue, and an event queue
that overflows loudly."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np

from attune.core import events as ev
from attune.core.events import SessionEvent
from attune.pipeline.turn import EnergyVAD, TurnDetector, TurnSettings, UserTurn
from tests.fakes import Driver, Harness, ScriptedLLM

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out


def _done(events: list[SessionEvent]) -> bool:
    return any(e.type == ev.RESPONSE_DONE for e in events)


async def test_commit_ends_the_turn_without_the_end_of_turn_silence() -> None:
    h = Harness(overrides={"pipeline": {"end_of_turn_silence_ms": 5000}})
    async with h.session() as s:
        d = Driver(s)
        assert not s.commit_input()  # nothing heard yet
        await d.speak(0.8)
        await d.silence(0.2)
        assert s.commit_input()
        await d.silence_until(_done, max_s=3.0)  # well before 5 s of silence
    assert d.types().count(ev.SPEECH_STOPPED) == 1 and len(h.asr.calls) == 1


async def test_clear_forgets_the_turn_and_its_speculative_reply() -> None:
    h = Harness(overrides={"pipeline": {"end_of_turn_silence_ms": 1000}})
    async with h.session() as s:
        d = Driver(s)
        await d.speak(0.8)
        await d.silence(0.3)  # speculation has begun
        await s.clear_input()
        await d.silence(1.5)
        assert not d.of(ev.SPEECH_STOPPED) and not d.of(ev.RESPONSE_DONE)
        assert not s.replying
        await d.speak(0.6)
        await d.silence_until(_done)
    assert d.types().count(ev.RESPONSE_DONE) == 1
    assert h.asr.calls[-1].duration_s < 1.2  # the second utterance only


def test_turn_detector_configure_and_end_turn() -> None:
    det = TurnDetector(EnergyVAD(), TurnSettings(end_of_turn_silence_ms=500, preroll_ms=100))
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(8000) / 16000)).astype(np.float32)
    det.feed(tone)
    det.configure(replace(det.s, preroll_ms=600, end_of_turn_silence_ms=200))
    det.feed(np.zeros(4000, np.float32))  # 250 ms: past the new 200 ms end of turn
    assert any(isinstance(e, UserTurn) for e in det.drain())
    assert det._preroll.maxlen is not None and det._preroll.maxlen > 10  # noqa: SLF001 - the new pre-roll
    assert not det.end_turn()
    det.feed(tone[:1600])
    assert det.end_turn()
    assert any(isinstance(e, UserTurn) for e in det.drain())


async def test_cancel_with_a_full_audio_queue_does_not_hang() -> None:
    """A long reply whose synthesis is far ahead of playback fills the audio queue; a barge-in (here a client's
    cancel) must still stop it at once."""
    h = Harness(llm=ScriptedLLM(tokens=[" word"] * 90 + ["."]), overrides={"pipeline": {"queue_size": 4}})
    async with h.session() as s:
        d = Driver(s)
        await d.speak(0.8)
        await d.silence_until(lambda es: any(e.type == ev.AUDIO_DELTA for e in es))
        await asyncio.wait_for(s.cancel_response(), 5.0)  # a hang guard, not a timing claim
        await d.silence(0.1)
    assert d.of(ev.RESPONSE_CANCELLED)[0].data["reason"] == "client_cancel"


async def test_a_full_event_queue_is_reported_not_silent() -> None:
    h = Harness(overrides={"pipeline": {"event_queue_size": 16}})
    lost: list[str] = []
    async with h.session() as s:
        s.on_overflow = lambda e: lost.append(e.type)
        for _ in range(20):
            s.emit(SessionEvent(ev.EMOTION_MEASUREMENT, {}))
    assert lost == [ev.EMOTION_MEASUREMENT] * 4


def test_policy_clear_discards_only_a_speculative_reply() -> None:
    from attune.core.frames import AudioChunk
    from attune.pipeline.turn import SilenceBegan
    from attune.pipeline.turn_policy import DiscardReply, Listen, ReplyPhase, TurnPolicy

    policy = TurnPolicy()
    assert policy.clear() == [Listen(False)]
    policy.on_turn_event(SilenceBegan(1.0, AudioChunk(np.zeros(160, np.float32), 16000)), audible=False)
    assert policy.phase is ReplyPhase.SPECULATIVE
    assert policy.clear() == [Listen(False), DiscardReply()]
    assert policy.phase is ReplyPhase.NONE
    policy.on_text("hi", 2.0)
    assert policy.clear() == [Listen(False)] and policy.phase is ReplyPhase.COMMITTED  # a committed reply stays
