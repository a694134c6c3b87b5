"""The whole conversation pipeline with fake backends: every branch of the session runner, in stream time."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from attune.backends.base import Completion, TokenStream
from attune.core import events as ev
from attune.pipeline.session import Session, SessionChange
from tests.fakes import (
    ECHO_LEVEL,
    Driver,
    FakeEmotion,
    FixedASR,
    GatedLLM,
    Harness,
    PitchedTTS,
    ScriptedLLM,
    ToneTTS,
    level,
    peak_hz,
)

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends


def _done(events: list) -> bool:
    return any(e.type in (ev.RESPONSE_DONE, ev.RESPONSE_CANCELLED) for e in events)


async def one_turn(h: Harness, speech_s: float = 1.0) -> tuple[Session, Driver]:
    """One spoken turn, answered and played out; the session is closed when this returns."""
    async with h.session() as s:
        d = Driver(s)
        await d.speak(speech_s)
        await d.silence_until(_done)
        await d.until_idle()
    return s, d


async def test_normal_turn_events_history_and_trace(tmp_path) -> None:
    h = Harness(overrides={"logging": {"trace_path": str(tmp_path / "trace.jsonl")}})
    async with h.session() as s:
        d = Driver(s)
        await d.silence(0.3)
        await d.speak(1.5)
        await d.silence_until(_done)
        await d.until_idle()
    types = d.types()
    order = [ev.SPEECH_STARTED, ev.SPEECH_STOPPED, ev.TRANSCRIPT, ev.EMOTION_TURN, ev.RESPONSE_CREATED,
             ev.TRANSCRIPT_DELTA, ev.RESPONSE_DONE]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions), types
    assert ev.EMOTION_MEASUREMENT in types
    # Each sentence is spoken as its own piece.
    deltas = [e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA)]
    assert deltas[0] == "Hello, nice to hear you."
    assert deltas[-1] == "How are you?"
    audio = [e.audio for e in d.events if e.type == ev.AUDIO_DELTA]
    total = sum(a.duration_s for a in audio if a is not None)
    assert abs(total - 8 * 0.25) < 0.05  # 8 words of tone, nothing lost or doubled
    starts = [a.timestamp_s for a in audio if a is not None]
    assert starts == sorted(starts)
    done = d.of(ev.RESPONSE_DONE)[0].data
    assert done["status"] == "completed"
    lat = done["trace"]["latency_ms"]
    assert set(lat) >= {"turn_committed", "asr_done", "llm_first_token", "first_sentence_ready", "first_audio_out"}
    assert done["trace"]["expressed_emotion"] == "calm" and done["trace"]["user_emotion"] == "sad"
    assert [m.role for m in s.memory.messages()] == ["user", "assistant"]
    assert s.memory.messages()[0].content == h.llm.calls[0][-1].content  # the turn as the LLM saw it
    assert s.memory.messages()[1].content == "Hello, nice to hear you. How are you?"
    # The prompt carried the user's emotion context and the expressed emotion guidance.
    system, *_, user = h.llm.calls[0]
    note, words = user.content.split("\n")  # agent.voice_note_first (the default): the note and tone lead
    assert note.startswith("[Voice sounds") and "calm" in note and words == "hello there"
    lines = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["transcript"] == "hello there"
    assert len(s.turns) == 1 and s.emotion_trajectory


async def test_two_utterances_are_two_turns_and_history_grows() -> None:
    h = Harness()
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(_done)
        await d.until_idle()
        await d.speak(1.0)
        await d.silence_until(lambda es: len([e for e in es if e.type == ev.RESPONSE_DONE]) == 2)
        await d.until_idle()
    assert len(h.llm.calls) == 2
    second_prompt = h.llm.calls[1]
    n = len(s.prompt.prefix())  # the system message and the persona's worked turns
    assert second_prompt[0].role == "system" and [m.role for m in second_prompt[n:]] == ["user", "assistant", "user"]
    # The second prompt extends the first: same fixed prefix and first user turn, so the KV cache is reused.
    assert second_prompt[:n + 1] == h.llm.calls[0][:n + 1]


async def test_barge_in_cuts_reply_and_history_keeps_only_what_was_heard() -> None:
    h = Harness(llm=ScriptedLLM(["One two three four five.", " Six seven eight nine ten.",
                                 " Eleven twelve thirteen fourteen fifteen."]))
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda es: any(e.type == ev.AUDIO_DELTA for e in es))
        await d.silence(0.5)
        await d.speak(0.6)  # longer than barge_in_min_ms
        cancelled_at = s.now
        await d.silence_until(lambda es: len(d.of(ev.RESPONSE_DONE)) >= 1)
        await d.until_idle()
    cancelled = d.of(ev.RESPONSE_CANCELLED)
    assert len(cancelled) == 1 and cancelled[0].data["status"] == "cancelled"
    heard = cancelled[0].data["trace"]["heard_text"]
    full = cancelled[0].data["trace"]["reply_text"]
    assert heard and len(heard.split()) < len(full.split())
    assert heard.startswith("One two")
    first_turn = s.memory.exchanges[:2]
    assert first_turn[1].interrupted and first_turn[1].content.startswith(heard)
    # No reply audio of turn 1 is scheduled after the barge-in (give or take the output lookahead).
    turn1 = [e.audio for e in d.events if e.type == ev.AUDIO_DELTA and e.data["turn"] == 1]
    assert max(a.timestamp_s for a in turn1 if a is not None) <= cancelled_at + 0.1
    # The interruption became the next turn and was answered.
    assert d.of(ev.RESPONSE_DONE)[0].data["turn"] == 2


async def test_short_sound_while_agent_speaks_is_not_a_barge_in() -> None:
    h = Harness()
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda es: any(e.type == ev.AUDIO_DELTA for e in es))
        await d.speak(0.2)  # "mhm": above min_speech_ms, below barge_in_min_ms
        await d.silence_until(_done)
        await d.until_idle()
    assert not d.of(ev.RESPONSE_CANCELLED)
    assert d.of(ev.RESPONSE_DONE)[0].data["status"] == "completed"
    assert len(h.llm.calls) == 1


async def test_speculative_reply_is_discarded_when_the_user_goes_on() -> None:
    h = Harness(asr=FixedASR("first part", delay_s=0.0))
    async with h.session() as s:
        d = Driver(s)
        await d.speak(0.8)
        await d.silence(0.2)  # past speculate_silence_ms, short of end_of_turn_silence_ms
        speculative_calls = len(h.asr.calls)
        await d.speak(0.8)
        await d.silence_until(_done)
        await d.until_idle()
    assert speculative_calls == 1  # ASR started on silence, before the turn was over
    done = d.of(ev.RESPONSE_DONE)
    assert len(done) == 1 and done[0].data["turn"] == 1
    assert d.types().count(ev.TRANSCRIPT) == 1 and d.types().count(ev.RESPONSE_CREATED) == 1
    # The answered turn is the whole utterance: its audio covers both parts.
    assert h.asr.calls[-1].duration_s > 1.5


async def test_llm_failure_mid_reply_reports_error_and_session_survives() -> None:
    h = Harness(llm=ScriptedLLM(["I hear you.", " And then", " more"], fail_after=2))
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(_done)
        await d.until_idle()
        errors = d.of(ev.ERROR)
        assert len(errors) == 1 and errors[0].data["code"] == "llm_failed" and errors[0].data["retryable"]
        assert d.of(ev.RESPONSE_DONE)[0].data["status"] == "failed"
        assert [e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA)] == ["I hear you."]
        h.llm.fail_after = None  # the backend recovers: the next turn is answered normally
        await d.speak(1.0)
        await d.silence_until(lambda es: len(d.of(ev.RESPONSE_DONE)) == 2)
    assert d.of(ev.RESPONSE_DONE)[1].data["status"] == "completed"


async def test_tts_and_asr_failures_are_error_events() -> None:
    h = Harness(tts=ToneTTS(fail_on=1))
    _, d = await one_turn(h)
    assert [e.data["code"] for e in d.of(ev.ERROR)] == ["tts_failed"]
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["heard_text"] == "Hello, nice to hear you."

    h = Harness(asr=FixedASR(fail=True))
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda es: bool(d.of(ev.ERROR)))
        await d.until_idle()
    assert d.of(ev.ERROR)[0].data["code"] == "asr_failed" and not h.llm.calls


async def test_emotion_runs_on_user_speech_only_never_on_the_agent_voice() -> None:
    emotion = FakeEmotion()
    h = Harness(emotion=emotion)
    async with h.session() as s:
        d = Driver(s, echo=True)
        await d.silence(0.5)
        await d.speak(2.0)
        await d.silence_until(_done)
        await d.until_idle()
    fed = np.concatenate(emotion.fed)
    assert fed.size > 2.0 * 16000  # the user's speech (and pre-roll) was analysed
    assert not np.any(fed == ECHO_LEVEL)  # the agent's voice never was
    assert d.echo_frames > 20  # echo really leaked into the input while the agent spoke
    measurements = d.of(ev.EMOTION_MEASUREMENT)
    assert len(measurements) >= 2
    assert all(m.data["audio_end_ms"] <= 2600 for m in measurements)  # on the session clock, within the turn
    turn = d.of(ev.EMOTION_TURN)[0].data
    assert turn["emotion"]["predictions"][0]["emotion"] == "sad" and turn["context"].startswith("[Voice")
    assert turn["trajectory"] == "stable"  # one turn so far


async def test_silence_and_noise_produce_no_turn() -> None:
    h = Harness()
    async with h.session() as s:
        d = Driver(s)
        await d.silence(1.0)
        await d.speak(0.06)  # a click: shorter than min_speech_ms
        await d.silence(1.0)
    assert d.types() == [] and not h.asr.calls


async def test_empty_transcript_gets_no_reply() -> None:
    h = Harness(asr=FixedASR(""))
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence(1.0)
        await d.until_idle()
    assert ev.RESPONSE_CREATED not in d.types() and not h.llm.calls
    ended = d.of(ev.TRANSCRIPT)  # the turn's end is said: no reply follows
    assert [e.data for e in ended] == [{"turn": 1, "transcript": "", "empty": True}]
    assert d.types().index(ev.SPEECH_STOPPED) < d.types().index(ev.TRANSCRIPT)


async def test_reply_tag_is_stripped_before_speech_and_traced() -> None:
    h = Harness(llm=ScriptedLLM(["[hap", "py]", " That is", " wonderful news."]),
                overrides={"agent": {"reply_tag": True}})
    _, d = await one_turn(h)
    assert [e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA)] == ["That is wonderful news."]
    assert h.tts.texts == ["That is wonderful news."]
    assert d.of(ev.RESPONSE_DONE)[0].data["trace"]["reply_tag"] == "happy"
    assert "square brackets" in h.llm.calls[0][0].content  # the prompt asked for the tag


async def test_typed_text_turn_is_answered_and_interrupts_a_reply() -> None:
    h = Harness()
    async with h.session() as s:
        d = Driver(s)
        await d.silence(0.2)
        await s.submit_text("What time is it?")
        await d.silence_until(_done)
        await d.until_idle()
    assert not h.asr.calls
    assert d.of(ev.TRANSCRIPT)[0].data["transcript"] == "What time is it?"
    assert d.of(ev.RESPONSE_DONE)[0].data["status"] == "completed"
    note, words = s.memory.messages()[0].content.split("\n")
    assert note.startswith("[Voice emotion unknown]") and words == "What time is it?"


@pytest.fixture
def spoken(tmp_path) -> np.ndarray:
    """Half a second of silence, then an espeak-ng sentence (or a tone where espeak-ng is absent), 16 kHz."""
    import shutil
    import subprocess

    from attune.core.audio import load_wav, prepare

    if shutil.which("espeak-ng"):
        wav = tmp_path / "s.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "I really cannot believe this happened again today."],
                       check=True)
        speech, _ = prepare(*load_wav(wav), 16000)
    else:
        speech = (0.3 * np.sin(2 * np.pi * 180 * np.arange(32000) / 16000)).astype(np.float32)
    return np.concatenate([np.zeros(8000, np.float32), speech])


async def test_real_emotion_detector_strategy_and_dsp_in_the_session(spoken) -> None:
    """The fakes' real counterparts: the prosodic streaming detector, the turn aggregate, the strategy and the
    prosody DSP."""
    from attune.agent.prosody_dsp import ProsodyApplicator
    from attune.agent.strategy import choose_response
    from attune.backends.emotion.detector import VoiceEmotionDetector, aggregate_results
    from attune.config import load_config
    from attune.transports.file import stream_file

    audio = spoken
    h = Harness(emotion=VoiceEmotionDetector(load_config(environ={}).emotion), planner=choose_response,
                aggregate=aggregate_results, dsp_factory=ProsodyApplicator)
    async with h.session() as s:
        run = await stream_file(s, audio, speed=0.0)
    types = [e.type for e in run.events]
    assert types.count(ev.EMOTION_MEASUREMENT) >= 2
    turn = next(e for e in run.events if e.type == ev.EMOTION_TURN).data
    assert turn["emotion"] is not None and turn["emotion"]["audio_end_ms"] <= int(len(audio) / 16) + 600
    created = next(e for e in run.events if e.type == ev.RESPONSE_CREATED).data
    assert created["strategy"] == "complement" and "prosody" in created
    assert s.turns[0].info["status"] == "completed"
    assert np.max(np.abs(run.output)) > 0.05  # the DSP-shaped reply is audible


async def test_speech_starting_just_before_the_agent_ends_becomes_a_turn() -> None:
    h = Harness(overrides={"pipeline": {"barge_in_min_ms": 1000}})
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda es: any(e.type == ev.AUDIO_DELTA for e in es))
        first = next(e.audio for e in d.events if e.type == ev.AUDIO_DELTA)
        assert first is not None
        await d.silence_until(lambda es: s.now >= first.timestamp_s + 8 * 0.25 - 0.5)  # 0.5 s before the end
        await d.speak(1.5)
        await d.silence_until(lambda es: len(d.of(ev.RESPONSE_DONE)) == 2)
        await d.until_idle()
    assert not d.of(ev.RESPONSE_CANCELLED)
    assert [e.data["status"] for e in d.of(ev.RESPONSE_DONE)] == ["completed", "completed"]
    assert d.of(ev.SPEECH_STARTED)[1].data["barge_in"] is False
    assert len(h.asr.calls) == 2 and h.asr.calls[1].duration_s > 1.2  # the whole utterance, from its start


async def test_llm_down_before_any_word_the_agent_says_so() -> None:
    h = Harness(llm=ScriptedLLM(["never"], fail_after=0))
    _, d = await one_turn(h)
    assert d.of(ev.ERROR)[0].data["code"] == "llm_failed"
    assert [e.data["delta"] for e in d.of(ev.TRANSCRIPT_DELTA)] == [
        "Sorry, I lost my train of thought. Could you say that again?"]
    assert d.of(ev.RESPONSE_DONE)[0].data["status"] == "failed"


async def test_a_bug_in_a_backend_costs_the_reply_not_the_session() -> None:
    class BrokenTTS(ToneTTS):
        async def synthesize(self, text, prosody=None):  # type: ignore[override]
            raise ZeroDivisionError("oops")
            yield  # pragma: no cover

    emotion = FakeEmotion(fail=True)
    h = Harness(tts=BrokenTTS(), emotion=emotion)
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.5)
        await d.silence_until(_done)
        await d.until_idle()
        codes = {e.data["code"] for e in d.of(ev.ERROR)}
        assert codes == {"internal_error", "emotion_failed"}
        assert d.of(ev.RESPONSE_DONE)[0].data["status"] == "failed"
        h.tts.__class__ = ToneTTS  # the engine is fixed: the next turn is answered
        emotion.fail = False
        await d.speak(1.5)
        await d.silence_until(lambda es: len(d.of(ev.RESPONSE_DONE)) == 2)
    assert d.of(ev.RESPONSE_DONE)[1].data["status"] == "completed"


def test_each_session_gets_its_own_vad_and_emotion_stream() -> None:
    from attune.config import load_config
    from attune.pipeline.session import SessionBackends
    from attune.pipeline.session_backends import Voice
    from attune.pipeline.stack import for_session
    from attune.pipeline.turn import EnergyVAD

    config = load_config(environ={}, overrides={"pipeline": {"vad": "energy"}})
    shared = SessionBackends(asr=FixedASR(), llm=ScriptedLLM(), voice=Voice(ToneTTS()), vad=EnergyVAD())
    a, b = for_session(config, shared), for_session(config, shared)
    assert a.asr is b.asr and a.llm is b.llm and a.tts is b.tts  # engines are loaded once
    assert a.vad is not b.vad and a.emotion is not None and a.emotion is not b.emotion


class _LoggedLLM(ScriptedLLM):
    """Logs each token when the reply pulls it; reports its call's figures like the llama-cpp backend."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.log = log

    def stream(self, messages, *, max_tokens=128, temperature=0.7):  # type: ignore[no-untyped-def]
        inner = super().stream(messages, max_tokens=max_tokens, temperature=temperature)

        async def pieces(report):  # type: ignore[no-untyped-def]
            report(Completion(prompt_tokens=42, reused_tokens=30, ttft_s=0.3125))
            async for tok in inner:
                self.log.append(("llm", tok))
                yield tok

        return TokenStream(pieces)


class _LoggedTTS(ToneTTS):
    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.log = log

    async def synthesize(self, text, prosody=None):  # type: ignore[no-untyped-def]
        async for chunk in super().synthesize(text, prosody):
            yield chunk
        self.log.append(("tts_done", text))


@pytest.mark.parametrize("hold", [True, False])
async def test_llm_waits_for_the_first_clause_audio_when_told(hold: bool) -> None:
    log: list[tuple[str, str]] = []
    h = Harness(llm=_LoggedLLM(log), tts=_LoggedTTS(log),
                overrides={"pipeline": {"hold_llm_for_first_audio": hold}})
    s, d = await one_turn(h)
    first_done = log.index(("tts_done", "Hello, nice to hear you."))
    next_token = log.index(("llm", " are"))  # " How" is what shows the first sentence has ended
    assert (next_token > first_done) is hold, log
    done = d.of(ev.RESPONSE_DONE)[0].data
    assert done["status"] == "completed"
    assert done["trace"]["llm_prompt_tokens"] == 42 and done["trace"]["llm_reused_tokens"] == 30
    assert done["trace"]["llm_ttft_ms"] == 312.5  # the engine's own first-token time, for bench-latency
    assert s.memory.messages()[1].content == "Hello, nice to hear you. How are you?"  # nothing lost to the hold


@pytest.mark.parametrize("hold", [True, False])
async def test_the_engine_itself_writes_nothing_while_the_first_clause_is_synthesised(hold: bool) -> None:
    """The hold reaches the engine (its stream's gate, closed while the first clause is synthesised and opened
    after), not only the reply's reading. That a closed gate stops llama.cpp's worker after the token in progress,
    where only not reading lets it write two more, is ``tests/backends/test_llm_common.py``'s; that the server's
    shared LLM passes it on, ``test_shared_llm.py``'s."""
    llm = GatedLLM(delay_s=0.005)
    seen: list[tuple[str, bool | None]] = []

    class _GateTTS(ToneTTS):
        async def synthesize(self, text, prosody=None):  # type: ignore[no-untyped-def]
            seen.append((text, llm.gate.is_open if llm.gate else None))
            async for chunk in super().synthesize(text, prosody):
                yield chunk

    h = Harness(llm=llm, tts=_GateTTS(), overrides={"pipeline": {"hold_llm_for_first_audio": hold}})
    s, _ = await one_turn(h)
    assert seen[0] == ("Hello, nice to hear you.", not hold)  # closed while the first clause is synthesised
    assert seen[1] == ("How are you?", True)  # and open again once it is
    assert llm.gate is not None and llm.gate.is_open
    assert s.memory.messages()[1].content == "Hello, nice to hear you. How are you?"


class _LateOnsetTTS(ToneTTS):
    """Each sentence opens with 300 ms of near-silence (-90 dBFS), as VITS voices sometimes do."""

    async def synthesize(self, text, prosody=None):  # type: ignore[no-untyped-def]
        from attune.core.frames import AudioChunk

        chunks = [c.samples async for c in super().synthesize(text, prosody)]
        lead = np.full(int(0.3 * self.sample_rate), 3e-5, dtype=np.float32)
        yield AudioChunk(np.concatenate([lead, *chunks]), self.sample_rate)


async def test_leading_silence_of_the_first_sentence_only_is_trimmed() -> None:
    h = Harness(tts=_LateOnsetTTS())
    _, d = await one_turn(h)
    by_sentence: dict[int, list[np.ndarray]] = {}
    for e in d.of(ev.AUDIO_DELTA):
        by_sentence.setdefault(e.data["sentence"], []).append(e.audio.samples)
    first, second = (np.concatenate(by_sentence[i]) for i in (0, 1))
    onset = lambda a: int(np.flatnonzero(np.abs(a) > 0.01)[0]) / 16000  # noqa: E731
    assert onset(first) <= 0.05  # 300 ms of dead air cut to the 30 ms kept before the voice
    assert abs(onset(second) - 0.3) < 0.01  # later sentences keep their pauses
    assert len(first) / 16000 >= 5 * 0.25 - 0.01  # the voice itself is all there


async def test_a_sentence_spoken_in_pieces_is_heard_from_its_first_piece() -> None:
    """A voice that streams a sentence in chunks (CSM's service, a persona's engine): the first chunk is played
    while the engine speaks the rest (each chunk used to wait for the next, so the first was heard only once the
    second had come)."""
    release = asyncio.Event()

    class _PiecesTTS(ToneTTS):
        async def synthesize(self, text, prosody=None):  # type: ignore[no-untyped-def]
            chunks = [c async for c in super().synthesize(text, prosody)]
            yield chunks[0]
            await release.wait()  # the rest of the sentence, not synthesised until its first piece is heard
            for chunk in chunks[1:]:
                yield chunk

    first_heard = lambda events: any(e.type == ev.AUDIO_DELTA and e.data["sentence"] == 0  # noqa: E731
                                     for e in events)
    h = Harness(tts=_PiecesTTS())
    async with h.session() as s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(first_heard, max_s=5.0)
        release.set()
        await d.silence_until(_done)
        await d.until_idle()
    assert s.memory.messages()[1].content == "Hello, nice to hear you. How are you?"
    heard = sum(e.audio.duration_s for e in d.of(ev.AUDIO_DELTA) if e.data["sentence"] == 0)
    assert abs(heard - 5 * 0.25) < 0.06  # the whole sentence, its first 30 ms of onset kept


async def test_a_fail_over_mid_conversation_does_not_apply_pitch_and_volume_twice() -> None:
    """Turn 1: Piper speaks, the DSP shifts pitch and level. Turn 2: Piper fails before any audio, espeak-ng
    (which shifts pitch and level itself) takes over, and the DSP must leave both alone. Measured on the output:
    its f0 and level against the provider's raw output."""
    from attune.agent.brain import NeutralPlan
    from attune.agent.prosody_dsp import ProsodyApplicator
    from attune.backends.tts.router import VoiceModelRouter
    from attune.core.emotion import EmotionCategory
    from attune.core.prosody import ProsodyParameters

    lively = ProsodyParameters(pitch_shift_semitones=4.0, volume_db=-6.0)
    piper, espeak = PitchedTTS("piper", native=False), PitchedTTS("espeak", native=True)
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high", sample_rate=22050)
    h = Harness(tts=router, dsp_factory=ProsodyApplicator,  # type: ignore[arg-type]
                planner=lambda _e, strategy: NeutralPlan(strategy, EmotionCategory.EXCITED, prosody=lively))
    async with h.session() as s:
        d = Driver(s)
        for turn in (1, 2):
            piper.fail = turn == 2
            await d.speak(1.0)
            await d.silence_until(lambda es, n=turn: len(d.of(ev.RESPONSE_DONE)) == n)
            await d.until_idle()
    assert [e.data["status"] for e in d.of(ev.RESPONSE_DONE)] == ["completed", "completed"]
    assert router.stats["piper"].failures == 2 and router.stats["espeak"].requests == 2  # two sentences
    out = {t: np.concatenate([e.audio.samples for e in d.of(ev.AUDIO_DELTA) if e.data["turn"] == t])
           for t in (1, 2)}
    wanted = 200.0 * 2 ** (4 / 12)  # the asked +4 semitones, once: 252 Hz (twice would be 318 Hz)
    piper_raw, espeak_raw = np.concatenate(piper.raw), np.concatenate(espeak.raw)
    assert abs(peak_hz(piper_raw, 22050) - 200.0) < 1.0 and abs(peak_hz(out[1], 16000) - wanted) < 3.0
    assert abs(peak_hz(espeak_raw, 22050) - wanted) < 1.0 and abs(peak_hz(out[2], 16000) - wanted) < 3.0
    db = lambda a, b: 20 * np.log10(level(a) / level(b))  # noqa: E731
    assert abs(db(out[1], piper_raw) + 6.0) < 1.0  # the DSP attenuated Piper's speech
    assert abs(db(out[2], espeak_raw)) < 1.0  # and left espeak-ng's alone: it had attenuated it itself


async def test_settings_are_one_value_replaced_while_the_session_runs() -> None:
    from dataclasses import replace

    from attune.pipeline.settings import SessionSettings
    from attune.pipeline.turn_policy import PolicySettings

    h = Harness(llm=ScriptedLLM(["One two three four five.", " Six seven eight nine ten."]))
    async with h.session() as s:
        assert isinstance(s.settings, SessionSettings) and s.settings.policy.barge_in_min_ms == 300
        assert s.settings.turn.end_of_turn_silence_ms == s.config.pipeline.end_of_turn_silence_ms == 400
        s.apply(SessionChange(replace(s.settings, policy=PolicySettings(barge_in_min_ms=3000), strategy="match")))
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda es: any(e.type == ev.AUDIO_DELTA for e in es))
        await d.speak(0.6)  # would barge in at 300 ms; not at 3000
        await d.silence_until(lambda es: len(d.of(ev.RESPONSE_DONE)) >= 1)
        await d.until_idle()
    assert not d.of(ev.RESPONSE_CANCELLED)
    assert d.of(ev.RESPONSE_CREATED)[0].data["strategy"] == "match"  # the next reply read the new strategy


async def test_frames_queued_behind_a_busy_input_stage_are_taken_in_one_step() -> None:
    """A server behind on its event loop hands the input stage many frames at once: it takes them in one step (one
    VAD call over all their chunks) and hears the same turn at the same stream times."""
    from attune.core.audio import FRAME

    tone = (0.3 * np.sin(2 * np.pi * 200.0 * np.arange(50 * FRAME) / 16000)).astype(np.float32)
    frames = [np.zeros(FRAME, np.float32)] * 10 + list(tone.reshape(50, FRAME)) + [np.zeros(FRAME, np.float32)] * 40
    seen: dict[str, list] = {}
    for mode in ("paced", "queued"):
        h = Harness(emotion=None)
        async with h.session() as s:
            feeds: list[int] = []
            feed = s.detector.feed
            s.detector.feed = lambda x, feed=feed, feeds=feeds: (feeds.append(len(x)), feed(x))[1]  # type: ignore
            for i, f in enumerate(frames):
                await s.push_audio(f)
                if mode == "paced" or i % 10 == 9:  # queued: ten frames (200 ms) wait before the stage runs
                    for _ in range(3):
                        await asyncio.sleep(0)
            for _ in range(10):
                await asyncio.sleep(0)
            events = []
            while not s.events.empty():
                events.append(s.events.get_nowait())
        seen[mode] = [(e.type, e.data.get("audio_start_ms"), e.data.get("audio_end_ms")) for e in events
                      if e.type in (ev.SPEECH_STARTED, ev.SPEECH_STOPPED)]
        seen[mode + " feeds"] = feeds
    assert seen["paced"] and seen["paced"] == seen["queued"]
    assert max(seen["paced feeds"]) == FRAME
    assert max(seen["queued feeds"]) >= 5 * FRAME and sum(seen["queued feeds"]) == len(frames) * FRAME


async def test_closing_the_session_mid_reply_says_so_not_barge_in() -> None:
    h = Harness(llm=ScriptedLLM(["One two three four five.", " Six seven eight nine ten."]))
    s = h.session()
    async with s:
        d = Driver(s)
        await d.speak(1.0)
        await d.silence_until(lambda es: any(e.type == ev.AUDIO_DELTA for e in es))
    while not s.events.empty():
        d.events.append(s.events.get_nowait())
    cancelled = d.of(ev.RESPONSE_CANCELLED)
    assert len(cancelled) == 1 and cancelled[0].data["reason"] == "session_closed"
