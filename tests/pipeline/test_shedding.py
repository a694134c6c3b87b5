"""Load shedding in the session (stage layer, fake backends, stream time): while the shared LLM would not admit a
reply, the session sheds the work done ahead of one (partial passes, the speculative reply) and a turn beyond
the capacity is refused at its end, before its ASR pass; while it would, nothing changes, and the reply's place
is held from the end of the speech until the reply ends or is discarded."""

from __future__ import annotations

import asyncio

from attune.core import events as ev
from attune.core.errors import ServerBusy
from attune.pipeline.reply import BUSY_REPLY
from attune.pipeline.shedding import LoadShedding
from tests.fakes import Driver, FixedASR, FixedEndOfTurn, Harness, ToneTTS

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out

PIPELINE = {"eot_complete_ms": 200, "eot_likely_ms": 700, "eot_unfinished_ms": 1200, "eot_worded_ms": 800,
            "end_of_turn_silence_ms": 400, "partial_asr": True, "partial_step_ms": 300}


class FakePlace:
    alone = False
    capacity = 0
    ahead = 0
    listening = 0

    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


class Door:
    """The shared LLM's door as a session sees it: ``open`` or full (``ServerBusy``); keeps the places it gave."""

    def __init__(self, open_: bool) -> None:
        self.open = open_
        self.asked = 0
        self.places: list[FakePlace] = []
        self.speaking: list[bool] = []  # each change the session reported (``mid_turn``)

    def mid_turn(self, speaking: bool) -> None:
        if not self.speaking or self.speaking[-1] != speaking:
            self.speaking.append(speaking)

    def would_admit(self) -> bool:
        self.asked += 1
        return self.open

    def admit(self) -> FakePlace:
        if not self.open:
            raise ServerBusy("every reply is taken", retry_after_s=2.5)
        self.places.append(FakePlace())
        return self.places[-1]


def _done(events: list) -> bool:
    return any(e.type in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED) for e in events)


async def _speak_slowly(d: Driver, seconds: float) -> None:
    """Speech in 0.2 s steps, giving partial passes' threads time to answer."""
    for _ in range(int(seconds / 0.2)):
        await d.speak(0.2)
        await asyncio.sleep(0.01)


def _behind(door: Door, asr: FixedASR) -> Harness:
    """A session behind the shared LLM's ``door`` whose end-of-turn model calls every turn finished."""
    return Harness(asr=asr, end_of_turn=FixedEndOfTurn(0.95), overrides={"pipeline": PIPELINE}, admission=door)


async def test_a_full_llm_sheds_the_work_ahead_of_a_reply_and_refuses_the_turn_before_its_asr() -> None:
    door = Door(open_=False)
    asr = FixedASR("I was thinking maybe we could go.")
    h = _behind(door, asr)
    async with h.session() as s:
        d = Driver(s)
        await _speak_slowly(d, 2.0)
        assert s.replying is False  # no speculative reply yet: the speech goes on
        stopped_at = None
        for i in range(60):  # the end of the turn: the model alone decides (no words without a speculative reply)
            if d.of(ev.SPEECH_STOPPED):
                stopped_at = i * 0.02
                break
            await d.frame(False)
            await asyncio.sleep(0.002)
        await d.silence_until(_done)
        await d.until_idle()
    assert asr.calls == [] and h.llm.calls == []  # neither a partial pass, nor the final pass, nor the LLM
    assert stopped_at is not None and stopped_at < 0.7  # eot_complete_ms, not the 1200 ms of unknown words
    busy = d.of(ev.ERROR)
    assert len(busy) == 1 and busy[0].data["code"] == "server_busy" and busy[0].data["turn"] == 1
    assert busy[0].data["retry_after_s"] == 2.5
    said = " ".join(e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA))
    assert said == BUSY_REPLY and any(e.audio is not None for e in d.of(ev.AUDIO_DELTA))
    done = d.of(ev.RESPONSE_DONE)
    assert [e.data["status"] for e in done] == ["failed"]
    trace = done[0].data["trace"]
    assert trace["partial_passes_shed"] >= 3 and trace["partial_passes"] == 0
    assert trace["speculation_shed"] is True and trace["admission"] == "refused"
    assert not d.of(ev.TRANSCRIPT) and s.memory.messages() == []  # a refused turn is not in the conversation


async def test_an_open_door_changes_nothing_and_the_place_is_held_until_the_reply_ends() -> None:
    door = Door(open_=True)
    asr = FixedASR("I was thinking maybe we could go.")
    h = _behind(door, asr)
    async with h.session() as s:
        d = Driver(s)
        await _speak_slowly(d, 2.0)
        await d.silence_until(_done)
        await d.until_idle()
    trace = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert trace["status"] == "completed" and trace["partial_passes"] >= 2 and "partial_passes_shed" not in trace
    assert "speculation_shed" not in trace and "turn_committed" in trace["latency_ms"]
    assert len(asr.calls) >= 3 and len(h.llm.calls) == 1  # the passes, the final pass, one reply
    assert [p.released for p in door.places] == [1]  # one place, taken at the end of the speech, given back


async def test_a_discarded_speculative_reply_gives_its_place_back() -> None:
    door = Door(open_=True)
    h = Harness(asr=FixedASR("I finally told my boss."), end_of_turn=FixedEndOfTurn(0.1),
                overrides={"pipeline": {**PIPELINE, "partial_asr": False}}, admission=door)
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence(0.6)  # a pause the voice calls unfinished: a speculative reply, then the user goes on
        assert len(door.places) == 1
        await d.speak(0.8)
        await d.silence_until(_done)
        await d.until_idle()
    assert len(door.places) == 2 and all(p.released == 1 for p in door.places)
    assert [e.data["status"] for e in d.of(ev.RESPONSE_DONE)] == ["completed"]


async def test_the_refusal_is_spoken_from_the_speech_cache() -> None:
    """Rendered at start-up with the stock phrases: twenty refusals at once must not be twenty syntheses."""
    from attune.core.emotion import EmotionCategory
    from attune.pipeline.phrases import Phrase, PhraseVoice, prewarm

    tts = ToneTTS()
    h = Harness(tts=tts, phrases=PhraseVoice(tts, None, 16000), admission=Door(open_=False),
                overrides={"pipeline": {**PIPELINE, "partial_asr": False}})
    await prewarm(h.phrases, [Phrase.of(BUSY_REPLY, EmotionCategory.NEUTRAL)])
    rendered = len(tts.texts)
    async with h.session() as s:
        d = Driver(s)
        await s.submit_text("Are you there?")
        await d.silence_until(_done)
        await d.until_idle()
    assert d.of(ev.ERROR)[0].data["code"] == "server_busy"
    assert any(e.audio is not None for e in d.of(ev.AUDIO_DELTA))
    assert len(tts.texts) == rendered == 1  # heard, not synthesised again
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"].get("cached_sentences") == 1


def test_without_a_door_the_session_never_sheds() -> None:
    assert LoadShedding().speculate and LoadShedding().admit() is None
    door = Door(open_=False)
    assert not LoadShedding(door).speculate and door.asked == 1


async def test_the_session_reports_its_turns_in_progress() -> None:
    """The host counts the turns in progress (``Admission.mid_turn``): from the start of the speech to the end of
    the turn, and never past the session's close."""
    door = Door(open_=True)
    h = _behind(door, FixedASR("I was thinking maybe we could go."))
    async with h.session() as s:
        d = Driver(s)
        await d.silence(0.3)
        assert door.speaking in ([], [False])
        await d.speak(0.6)
        assert door.speaking[-1] is True
        await d.silence_until(_done)
        await d.until_idle()
        assert door.speaking[-1] is False and door.speaking.count(True) == 1
        await d.speak(0.6)  # the user speaks again and hangs up mid-turn
        assert door.speaking[-1] is True
    assert door.speaking[-1] is False


async def test_a_turn_behind_others_sheds_its_partial_passes_until_they_end() -> None:
    """Behind the shared LLM with one place: while another session's turn, begun first, is in progress, this one
    runs no partial pass (it would not be answered first); once that turn ends, its passes run."""
    from attune.pipeline.shared_llm import SharedLLM
    from tests.fakes import ScriptedLLM

    shared = SharedLLM(ScriptedLLM(), max_requests=1)
    ahead = shared.turn_began()  # another session's user began speaking first
    asr = FixedASR("I was thinking maybe we could go.")
    h = _behind(shared.for_session(), asr)  # type: ignore[arg-type]
    async with h.session() as s:
        d = Driver(s)
        await _speak_slowly(d, 1.6)
        assert asr.calls == [] and s.listener is not None and s.listener.shed >= 2
        shared.turn_ended(ahead)
        await _speak_slowly(d, 1.2)
        assert len(asr.calls) >= 1  # first in line now: its passes run
        await d.silence_until(_done)
        await d.until_idle()
    assert [e.data["status"] for e in d.of(ev.RESPONSE_DONE)] == ["completed"]
    assert shared.turns_ahead(10 ** 6) == 0 and shared.in_flight() == 0
