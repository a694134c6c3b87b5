"""A turn committed too early (stage layer, fake backends, stream time): the person goes on speaking while the first
sound plays, before any of the reply's words; the sound stops at once and the turn goes on as one, with one reply.
Once the reply's words have been heard, speech over them is a barge-in as before."""

from __future__ import annotations

from typing import Any

import numpy as np

from attune.core import events as ev
from attune.core.events import SessionEvent
from attune.core.frames import AudioChunk, SpeechStarted
from attune.core.prosody import profile_for
from attune.pipeline.acknowledgement import phrases as first_sounds
from attune.pipeline.phrases import Phrase, PhraseVoice, prewarm
from attune.pipeline.reply import ACK_INDEX
from attune.pipeline.turn import UserTurn
from attune.pipeline.turn_policy import (
    AnnounceSpeech,
    ListenFrom,
    PolicySettings,
    ResumeTurn,
    TurnPolicy,
)
from tests.fakes import Driver, FixedASR, Harness, ScriptedLLM, ToneTTS

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out

PIPELINE = {"end_of_turn_silence_ms": 400}


def _acknowledging(words: str = "My dog died this morning.", *, on: bool = True) -> Harness:
    tts = ToneTTS(16000)
    return Harness(asr=FixedASR(words), tts=tts, phrases=PhraseVoice(tts, None, 16000),
                   llm=ScriptedLLM(["I'm", " so", " sorry.", " He", " was", " a", " good", " dog."], delay_s=0.05),
                   overrides={"pipeline": PIPELINE, "agent": {"acknowledgements": on}})


async def _prewarm(h: Harness) -> None:
    await prewarm(h.phrases, [Phrase.of(text, e, i) for text, e, i in first_sounds()])


def _first_sound_started(events: list[SessionEvent]) -> bool:
    return any(e.type == ev.AUDIO_DELTA and e.data["sentence"] == ACK_INDEX for e in events)


def _done(events: list[SessionEvent]) -> bool:
    return any(e.type == ev.RESPONSE_DONE for e in events)


async def test_speech_during_the_first_sound_stops_it_and_the_turn_goes_on_as_one() -> None:
    h = _acknowledging()
    await _prewarm(h)
    ack = h.phrases.cached("Oh no.", *_voice_of("Oh no."))
    assert ack is not None
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(_first_sound_started)  # committed; "Oh no." is playing, the reply's words are not
        await d.speak(0.8)  # ... the person was not done
        await d.silence_until(_done)
        await d.until_idle()
    cancelled = d.of(ev.RESPONSE_CANCELLED)
    assert [e.data["reason"] for e in cancelled] == ["premature_commit"]
    done = d.of(ev.RESPONSE_DONE)
    assert len(done) == 1 and done[0].data["turn"] == cancelled[0].data["turn"] == 1  # one turn, one reply
    cut_at = d.events.index(cancelled[0])
    played = [e for e in d.events[:cut_at] if e.type == ev.AUDIO_DELTA]
    assert played and all(e.data["sentence"] == ACK_INDEX for e in played)  # none of the first reply's words
    assert sum(e.audio.duration_s for e in played) < 0.6 * len(ack.samples) / 16000  # it stopped at once
    trace = done[0].data["trace"]
    # The sound heard in the pause counts as the one before: the whole turn gets another, never the same one, so
    # the person who finished is not left in silence until the model's words.
    assert trace["resumed"] is True and trace["acknowledgement"] not in (None, "Oh no.")
    assert h.asr.calls[-1].duration_s >= 1.0 + 0.8  # the ASR heard the whole turn: both parts
    assert len(s.turns) == 1
    assert [m.role for m in s.memory.messages()] == ["user", "assistant"]
    assert s.memory.messages()[1].content == "I'm so sorry. He was a good dog."


async def test_speech_before_any_sound_of_a_committed_reply_also_goes_on_as_one_turn() -> None:
    """A machine that plays no first sound: speech right after the commit, before the reply is heard, is the same
    turn going on, not a barge-in that would leave an unanswered turn and an empty reply in the history."""
    h = _acknowledging(on=False)  # the reply's words are slow to come: nothing is heard before the person goes on
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda events: bool(d.of(ev.SPEECH_STOPPED)))
        await d.speak(0.8)
        await d.silence_until(_done)
        await d.until_idle()
    assert [e.data["reason"] for e in d.of(ev.RESPONSE_CANCELLED)] == ["premature_commit"]
    assert len(s.turns) == 1 and [m.role for m in s.memory.messages()] == ["user", "assistant"]
    assert h.asr.calls[-1].duration_s >= 1.8


async def test_speech_over_the_reply_s_words_is_a_barge_in_as_before() -> None:
    h = _acknowledging()
    await _prewarm(h)
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda events: any(e.type == ev.TRANSCRIPT_DELTA for e in events))
        await d.silence(0.6)  # the reply's words are being heard: the person heard them, then spoke
        await d.speak(0.8)
        await d.silence_until(_done)
        await d.until_idle()
    assert [e.data["reason"] for e in d.of(ev.RESPONSE_CANCELLED)] == ["barge_in"]
    assert len(s.turns) == 2 and s.turns[1].info.get("resumed") is None
    assert "acknowledgement" not in s.turns[1].info  # none over a barge-in
    assert h.asr.calls[-1].duration_s < 1.5  # the new turn's own words


async def test_speech_that_began_with_the_reply_s_first_word_goes_on_as_one_turn() -> None:
    """A reply ready at the commit plays its words at once; a person who was only pausing goes on a moment later,
    before they could have heard a word (their speech's pre-roll began before it): the turn goes on as one."""
    h = _acknowledging(on=False)
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda events: any(e.type == ev.TRANSCRIPT_DELTA for e in events))
        await d.speak(0.8)  # at once: the words had begun, but not before the new speech's pre-roll
        await d.silence_until(_done)
        await d.until_idle()
    assert [e.data["reason"] for e in d.of(ev.RESPONSE_CANCELLED)] == ["premature_commit"]
    assert len(s.turns) == 1 and s.turns[0].info.get("resumed") is True
    assert [m.role for m in s.memory.messages()] == ["user", "assistant"]
    assert h.asr.calls[-1].duration_s >= 1.8  # the whole turn, both parts


def test_the_policy_resumes_only_a_committed_spoken_turn_not_yet_answered() -> None:
    audio = AudioChunk(np.zeros(1600, np.float32), 16000, 0.0)
    for unanswered, auto in ((True, True), (False, True), (True, False)):
        p = TurnPolicy(PolicySettings(auto_respond=auto))
        p.on_turn_event(UserTurn(audio, 0.0, 0.1), audible=False)
        if not auto:
            p.respond()
        assert p.on_turn_event(SpeechStarted(1.0), audible=False) == []  # engaged: tentative
        out = p.on_frame(in_speech=True, speech_s=0.16, audible=True, now_s=1.2, unanswered=unanswered)
        if unanswered and auto:
            assert out == [ResumeTurn(1.2), AnnounceSpeech(1.0), ListenFrom(1.0, with_turn_so_far=True, resumed=True)]
            assert not p.tentative
        else:
            assert not any(isinstance(x, ResumeTurn) for x in out)


def _voice_of(text: str) -> tuple[Any, Any]:
    _, emotion, intensity = next(p for p in first_sounds() if p[0] == text)
    return emotion, profile_for(emotion, intensity)
