"""Stage tests: a whole-turn emotion reader (the Whisper head, the hybrid) in a conversation reads each turn once:
after ASR from the ASR's own encoder pass, or, a middle-block reader, beside the ASR's pass; its reading is the
turn's emotion; a failure falls back to the windows; the embedded stack wires it from ``emotion.backend``."""

from __future__ import annotations

import time

import pytest

from attune.core import events as ev
from attune.core.emotion import EmotionCategory
from tests.fakes import Driver, FakeTurnEmotion, FixedASR, Harness, StatesASR

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out


def _done(events: list) -> bool:
    return any(e.type in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED) for e in events)


async def _turn(h: Harness) -> Driver:
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.2)
        await d.silence_until(_done)
        await d.until_idle()
    return d


async def test_the_turn_is_read_once_from_the_asr_encoder_pass() -> None:
    reader = FakeTurnEmotion(EmotionCategory.ANGRY)
    h = Harness(asr=StatesASR(), turn_emotion=reader)
    d = await _turn(h)
    assert len(reader.calls) == 1
    n_samples, states = reader.calls[0]
    assert states == (-(-n_samples // 320), 8)  # the ASR's rows of the very clip it transcribed
    turn = d.of(ev.EMOTION_TURN)[0].data
    assert turn["emotion"]["predictions"][0]["emotion"] == "angry"  # not the windows' "sad"
    done = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert done["user_emotion"] == "angry" and done["emotion_turn_reused_encoder"] is True
    assert done["emotion_turn_cpu_ms"] >= 0


async def test_without_encoder_states_the_reader_encodes_itself() -> None:
    reader = FakeTurnEmotion()
    d = await _turn(Harness(asr=FixedASR(), turn_emotion=reader))
    assert reader.calls and reader.calls[0][1] is None
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["emotion_turn_reused_encoder"] is False


async def test_a_middle_block_reader_does_not_ask_the_asr_for_its_pass() -> None:
    """tiny.en_l2 encodes the turn itself: the ASR is not asked for states it cannot use, and the trace says the
    pass was not reused."""
    reader = FakeTurnEmotion(reads_asr_pass=False)
    d = await _turn(Harness(asr=StatesASR(), turn_emotion=reader))
    assert len(reader.calls) == 1 and reader.calls[0][1] is None
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["emotion_turn_reused_encoder"] is False


class _WaitingASR(FixedASR):
    """An ASR pass that lasts until the turn's reader has begun (at most ``wait_s``): it records, per pass,
    whether the reading began while the pass was still running."""

    def __init__(self, reader: FakeTurnEmotion, wait_s: float) -> None:
        super().__init__()
        self.reader, self.wait_s = reader, wait_s
        self.read_beside: list[bool] = []

    def transcribe(self, audio, *, encoder_states: bool = False):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self.wait_s
        while not self.reader.calls and time.monotonic() < deadline:
            time.sleep(0.005)
        self.read_beside.append(bool(self.reader.calls))
        return super().transcribe(audio, encoder_states=encoder_states)


async def test_a_middle_block_reader_reads_the_turn_beside_the_asr_pass() -> None:
    """It needs nothing of the ASR's pass, so it does not wait for it: the reading is off the path to the LLM.
    One that reuses the ASR's pass waits for it."""
    reader = FakeTurnEmotion(EmotionCategory.ANGRY, reads_asr_pass=False)
    asr = _WaitingASR(reader, wait_s=2.0)
    d = await _turn(Harness(asr=asr, turn_emotion=reader))
    assert asr.read_beside == [True] and len(reader.calls) == 1
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["user_emotion"] == "angry"
    reuser = FakeTurnEmotion(EmotionCategory.ANGRY)
    asr = _WaitingASR(reuser, wait_s=0.0)  # it cannot begin before the pass it reuses has ended
    await _turn(Harness(asr=asr, turn_emotion=reuser))
    assert asr.read_beside == [False] and len(reuser.calls) == 1


async def test_a_failing_reader_falls_back_to_the_windows() -> None:
    d = await _turn(Harness(asr=StatesASR(), turn_emotion=FakeTurnEmotion(fail=True)))
    assert d.of(ev.RESPONSE_DONE)[0].data["status"] == "completed"
    assert d.of(ev.EMOTION_TURN)[0].data["emotion"]["predictions"][0]["emotion"] == "sad"  # the windows'


async def test_an_unreliable_turn_reading_means_a_neutral_delivery() -> None:
    """A synthetic voice or noise reads with low confidence: the reply is plain, the windows do not override."""
    from attune.agent.strategy import choose_response

    h = Harness(asr=StatesASR(), turn_emotion=FakeTurnEmotion(confidence=0.05), planner=choose_response)
    d = await _turn(h)
    created = d.of(ev.RESPONSE_CREATED)[0].data
    assert created["expressed_emotion"] == "neutral" and "unclear" in created["reason"]


def test_the_embedded_stack_wires_a_turn_backend_with_a_prosodic_meter() -> None:
    from attune.backends.vad import EnergyVAD
    from attune.config import load_config
    from attune.pipeline.session import SessionBackends
    from attune.pipeline.session_backends import Voice
    from attune.pipeline.stack import for_session

    config = load_config(environ={}, overrides={"emotion": {"backend": "hybrid"}})
    base = SessionBackends(asr=FixedASR(), llm=None, voice=Voice(None), vad=EnergyVAD())  # type: ignore[arg-type]
    try:
        b = for_session(config, base)
    except Exception as exc:  # noqa: BLE001 - the embedded Whisper model is not installed here
        pytest.skip(f"embedded stack unavailable: {exc}")
    assert b.turn_emotion is not None and type(b.turn_emotion).__name__ == "HybridBackend"
    assert b.emotion is not None and b.emotion.backend.name == "prosodic"  # type: ignore[attr-defined]
