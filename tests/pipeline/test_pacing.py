"""Settings derived from the measured LLM speed (layer 1: pure, loop-free)."""

from __future__ import annotations

import pytest

from attune.core.machine import LLMSpeed
from attune.pipeline.pacing import FAST_TOKENS_PER_S, SLOW_TOKENS_PER_S, first_clause_eta_ms, first_clause_min_words

LAYER = "unit"  # STYLE.md layer 1
SLOW = LLMSpeed(tokens_per_s=10.6, first_token_ms=450.0)  # the 2-core AVX2-only EPYC, 1.5B
FAST = LLMSpeed(tokens_per_s=34.0, first_token_ms=120.0)


def test_first_clause_grows_with_speed_from_the_configured_floor() -> None:
    assert first_clause_min_words(None, 2) == 2
    assert first_clause_min_words(SLOW, 2) == 2
    assert first_clause_min_words(FAST, 2) == 4
    words = [first_clause_min_words(LLMSpeed(t, 200.0), 2) for t in range(5, 40)]
    assert words == sorted(words) and words[0] == 2 and words[-1] == 4
    assert first_clause_min_words(LLMSpeed(SLOW_TOKENS_PER_S, 1.0), 3) == 3
    assert first_clause_min_words(LLMSpeed(FAST_TOKENS_PER_S, 1.0), 3) == 5


def test_eta_puts_a_slow_machine_past_the_acknowledgement_lead_and_a_fast_one_under_it() -> None:
    slow = first_clause_eta_ms(SLOW, tail_tokens=24, clause_words=2)  # the p50 tail
    fast = first_clause_eta_ms(FAST, tail_tokens=10, clause_words=2)
    assert slow is not None and fast is not None
    assert slow > 1000.0 and fast < 300.0
    assert first_clause_eta_ms(None, tail_tokens=10, clause_words=2) is None


def test_eta_counts_down_and_grows_with_the_work_left() -> None:
    base = first_clause_eta_ms(SLOW, tail_tokens=10, clause_words=2)
    assert base is not None
    assert first_clause_eta_ms(SLOW, tail_tokens=10, clause_words=2, elapsed_ms=400.0) == base - 400.0
    assert first_clause_eta_ms(SLOW, tail_tokens=10, clause_words=2, elapsed_ms=1e6) == 0.0
    more = first_clause_eta_ms(SLOW, tail_tokens=24, clause_words=4)
    assert more is not None and more > base


@pytest.mark.fakes
async def test_start_up_measures_the_llm_speed_from_a_short_stream() -> None:
    from attune.backends.base import ChatMessage
    from attune.pipeline.stack import SPEED_TOKENS, measure_llm_speed
    from tests.fakes import ScriptedLLM

    prefix = [ChatMessage("system", "You are kind.")]
    llm = ScriptedLLM([f" w{i}" for i in range(40)], delay_s=0.01)
    speed = await measure_llm_speed(llm, prefix)
    assert speed is not None and 0 < speed.tokens_per_s <= 100.0 + 1e-6 and speed.first_token_ms >= 10.0
    assert llm.calls[0][:-1] == prefix and llm.calls[0][-1].role == "user"  # after the cached prefix
    assert await measure_llm_speed(ScriptedLLM(["Hi", "."]), prefix) is None  # too short to tell a rate
    assert await measure_llm_speed(ScriptedLLM(fail_after=2), prefix) is None  # a failure costs the figure only
    assert SPEED_TOKENS <= 32  # a short stream: start-up stays quick on a slow machine


def test_the_free_wait_is_longer_on_a_slow_machine_and_never_a_hanging_sentences() -> None:
    from attune.pipeline.endpoint import EndpointSettings
    from attune.pipeline.pacing import free_wait_ms, paced_endpoint

    slow = free_wait_ms(SLOW, speculate_ms=96, clause_words=2, note_first=True)
    fast = free_wait_ms(FAST, speculate_ms=96, clause_words=4, note_first=True)
    assert slow > fast > 96  # the speculative reply starts at the silence's start; its first clause comes later
    assert free_wait_ms(None, speculate_ms=96, clause_words=2, note_first=True) == 0
    # a longer tail (the words first) keeps the reply longer, so the commit may wait longer
    assert free_wait_ms(SLOW, speculate_ms=96, clause_words=2, note_first=False) > slow
    base = EndpointSettings(worded_ms=800, unfinished_ms=1200)
    paced = paced_endpoint(base, SLOW, speculate_ms=96, clause_words=2, note_first=False, acknowledgements=False)
    assert paced is not None and paced.free_ms == 800  # capped: a finished sentence is never held as a hanging one
    assert paced_endpoint(base, None, speculate_ms=96, clause_words=2, note_first=True, acknowledgements=False) == base
    # with the first sound on, it plays at the commit: no free wait
    heard = paced_endpoint(base, SLOW, speculate_ms=96, clause_words=2, note_first=True, acknowledgements=True)
    assert heard is not None and heard.free_ms == 0
    assert paced_endpoint(None, SLOW, speculate_ms=96, clause_words=2, note_first=True, acknowledgements=False) is None


def test_a_lone_voice_to_voice_adds_the_stages_and_grows_on_a_slow_machine() -> None:
    from attune.pipeline.pacing import lone_voice_to_voice_ms

    fast = lone_voice_to_voice_ms(FAST, asr_pass_ms=150.0, commit_ms=800)
    slow = lone_voice_to_voice_ms(SLOW, asr_pass_ms=300.0, commit_ms=800)
    assert fast is not None and slow is not None
    assert 800 + 150 + 120 < fast < slow  # at least the commit, the pass and the first token
    assert slow - (800 + 300 + 450) == pytest.approx(8 * 1.3 * 1000 / 10.6 + 80, abs=1)  # 8 words, then Piper
    assert lone_voice_to_voice_ms(None, asr_pass_ms=150.0, commit_ms=800) is None


def test_the_servers_estimate_commits_as_the_configured_end_of_turn_says() -> None:
    from attune.config import load_config
    from attune.pipeline.pacing import lone_voice_to_voice_ms
    from attune.pipeline.stack import lone_voice_to_voice_s

    model = load_config(environ={}, overrides={"pipeline": {"eot_likely_ms": 700}})
    silence = load_config(environ={}, overrides={"pipeline": {"end_of_turn_model": "none",
                                                              "end_of_turn_silence_ms": 500}})
    for config, commit in ((model, 700), (silence, 500)):
        got = lone_voice_to_voice_s(config, SLOW, 0.3)
        want = lone_voice_to_voice_ms(SLOW, asr_pass_ms=300.0, commit_ms=commit, speculate_ms=96)
        assert got == pytest.approx((want or 0) / 1000)
        heard = lone_voice_to_voice_s(config, SLOW, 0.3, clause_speech_s=0.9)  # warm_up's first clause
        assert heard is not None and got is not None and heard - got == pytest.approx(0.9 - 0.08)
    assert lone_voice_to_voice_s(model, None, 0.3) is None


def test_a_lone_voice_to_voice_counts_the_first_clause_made_audible_and_the_pass_inside_the_commit() -> None:
    """The stage the estimate missed: a reply's first audio is its whole first clause synthesised and shaped
    (measured at start-up, ``clause_speech_ms``), not Piper's first chunk of a short clause (80 ms); and a lone
    session's ASR pass runs inside the commit's wait, from ``speculate_ms`` into the silence."""
    from attune.pipeline.pacing import TTS_FIRST_MS, lone_voice_to_voice_ms

    serial = lone_voice_to_voice_ms(SLOW, asr_pass_ms=300.0, commit_ms=800)
    inside = lone_voice_to_voice_ms(SLOW, asr_pass_ms=300.0, commit_ms=800, speculate_ms=96)
    longer = lone_voice_to_voice_ms(SLOW, asr_pass_ms=900.0, commit_ms=800, speculate_ms=96)
    heard = lone_voice_to_voice_ms(SLOW, asr_pass_ms=300.0, commit_ms=800, speculate_ms=96, clause_speech_ms=900.0)
    assert serial is not None and inside is not None and longer is not None and heard is not None
    assert serial - inside == pytest.approx(300.0)  # 96 + 300 ms end within the 800 ms wait
    assert longer - inside == pytest.approx(96 + 900 - 800)  # a pass that outlasts the wait delays the words
    assert heard - inside == pytest.approx(900.0 - TTS_FIRST_MS)


@pytest.mark.fakes
async def test_start_up_times_a_first_clause_made_audible_while_the_llm_writes() -> None:
    """``measure_first_clause``: the typical first clause through the TTS and the prosody DSP, started once the
    LLM has written its first token and before it ends (a shared LLM writes a reply's rest meanwhile)."""
    import numpy as np

    from attune.backends.base import ChatMessage
    from attune.config import load_config
    from attune.pipeline.pacing import TYPICAL_FIRST_CLAUSE
    from attune.pipeline.session_backends import SessionBackends, Voice
    from attune.pipeline.stack import measure_first_clause
    from attune.pipeline.turn import EnergyVAD
    from tests.fakes import FixedASR, ScriptedLLM, ToneTTS

    class WritingLLM(ScriptedLLM):
        writing = False

        async def _pieces(self, max_tokens, report, words):  # type: ignore[no-untyped-def]
            async for piece in super()._pieces(max_tokens, report, words):
                self.writing = True
                yield piece
            self.writing = False

    llm = WritingLLM([f" w{i}" for i in range(40)], delay_s=0.005)

    class WatchedTTS(ToneTTS):
        def __init__(self) -> None:
            super().__init__()
            self.during: list[bool] = []

        async def synthesize(self, text, prosody=None):  # type: ignore[no-untyped-def]
            self.during.append(llm.writing)
            async for chunk in super().synthesize(text, prosody):
                yield chunk

    shaped: list[int] = []

    class CountingDSP:
        def __init__(self, rate: int, params: object) -> None:
            pass

        def push(self, samples):  # type: ignore[no-untyped-def]
            shaped.append(len(samples))
            return samples

        def flush(self):  # type: ignore[no-untyped-def]
            return np.zeros(0, np.float32)

    tts = WatchedTTS()
    backends = SessionBackends(asr=FixedASR(), llm=llm, vad=EnergyVAD(), voice=Voice(tts), dsp_factory=CountingDSP)
    took = await measure_first_clause(backends, load_config(environ={}), [ChatMessage("system", "Be kind.")])
    assert took is not None and took > 0
    assert tts.texts == [TYPICAL_FIRST_CLAUSE] and tts.during == [True]  # while the LLM wrote
    assert shaped and len(llm.calls) == 1 and not llm.writing  # shaped by the DSP; the stream ran to its end
    flat = load_config(environ={}, overrides={"expression": {"apply_prosody": False}})
    shaped.clear()
    assert await measure_first_clause(backends, flat, []) is not None and not shaped
    assert await measure_first_clause(SessionBackends(asr=FixedASR(), llm=ScriptedLLM(fail_after=1),
                                                      vad=EnergyVAD(), voice=Voice(ToneTTS())),
                                      load_config(environ={}), []) is None  # a failing LLM: not timed
