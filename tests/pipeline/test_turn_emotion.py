"""Stage tests: a whole-turn emotion reader (the Whisper head, the hybrid) in a conversation reads each turn once,
after ASR, from the ASR's own encoder pass; its reading is the turn's emotion; a failure falls back to the
windows; the embedded stack wires it from ``emotion.backend``."""

from __future__ import annotations

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
