"""The session hearing the turn while it is spoken (stage layer, fake backends, stream time): the predicted end
of the turn, partial transcripts and KV prefill, and the first sound (an acknowledgement) played at commit."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from attune.backends.base import ChatMessage
from attune.core import events as ev
from attune.core.emotion import EmotionCategory
from attune.core.frames import AudioChunk
from attune.core.machine import LLMSpeed
from attune.pipeline.acknowledgement import phrases as first_sounds
from attune.pipeline.listening import NOTE_ALONE_S, ListenSettings, TurnListener
from attune.pipeline.phrases import Phrase, PhraseVoice, prewarm
from attune.pipeline.reply import ACK_INDEX
from attune.pipeline.shared_llm import SharedLLM
from tests.fakes import Driver, FixedASR, FixedEndOfTurn, Harness, ScriptedLLM, ToneTTS, make_result

_SAD = make_result(EmotionCategory.SAD, 0.0, 1.0)

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out

PIPELINE = {"eot_complete_ms": 200, "eot_likely_ms": 700, "eot_unfinished_ms": 1200, "eot_worded_ms": 800,
            "end_of_turn_silence_ms": 400}


def _done(events: list) -> bool:
    return any(e.type in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED) for e in events)


async def _silence_until_stopped(d: Driver, max_s: float) -> float | None:
    """Silence frames until speech_stopped; the stream seconds of silence it took (None: not within max_s)."""
    for i in range(int(max_s * 50)):
        if d.of(ev.SPEECH_STOPPED):
            return i * 0.02
        await d.frame(False)
        await asyncio.sleep(0.002)  # the model and the ASR answer from worker threads
    return None


async def _a_second_then_the_commit(d: Driver, max_s: float) -> float | None:
    """A second of speech, then silence: the stream seconds of silence until the turn was committed (None: not
    within ``max_s``); then until its reply ends and the session is idle."""
    await d.speak(1.0)
    took = await _silence_until_stopped(d, max_s)
    await d.silence_until(_done)
    await d.until_idle()
    return took


async def test_a_finished_turn_is_committed_after_a_short_silence() -> None:
    eot = FixedEndOfTurn(0.95)
    h = Harness(asr=FixedASR("I passed my driving test today."), end_of_turn=eot, overrides={"pipeline": PIPELINE})
    async with h.session() as s:
        d = Driver(s)
        took = await _a_second_then_the_commit(d, 1.0)
    assert took is not None and took < 0.7  # well before the 1200 ms an unfinished turn waits
    assert eot.calls == 1
    trace = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert trace["eot_wait_ms"] == 200 and trace["eot_probability"] == 0.95


async def test_words_left_hanging_make_the_session_wait() -> None:
    h = Harness(asr=FixedASR("The thing about my job is"), end_of_turn=FixedEndOfTurn(0.95),
                overrides={"pipeline": PIPELINE})
    async with h.session() as s:
        d = Driver(s)
        took = await _a_second_then_the_commit(d, 2.0)
    assert took is not None and took >= 1.1  # the longest wait: the detector's own end of turn


async def test_a_voice_that_sounds_unfinished_makes_the_session_wait_and_resuming_keeps_one_turn() -> None:
    h = Harness(asr=FixedASR("I finally told my boss."), end_of_turn=FixedEndOfTurn(0.1),
                overrides={"pipeline": PIPELINE})
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence(0.6)  # a mid-sentence pause, longer than the old 400 ms end of turn
        assert not d.of(ev.SPEECH_STOPPED)
        await d.speak(0.8)
        await d.silence_until(_done)
        await d.until_idle()
    assert len(d.of(ev.RESPONSE_DONE)) == 1 and len(s.turns) == 1


async def test_finished_words_end_the_turn_the_voice_doubts_before_the_longest_wait() -> None:
    h = Harness(asr=FixedASR("Can you tell me something to help me fall asleep tonight?"),
                end_of_turn=FixedEndOfTurn(0.02), overrides={"pipeline": PIPELINE})
    async with h.session() as s:
        d = Driver(s)
        took = await _a_second_then_the_commit(d, 2.0)
    assert took is not None and 0.75 <= took < 1.1  # eot_worded_ms (800), not the 1200 of hanging words
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["eot_wait_ms"] == 800


@pytest.mark.parametrize("note_first", [False, True])
async def test_partial_transcripts_and_prefill_while_speaking(note_first: bool) -> None:
    h = Harness(asr=FixedASR("I was thinking maybe we could go"),
                overrides={"pipeline": {**PIPELINE, "partial_asr": True, "partial_step_ms": 300},
                           "agent": {"voice_note_first": note_first}})
    async with h.session() as s:
        d = Driver(s)
        for _ in range(10):  # 2 s of speech, giving the passes' threads time to answer
            await d.speak(0.2)
            await asyncio.sleep(0.01)
        await d.silence_until(_done)
        await d.until_idle()
    partial = d.of(ev.TRANSCRIPT_PARTIAL)
    assert partial and " ".join(e.data["delta"] for e in partial) == "I was thinking maybe we could"
    assert all(e.data["turn"] == 1 for e in partial)
    types = d.types()
    assert types.index(ev.TRANSCRIPT_PARTIAL) < types.index(ev.SPEECH_STOPPED)
    # The settled words are prefilled; with the note first, the voice note and the tone (from the voice heard so
    # far) lead them, and the reply's prompt keeps both (the whole turn reads the same emotion and asks the same
    # tone), so it extends the prefill by the last word alone.
    prefilled = h.llm.prefills[-1] if h.llm.prefills else ""
    if note_first:
        assert prefilled.startswith("[Voice sounds ") and prefilled.endswith(".)\nI was thinking maybe we could")
        assert h.llm.calls[-1][-1].content == prefilled + " go"
    else:
        assert prefilled == "I was thinking maybe we could"
    assert h.llm.calls[-1][-1].content.startswith(prefilled)
    trace = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert trace["partial_passes"] >= 2 and trace["llm_prefilled_tokens"] > 0
    assert trace["llm_early_note"] is note_first


async def test_a_server_sessions_shared_llm_view_is_prefilled_too() -> None:
    inner = ScriptedLLM()
    h = Harness(asr=FixedASR("I was thinking maybe we could go"), llm=SharedLLM(inner).for_session(),  # type: ignore[arg-type]
                overrides={"pipeline": {**PIPELINE, "partial_asr": True, "partial_step_ms": 300},
                           "agent": {"voice_note_first": False}})  # the words alone: what is prefilled is plain
    async with h.session() as s:
        d = Driver(s)
        for _ in range(10):
            await d.speak(0.2)
            await asyncio.sleep(0.01)
        await d.silence_until(_done)
        await d.until_idle()
    assert inner.prefills and inner.prefills[-1] == "I was thinking maybe we could"
    assert inner.calls[-1][-1].content.startswith(inner.prefills[-1])
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["llm_prefilled_tokens"] > 0


async def test_the_prefill_waits_for_the_voice_and_takes_it_once_per_turn() -> None:
    from attune.core.emotion import EmotionCategory
    from attune.pipeline.listening import ListenSettings, TurnListener
    from tests.fakes import make_result

    voices: list = [None]
    prompts: list = []
    llm = ScriptedLLM()

    def prompt_for(voice, words):  # type: ignore[no-untyped-def]
        prompts.append((voice, words))
        return [ChatMessage("user", f"{voice is not None}|{words}")]

    listener = TurnListener(FixedASR("never"), llm, None, settings=ListenSettings(), prompt_for=prompt_for,
                            emit_delta=lambda _: None, backlog_frames=lambda: 0, voice_so_far=lambda: voices[-1])
    listener.agreement.push("I was thinking about")
    listener.agreement.push("I was thinking about it")
    await listener._prefill(listener._generation)
    assert not prompts and listener.early is None  # no reading of the voice yet: nothing is prefilled
    sad = make_result(EmotionCategory.SAD, 0.0, 1.0)
    voices.append(sad)
    await listener._prefill(listener._generation)
    voices.append(make_result(EmotionCategory.HAPPY, 0.0, 2.0))  # the voice reads otherwise later on
    await listener._prefill(listener._generation)
    assert listener.early is not None and listener.early.emotion is sad  # taken once: the cache holds its note
    assert {v for v, _ in prompts} == {sad} and llm.prefills == ["True|I was thinking"]
    listener.reset()
    assert listener.early is None


def _listening(words: str, *, note_leads: bool = True) -> tuple[TurnListener, ScriptedLLM]:
    """A listener whose passes hear ``words``, whose voice so far reads sad (``note_leads``), prefilling a fake
    LLM whose prefills read "<the voice is the sad one>|<the words>"."""
    llm = ScriptedLLM()
    listener = TurnListener(FixedASR(words), llm, None, settings=ListenSettings(),
                            prompt_for=lambda voice, said: [ChatMessage("user", f"{voice is _SAD}|{said}")],
                            emit_delta=lambda _: None, backlog_frames=lambda: 0,
                            voice_so_far=(lambda: _SAD) if note_leads else None, note_first=note_leads)
    return listener, llm


def _turn_so_far(seconds: float) -> AudioChunk:
    return AudioChunk(np.zeros(int(seconds * 16000), np.float32), 16000)


async def test_a_pass_that_settles_no_word_yet_prefills_the_note_alone() -> None:
    """A short turn (a RAVDESS sentence: ~1.5 s of speech, two or three passes) often ends before two passes agree
    on a word; the note and tone that lead it are then prefilled from a pass over ``NOTE_ALONE_S`` of the turn, so
    only the words are left for after the speech. Not from the first fraction of a second, not before words are
    heard, and not where the words lead the turn (nothing of the turn would be known)."""
    listener, llm = _listening("Kids are talking")
    await listener._pass(_turn_so_far(0.6), listener._generation)
    assert not llm.prefills and listener.early is None  # 0.6 s: the pre-roll and an onset, too little voice
    listener, llm = _listening("Kids are talking")
    await listener._pass(_turn_so_far(NOTE_ALONE_S), listener._generation)
    assert listener.settled == "" and llm.prefills == ["True|"]  # the note and tone alone, from the voice so far
    assert listener.early is not None and listener.early.emotion is _SAD
    await listener._pass(_turn_so_far(NOTE_ALONE_S + 0.3), listener._generation)
    assert listener.settled == "Kids are" and llm.prefills[-1] == "True|Kids are"  # then the words, after them
    for heard, leads in (("", True), ("Kids are talking", False)):
        listener, llm = _listening(heard, note_leads=leads)
        await listener._pass(_turn_so_far(NOTE_ALONE_S), listener._generation)
        assert not llm.prefills


async def test_once_a_reply_has_the_turn_a_pass_in_flight_leaves_the_prompt_alone() -> None:
    """The speculative reply takes the early voice and the prompt at the silence (``TurnListener.hold``): a pass
    that ends after it neither changes the words, nor reads the voice, nor prefills (a new note would evict the
    prompt the reply extends); the person going on lets the passes work again."""
    listener, llm = _listening("Kids are talking")
    await listener._pass(_turn_so_far(NOTE_ALONE_S), listener._generation)
    early, prefills = listener.early, list(llm.prefills)
    listener.hold()
    await listener._pass(_turn_so_far(NOTE_ALONE_S + 0.3), listener._generation)
    assert listener.settled == "" and llm.prefills == prefills and listener.early is early and listener.passes == 1
    listener.on_resume()
    await listener._pass(_turn_so_far(NOTE_ALONE_S + 0.6), listener._generation)
    assert listener.settled == "Kids are" and llm.prefills[-1] == "True|Kids are"


async def test_no_pass_begins_in_the_silence_before_the_speculative_reply() -> None:
    """A pass begun in the first ~100 ms of silence would decode the same words as the speculative reply's own
    pass, beside it on the two cores: passes begin on speech only, so no pass hears more of the turn than the
    reply's (one begun in the silence would hear the silence too)."""
    asr = FixedASR("I was thinking maybe we could go")
    h = Harness(asr=asr, overrides={"pipeline": {**PIPELINE, "partial_asr": True, "partial_step_ms": 100,
                                                 "speculate_silence_ms": 200}})
    async with h.session() as s:
        d = Driver(s)
        for _ in range(5):
            await d.speak(0.2)
            await asyncio.sleep(0.01)
        for _ in range(9):  # 180 ms of silence, each frame long enough for a pass to begin and end
            await d.frame(False)
            await asyncio.sleep(0.02)
        await d.silence_until(_done)
        await d.until_idle()
    durations = [round(c.duration_s, 2) for c in asr.calls]
    assert len(durations) >= 3 and max(durations[:-1]) <= durations[-1], durations  # none heard the silence


def _acknowledging(words: str, *, speed: LLMSpeed | None = None, on: bool = True,
                   llm: ScriptedLLM | None = None) -> Harness:
    """A slow machine's reply (its first words not ready when the turn ends) with the first sound on or off."""
    tts = ToneTTS(16000)
    llm = llm or ScriptedLLM()
    llm.delay_s = llm.delay_s or 0.05  # wall time a token: the first clause is not ready at the commit
    return Harness(asr=FixedASR(words), tts=tts, phrases=PhraseVoice(tts, None, 16000), llm_speed=speed,
                   llm=llm, overrides={"pipeline": PIPELINE, "agent": {"acknowledgements": on}})


async def _one_turn(d: Driver) -> None:
    """A second of speech, then silence until its reply ends, then until the session is idle."""
    await d.speak(1.0)
    await d.silence_until(_done)
    await d.until_idle()


async def _prewarm_first_sounds(h: Harness) -> None:
    await prewarm(h.phrases, [Phrase.of(text, e, i) for text, e, i in first_sounds()])


async def test_an_acknowledgement_is_heard_first_and_the_reply_and_memory_are_the_models_alone() -> None:
    h = _acknowledging("My dog died this morning.")
    await _prewarm_first_sounds(h)
    async with h.session() as s:
        d = Driver(s)
        await _one_turn(d)
    trace = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert trace["acknowledgement"] == "Oh no."  # bad news, a calm plan: the soft one
    audio = d.of(ev.AUDIO_DELTA)
    assert audio[0].data["sentence"] == ACK_INDEX and audio[-1].data["sentence"] >= 0
    assert trace["first_model_audio_stream_s"] > audio[0].audio.timestamp_s  # the model's words come after it
    deltas = " ".join(e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA))
    assert "Oh no" not in deltas and deltas.startswith("Hello, nice to hear you.")
    last = h.llm.calls[0][-1]  # the prompt ends on the person's turn: the sound is not the start of the model's
    assert last.role == "user" and "Oh no" not in last.content
    assert trace["reply_text"].startswith("Hello") and "Oh no" not in s.memory.messages()[1].content


async def test_the_model_opening_with_the_same_sound_is_not_heard_twice_nor_remembered() -> None:
    """"Oh no." is played; the model, which never saw it, writes "Oh no, I'm so sorry...": the person hears "Oh no."
    once, the reply's transcript and the memory hold what was spoken, and the next prompt shows no "Oh no"."""
    llm = ScriptedLLM(["Oh", " no,", " I'm", " so", " sorry.", " That", " must", " hurt."])
    h = _acknowledging("My dog died this morning.", llm=llm)
    await _prewarm_first_sounds(h)
    async with h.session() as s:
        d = Driver(s)
        for _ in range(2):
            await _one_turn(d)
    first = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert first["acknowledgement"] == "Oh no." and first["echo_dropped"] == "Oh no,"
    deltas = [e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA) if e.data["turn"] == 1]
    assert deltas[0] == "I'm so sorry." and "Oh no" not in " ".join(deltas)
    assert first["reply_text"] == first["heard_text"] == "I'm so sorry. That must hurt."
    assistant = [m.content for m in s.memory.messages() if m.role == "assistant"]
    assert assistant[0] == "I'm so sorry. That must hurt."  # what was spoken; the sound is the listener's, not kept
    earlier = llm.calls[1][-2]  # the second turn's prompt: the first turn's reply, before the new words
    assert earlier.role == "assistant" and earlier.content == "I'm so sorry. That must hurt."


async def test_no_acknowledgement_when_the_reply_is_ready_at_the_commit() -> None:
    """The speculative reply wrote and synthesised its first clause during the end-of-turn wait: the first sound
    would only delay the model's words, so it is not played (and not counted as heard)."""
    h = _acknowledging("My dog died this morning.", llm=ScriptedLLM(delay_s=0.0001))
    await _prewarm_first_sounds(h)
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        for _ in range(10):  # the silence, slowly: the reply is written and synthesised before the commit
            await d.frame(False)
            await asyncio.sleep(0.02)
        await d.silence_until(_done)
        await d.until_idle()
    trace = d.of(ev.RESPONSE_DONE)[0].data["trace"]
    assert trace["acknowledgement_skipped"] == "Oh no." and "acknowledgement" not in trace
    assert all(e.data["sentence"] >= 0 for e in d.of(ev.AUDIO_DELTA))
    assert [t.info.get("acknowledgement") for t in s.turns] == [None]


async def test_the_first_sound_is_spoken_in_the_session_s_voice_a_persona_s_too() -> None:
    """A session speaking with a persona's voice never plays the agent voice's rendering: none until the sound is
    rendered in the persona's voice (start-up does it for every stored persona), then that one."""
    from attune.pipeline.session import SessionChange

    h = _acknowledging("My dog died this morning.")
    await _prewarm_first_sounds(h)  # in the agent's voice only
    persona = ToneTTS(16000, seconds_per_word=0.5)  # "Oh no." lasts 1.0 s in it, 0.5 s in the agent's
    persona.name = "persona"
    async with h.session() as s:
        s.apply(SessionChange(voice=s.backends.voice.speaking_with(persona)))
        d = Driver(s)
        for turn in range(2):
            if turn == 1:
                await prewarm(s.backends.voice.phrases, [Phrase.of(t, e, i) for t, e, i in first_sounds()])
            await _one_turn(d)
            if turn == 0:
                d.events.clear()
    assert [t.info.get("acknowledgement") for t in s.turns] == [None, "Oh no."]
    played = sum(e.audio.duration_s for e in d.of(ev.AUDIO_DELTA) if e.data["sentence"] == ACK_INDEX)
    assert abs(played - 1.0) < 0.05  # the persona's rendering
    assert "Oh no." in persona.texts


async def test_the_sounds_own_trailing_silence_is_not_played_before_the_words() -> None:
    """Piper ends every rendering with 120-210 ms of silence: played whole, it delayed the model's first word as
    much wherever the sound, not the model, was what the words waited for. A beat of it is kept."""
    from attune.pipeline.acknowledgement import BEAT_S

    class _TrailingTTS(ToneTTS):
        async def synthesize(self, text, prosody=None):  # type: ignore[no-untyped-def]
            async for chunk in super().synthesize(text, prosody):
                yield chunk
            yield AudioChunk(np.zeros(int(0.3 * self.sample_rate), np.float32), self.sample_rate)

    tts = _TrailingTTS(16000)
    h = Harness(asr=FixedASR("My dog died this morning."), tts=tts, phrases=PhraseVoice(tts, None, 16000),
                llm=ScriptedLLM(delay_s=0.05), overrides={"pipeline": PIPELINE})
    await _prewarm_first_sounds(h)
    async with h.session() as s:
        d = Driver(s)
        await _one_turn(d)
    assert s.turns[0].info.get("acknowledgement") == "Oh no."
    played = sum(e.audio.duration_s for e in d.of(ev.AUDIO_DELTA) if e.data["sentence"] == ACK_INDEX)
    assert abs(played - (2 * 0.25 + BEAT_S)) < 0.015  # two words of tone and the beat, not the 300 ms


async def test_no_acknowledgement_on_a_fast_machine_when_off_or_when_not_cached() -> None:
    fast = LLMSpeed(tokens_per_s=100.0, first_token_ms=30.0)  # a GPU server's speed: the first clause in ~0.2 s
    for h, warm in ((_acknowledging("My dog died this morning.", speed=fast), True),
                    (_acknowledging("My dog died this morning.", on=False), True),
                    (_acknowledging("My dog died this morning."), False)):
        if warm:
            await _prewarm_first_sounds(h)
        async with h.session() as s:
            d = Driver(s)
            await _one_turn(d)
        assert "acknowledgement" not in d.of(ev.RESPONSE_DONE)[0].data["trace"]
        assert all(e.data["sentence"] >= 0 for e in d.of(ev.AUDIO_DELTA))


async def test_a_turn_committed_late_still_hears_its_sound_on_a_developer_machine() -> None:
    """The estimate counts from the choice, when the reply's LLM has not started: a turn committed after a long
    end-of-turn wait is not taken for one whose reply is nearly ready (counting from the end of the speech
    skipped the sound on every turn committed after ~800 ms on a 20 tok/s machine, whose reply came ~600 ms
    after the commit)."""
    dev = LLMSpeed(tokens_per_s=20.0, first_token_ms=260.0)
    h = _acknowledging("My dog died this morning.", speed=dev)
    h.overrides["pipeline"] = {**PIPELINE, "end_of_turn_silence_ms": 1000}
    await _prewarm_first_sounds(h)
    async with h.session() as s:
        d = Driver(s)
        await _one_turn(d)
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["acknowledgement"] == "Oh no."


async def _doubted(words: str, *, on: bool = True) -> Harness:
    """A slow machine's reply to ``words``, which the end-of-turn model doubts (P 0.1), first sounds cached."""
    h = _acknowledging(words, on=on)
    h.end_of_turn = FixedEndOfTurn(0.1)
    h.overrides["pipeline"] = {**PIPELINE, "eot_sounded_ms": 600}
    await _prewarm_first_sounds(h)
    return h


async def test_a_finished_sentence_the_voice_doubts_is_committed_sooner_when_its_first_sound_is_ready() -> None:
    """``eot_sounded_ms``: the doubted sentence's 800 ms wait becomes 600 when the reply has its first sound; with
    the sound off (or none cached) it stays 800."""
    waits = {}
    for on in (True, False):
        h = await _doubted("We finally won the match.", on=on)
        async with h.session() as s:
            d = Driver(s)
            took = await _a_second_then_the_commit(d, 2.0)
        trace = d.of(ev.RESPONSE_DONE)[0].data["trace"]
        waits[on] = (trace["eot_wait_ms"], took, trace.get("acknowledgement"))
    assert waits[True][0] == 600 and waits[True][2] is not None
    assert waits[False][0] == 800 and waits[False][2] is None
    assert waits[True][1] is not None and waits[False][1] is not None and waits[True][1] < waits[False][1]


async def test_a_pause_longer_than_the_sounded_wait_hears_a_backchannel_and_stays_one_turn() -> None:
    """A person who pauses 0.7 s inside a sentence Whisper closed ("My sister called me this morning."): the
    early commit plays the first sound in the pause, the voice stops it, and the two parts are one turn with
    one reply, answered after the real end."""
    h = await _doubted("My sister called me this morning.")
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence(0.7)
        await d.speak(0.8)
        await d.silence_until(_done)
        await d.silence_until(lambda events: bool(d.of(ev.RESPONSE_DONE)))
        await d.until_idle()
    assert [e.data["reason"] for e in d.of(ev.RESPONSE_CANCELLED)] == ["premature_commit"]
    done = d.of(ev.RESPONSE_DONE)
    assert len(done) == 1 and done[0].data["trace"]["resumed"] is True and len(s.turns) == 1
    assert h.asr.calls[-1].duration_s >= 1.0 + 0.8  # the whole turn, both parts


async def test_acknowledgements_are_not_repeated_turn_after_turn() -> None:
    h = _acknowledging("I went to the shop this morning.")
    await _prewarm_first_sounds(h)
    async with h.session() as s:
        d = Driver(s)
        for _ in range(4):
            await _one_turn(d)
            d.events.clear()
    heard = [t.info.get("acknowledgement") for t in s.turns]
    assert len(heard) == 4 and heard[0] == "Mm."
    assert all(a is None or a != b for a, b in zip(heard, heard[1:], strict=False))
    assert None in heard[:3]  # not on every turn


def test_the_first_clause_follows_the_llm_speed_measured_at_start_up() -> None:
    from attune.pipeline.session import SessionChange
    from attune.pipeline.settings import SessionSettings

    slow, fast = LLMSpeed(tokens_per_s=10.0, first_token_ms=500.0), LLMSpeed(tokens_per_s=30.0, first_token_ms=90.0)
    for sounds, expected in ((False, {"unmeasured": 2, "slow": 2, "fast": 4}),
                             # a first sound has answered: the model's first words are what is waited for
                             (True, {"unmeasured": 2, "slow": 2, "fast": 2})):
        words = {}
        for name, speed in (("unmeasured", None), ("slow", slow), ("fast", fast)):
            s = Harness(llm_speed=speed, overrides={"pipeline": {"first_clause_min_words": 2},
                                                    "agent": {"acknowledgements": sounds}}).session()
            words[name] = s.settings.reply.first_clause_min_words
            s.apply(SessionChange(SessionSettings.from_config(s.config)))  # a client's update keeps the pace
            assert s.settings.reply.first_clause_min_words == words[name]
        assert words == expected, sounds


async def test_with_a_whole_turn_reader_the_early_voice_is_read_by_it_and_kept() -> None:
    """The prefill's note and tone come from the reader the reply uses for the whole turn (on the first settling
    pass's encoder states), not from the prosodic windows, so the two readings agree and the tail stays small."""
    from attune.core.emotion import EmotionCategory
    from tests.fakes import FakeTurnEmotion

    reader = FakeTurnEmotion(EmotionCategory.ANGRY)  # the windows (FakeEmotion) read sad
    h = Harness(asr=FixedASR("I was thinking maybe we could go"), turn_emotion=reader,
                overrides={"pipeline": {**PIPELINE, "partial_asr": True, "partial_step_ms": 300},
                           "agent": {"voice_note_first": True}})
    async with h.session() as s:
        d = Driver(s)
        for _ in range(10):
            await d.speak(0.2)
            await asyncio.sleep(0.01)
        await d.silence_until(_done)
        await d.until_idle()
    prefilled = h.llm.prefills[-1]
    assert prefilled.startswith("[Voice sounds ") and "angry" in prefilled.split("\n")[0]
    assert len(reader.calls) >= 2  # once early (a partial pass), once for the whole turn
    assert h.llm.calls[-1][-1].content == prefilled + " go"
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["llm_early_note"] is True


async def test_the_early_voice_is_read_again_while_the_turn_goes_on_until_it_answers_alike() -> None:
    """A turn that starts bright and turns sad: the reading of the turn so far changes the tone, so the early voice
    is replaced and the prefill re-evaluates from the note; the reply then keeps the sad note the prefill holds."""
    from attune.core.emotion import EmotionCategory
    from tests.fakes import FakeTurnEmotion, make_result

    class Turning(FakeTurnEmotion):
        def analyze_turn(self, audio16k, states=None):  # type: ignore[no-untyped-def]
            self.calls.append((len(audio16k), None))
            emotion = EmotionCategory.HAPPY if len(audio16k) < 16000 * 1.0 else EmotionCategory.SAD
            return make_result(emotion, 0.0, len(audio16k) / 16000, audio16k, confidence=0.8)

    reader = Turning()
    h = Harness(asr=FixedASR("I was thinking maybe we could go"), turn_emotion=reader,
                overrides={"pipeline": {**PIPELINE, "partial_asr": True, "partial_step_ms": 300},
                           "agent": {"voice_note_first": True, "fuse_words": False}})
    async with h.session() as s:
        d = Driver(s)
        for _ in range(10):
            await d.speak(0.2)
            await asyncio.sleep(0.01)
        await d.silence_until(_done)
        await d.until_idle()
    firsts = [p.split("\n")[0] for p in h.llm.prefills]
    assert any("happy" in f for f in firsts) and "sad" in firsts[-1]  # read again, and the prefill followed
    assert h.llm.calls[-1][-1].content == h.llm.prefills[-1] + " go"
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["llm_early_note"] is True
