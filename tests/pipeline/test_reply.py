"""One Reply on its own, with fakes of its narrow interface (ReplyDeps): no Session, no turn detection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from attune.agent.brain import NeutralPlan, PromptBuilder
from attune.agent.prosody_dsp import ProsodyApplicator
from attune.backends.tts.router import VoiceModelRouter
from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE
from attune.core.emotion import EmotionCategory
from attune.core.events import SessionEvent
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters
from attune.core.trace import TurnTrace
from attune.pipeline.reply import Reply, ReplyDeps, ReplySettings
from attune.pipeline.understanding import TurnContext, Understander
from tests.fakes import FixedASR, PitchedTTS, ScriptedLLM, ToneTTS, calm_planner, level, peak_hz

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out

SPEECH = AudioChunk(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, 0.5)
LIVELY = ProsodyParameters(pitch_shift_semitones=4.0, volume_db=-6.0)  # the two dimensions espeak-ng does natively


class OutputClock:
    """``schedule_output``: frames back to back from stream time 0; after ``hold_after`` frames it waits forever,
    as a session's clock does when the input stops."""

    def __init__(self, hold_after: int | None = None) -> None:
        self.playhead, self.frames, self.hold_after = 0.0, 0, hold_after

    async def __call__(self, duration_s: float) -> float:
        if self.hold_after is not None and self.frames >= self.hold_after:
            await asyncio.Event().wait()
        self.frames += 1
        start, self.playhead = self.playhead, self.playhead + duration_s
        return start


def _reply(*, asr: Any = None, llm: Any = None, tts: Any = None, clock: OutputClock | None = None,
           planner: Callable[..., Any] = calm_planner, dsp_factory: Any = None, text: str | None = None,
           context: Callable[[], TurnContext] = TurnContext) -> tuple[Reply, list[SessionEvent], Any]:
    events: list[SessionEvent] = []
    understander = Understander(planner, lambda rs: rs[-1], lambda rs: "stable", PromptBuilder())
    deps = ReplyDeps(asr or FixedASR(), llm or ScriptedLLM(), tts or ToneTTS(), understander,
                     ReplySettings(output_sample_rate=16000, first_clause_min_words=2),  # one first sentence
                     context, clock or OutputClock(), events.append, dsp_factory)
    trace = TurnTrace(turn=1, speech_start_s=0.5, speech_end_s=1.5)
    trace.mark("speech_stopped")
    return Reply(deps, 1, None if text else SPEECH, trace, text=text), events, deps


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


def _audio(events: list[SessionEvent]) -> np.ndarray:
    return np.concatenate([e.audio.samples for e in events if e.type == ev.AUDIO_DELTA and e.audio is not None])


async def test_a_speculative_reply_holds_events_and_audio_until_committed() -> None:
    llm, tts, clock = ScriptedLLM(), ToneTTS(), OutputClock()
    reply, events, _ = _reply(llm=llm, tts=tts, clock=clock)
    reply.start()
    await _until(lambda: len(tts.texts) == 2)  # thought and synthesised all of it
    assert events == [] and clock.frames == 0 and not reply.finished
    reply.commit()
    assert reply.task is not None
    await reply.task
    types = [e.type for e in events if e.type != ev.AUDIO_DELTA]
    assert types[:3] == [ev.TRANSCRIPT, ev.EMOTION_TURN, ev.RESPONSE_CREATED]
    assert [e.data["delta"] for e in events if e.type == ev.TRANSCRIPT_DELTA] == [
        "Hello, nice to hear you.", "How are you?"]
    assert abs(len(_audio(events)) / 16000 - 8 * 0.25) < 0.05  # every word, once
    out = reply.outcome()
    assert (out.status, out.committed, out.recorded, out.interrupted) == ("completed", True, True, False)
    assert out.reply_text == out.heard_text == "Hello, nice to hear you. How are you?"
    assert out.transcript == "hello there" and out.user_message == llm.calls[0][-1].content
    assert out.plan is not None and out.plan.expressed_emotion is EmotionCategory.CALM
    assert out.trace.first_audio_stream_s == 0.0 and "first_audio_out" in out.trace.marks


async def test_a_reply_cut_off_reports_only_what_was_heard() -> None:
    clock = OutputClock(hold_after=40)  # 40 frames of 20 ms: 0.8 s of the first sentence's 1.25 s sent
    reply, events, _ = _reply(clock=clock)
    reply.start()
    reply.commit()
    await _until(lambda: clock.frames == 40)
    await reply.cancel()
    assert reply.finished
    out = reply.outcome(heard_at=0.4)  # cut off half-way through what was sent
    assert out.status == "cancelled" and out.interrupted and out.recorded
    assert out.heard_text == "Hello, nice"  # the played share of the sentence, whole words only
    assert out.reply_text.startswith(out.heard_text) and len(out.reply_text) > len(out.heard_text)


async def test_a_discarded_speculative_reply_is_not_recorded() -> None:
    reply, events, _ = _reply()
    reply.start()
    await reply.cancel()
    out = reply.outcome(heard_at=1.0)
    assert not out.committed and not out.recorded and events == []


async def test_nothing_to_answer_is_an_empty_outcome_that_says_so() -> None:
    """A turn heard as noise ends with its (empty) transcript marked ``empty``, the one event that tells a client
    no reply follows; nothing else is sent and nothing is recorded."""
    llm = ScriptedLLM()
    reply, events, _ = _reply(asr=FixedASR("  "), llm=llm)
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    out = reply.outcome()
    assert out.status == "empty" and not out.recorded and not llm.calls
    assert [(e.type, e.data) for e in events] == [(ev.TRANSCRIPT, {"turn": 1, "transcript": "", "empty": True})]


async def test_a_turn_refused_at_its_admission_is_said_at_once_without_asr_or_llm() -> None:
    from dataclasses import replace

    from attune.core.errors import ServerBusy
    from attune.pipeline.reply import BUSY_REPLY

    def full() -> None:
        raise ServerBusy("every reply is taken", retry_after_s=3.0)

    asr, llm = FixedASR(), ScriptedLLM()
    _, events, deps = _reply(asr=asr, llm=llm)
    trace = TurnTrace(turn=1, speech_start_s=0.5, speech_end_s=1.5)
    reply = Reply(replace(deps, admit=full), 1, SPEECH, trace)
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    out = reply.outcome()
    assert out.status == "failed" and out.recorded and out.transcript == "" and out.heard_text == BUSY_REPLY
    assert asr.calls == [] and llm.calls == []
    types = [e.type for e in events]
    assert types[0] == ev.ERROR and events[0].data["code"] == "server_busy" and events[0].data["retry_after_s"] == 3.0
    assert ev.TRANSCRIPT not in types and ev.RESPONSE_CREATED not in types and ev.AUDIO_DELTA in types


async def test_an_admitted_replys_place_is_given_back_however_it_ends() -> None:
    from dataclasses import replace

    class Place:
        released = 0
        alone = False
        capacity = ahead = listening = 0

        def release(self) -> None:
            self.released += 1

    places: list[Place] = []

    def admit() -> Place:
        places.append(Place())
        return places[-1]

    for asr in (FixedASR("  "), FixedASR(fail=True), FixedASR()):  # empty, failed, answered
        _, _, deps = _reply(asr=asr)
        reply = Reply(replace(deps, admit=admit), 1, SPEECH, TurnTrace(turn=1, speech_start_s=0.5, speech_end_s=1.5))
        reply.start()
        reply.commit()
        assert reply.task is not None
        await reply.task
    _, _, deps = _reply(asr=FixedASR(delay_s=0.2))
    cut = Reply(replace(deps, admit=admit), 1, SPEECH, TurnTrace(turn=1, speech_start_s=0.5, speech_end_s=1.5))
    cut.start()
    await asyncio.sleep(0.05)
    await cut.cancel()  # cancelled during its ASR pass
    assert [p.released for p in places] == [1, 1, 1, 1]


async def test_an_asr_failure_is_an_error_event_and_a_failed_outcome() -> None:
    reply, events, _ = _reply(asr=FixedASR(fail=True))
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    assert [(e.type, e.data["code"], e.data["retryable"]) for e in events] == [(ev.ERROR, "asr_failed", True)]
    out = reply.outcome()
    assert out.status == "failed" and out.recorded and out.heard_text == "" and out.transcript == ""


async def test_the_context_is_read_once_after_asr_so_late_emotion_windows_count() -> None:
    from tests.fakes import make_result

    asr = FixedASR(delay_s=0.05)
    reads: list[int] = []

    def context() -> TurnContext:
        reads.append(len(asr.calls))
        return TurnContext((make_result(EmotionCategory.SAD, 0.0, 1.0),))

    reply, events, _ = _reply(asr=asr, context=context)
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    assert reads == [1]
    turn = next(e for e in events if e.type == ev.EMOTION_TURN).data
    assert turn["emotion"]["predictions"][0]["emotion"] == "sad" and turn["trajectory"] == "stable"


async def test_a_typed_turn_is_answered_without_asr() -> None:
    asr, llm = FixedASR(), ScriptedLLM()
    reply, events, _ = _reply(asr=asr, llm=llm, text="What time is it?")
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    assert not asr.calls and reply.outcome().transcript == "What time is it?"
    assert llm.calls[0][-1].content.startswith("What time is it?\n[Voice emotion unknown]")


def _lively(_emotion: Any, strategy: str) -> NeutralPlan:
    return NeutralPlan(strategy=strategy, expressed_emotion=EmotionCategory.EXCITED, prosody=LIVELY)


@pytest.mark.parametrize("piper_down", [False, True])
async def test_prosody_is_applied_once_whichever_provider_speaks(piper_down: bool) -> None:
    """The DSP is planned from each chunk's provider: after a fail-over to espeak-ng (which shifts pitch and
    volume itself) the DSP must not shift them again. Measured on the audio: f0 and level."""
    piper, espeak = PitchedTTS("piper", native=False), PitchedTTS("espeak", native=True)
    piper.fail = piper_down
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high", sample_rate=22050)
    planned: list[ProsodyParameters] = []

    def dsp(rate: int, prosody: ProsodyParameters) -> ProsodyApplicator:
        planned.append(prosody)
        return ProsodyApplicator(rate, prosody)

    reply, events, _ = _reply(tts=router, planner=_lively, dsp_factory=dsp)
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    assert reply.outcome().status == "completed"
    out, raw = _audio(events), np.concatenate((espeak if piper_down else piper).raw)
    assert router.planned_provider() == "piper"  # what the old, planned-provider DSP would have trusted
    wanted = 200.0 * 2 ** (4 / 12)  # 252 Hz: the asked shift, once
    assert abs(peak_hz(out, 16000) - wanted) < 3.0, (peak_hz(out, 16000), peak_hz(raw, 22050))
    if piper_down:  # espeak-ng shifted and attenuated: the DSP leaves pitch and level as espeak made them
        assert abs(peak_hz(raw, 22050) - wanted) < 1.0
        assert all(p.pitch_shift_semitones == 0.0 and p.volume_db == 0.0 for p in planned)
        assert abs(20 * np.log10(level(out) / level(raw))) < 1.0
    else:  # Piper spoke at 200 Hz and full level: the DSP shifted and attenuated
        assert abs(peak_hz(raw, 22050) - 200.0) < 1.0
        assert all(p == LIVELY for p in planned)
        assert abs(20 * np.log10(level(out) / level(raw)) + 6.0) < 1.0


@pytest.mark.real
@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng is not installed")
async def test_real_espeak_after_a_failed_piper_is_not_pitch_shifted_twice() -> None:
    """The real counterpart: espeak-ng applies +4 semitones itself (``-p``); the reply's DSP must not add more.
    f0 from the prosodic analyser (YIN) on the reply's output against espeak-ng's own output."""
    from attune.backends.emotion.features import extract_markers
    from attune.backends.tts.espeak_backend import EspeakTTS

    text = "I really cannot believe this happened again today."
    piper, espeak = PitchedTTS("piper", native=False), EspeakTTS()
    piper.fail = True
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high", sample_rate=22050)
    reply, events, _ = _reply(asr=FixedASR("hello"), llm=ScriptedLLM([text]), tts=router, planner=_lively,
                              dsp_factory=ProsodyApplicator)
    reply.start()
    reply.commit()
    assert reply.task is not None
    await reply.task
    raw = np.concatenate([c.samples async for c in espeak.synthesize(text, LIVELY)])
    f0_out = extract_markers(_audio(events), 16000).pitch_mean_hz
    f0_raw = extract_markers(raw, espeak.sample_rate).pitch_mean_hz
    assert f0_raw > 0 and f0_out > 0
    print(f"f0 of the reply {f0_out:.1f} Hz, of espeak-ng itself {f0_raw:.1f} Hz")
    assert abs(12 * np.log2(f0_out / f0_raw)) < 1.0, (f0_out, f0_raw)  # twice would be +4 semitones
