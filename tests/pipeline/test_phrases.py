"""Stock phrases through the speech cache: prewarm at start-up (a second start finds them on disk), the key's
voice, rate and DSP, bad config, a failing TTS, reply sentences looked up and the short ones stored, and on the
real Piper voice a disk hit that is the rendering itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attune.agent.brain import PromptBuilder
from attune.agent.prosody_dsp import ProsodyApplicator
from attune.backends.tts.cache import SpeechCache, SpeechStore
from attune.config import load_config
from attune.core import events as ev
from attune.core.emotion import EmotionCategory
from attune.core.errors import ConfigError
from attune.core.trace import TurnTrace
from attune.pipeline.phrases import BUSY_REPLY, Phrase, PhraseVoice, prewarm, stock_phrases, voice_of
from attune.pipeline.reply import Reply, ReplyDeps, ReplySettings
from attune.pipeline.understanding import TurnContext, Understander
from tests.fakes import FixedASR, ScriptedLLM, ToneTTS, calm_planner

LAYER = "fakes"  # STYLE.md layer 3: the stock-phrase path on a fake TTS (one real test is marked)
RATE = 16000


def voice(directory: Path, tts: Any = None, *, rate: int = RATE, dsp: bool = True) -> PhraseVoice:
    store = SpeechStore(directory, max_bytes=10**8)
    return PhraseVoice(tts or ToneTTS(), ProsodyApplicator if dsp else None, rate, SpeechCache(store=store))


def config(*, first_sounds: bool = False, **speech_cache: Any) -> Any:
    return load_config(environ={}, overrides={"speech_cache": speech_cache,
                                              "agent": {"acknowledgements": first_sounds}})


def test_with_the_first_sounds_on_start_up_renders_each_of_them_once() -> None:
    from attune.pipeline.acknowledgement import phrases as first_sounds

    plain, both = stock_phrases(config()), stock_phrases(config(first_sounds=True))
    sounds = {Phrase.of(text, e, i) for text, e, i in first_sounds()}
    assert set(both) == set(plain) | sounds and len(both) == len(set(both))
    assert len(both) < len(plain) + len(sounds)  # "Mm-hm." is both, in the same voices: rendered once


async def test_prewarm_renders_once_and_a_second_start_finds_every_phrase_on_disk(tmp_path: Path) -> None:
    phrases = stock_phrases(config(), greetings=("Hello, I'm here.", "  "))
    assert len(phrases) == 1 + 1 + 5 * 3  # the greeting, the refusal, and five acknowledgements in three emotions
    assert Phrase.of(BUSY_REPLY, EmotionCategory.NEUTRAL) in phrases  # a crowd of refusals costs no synthesis
    first_tts = ToneTTS()
    report = await prewarm(voice(tmp_path, first_tts), phrases)
    assert (report.ready, report.rendered, report.failed) == (0, 17, 0) and len(first_tts.texts) == 17
    second_tts = ToneTTS()
    second = voice(tmp_path, second_tts)  # a new process: an empty memory front over the same directory
    report = await prewarm(second, phrases)
    assert (report.ready, report.rendered) == (17, 0) and second_tts.texts == []
    ack = Phrase.of("I see.", "calm")
    assert second.cached(ack.text, ack.emotion, ack.prosody) is not None  # now in memory: no disk read on the loop


async def test_the_key_holds_the_voice_the_rate_and_whether_the_dsp_ran(tmp_path: Path) -> None:
    ack = Phrase.of("Okay.", EmotionCategory.CALM)
    shaped, raw, other_rate = voice(tmp_path), voice(tmp_path, dsp=False), voice(tmp_path, rate=24000)
    keys = {v.key(ack.text, ack.emotion, ack.prosody) for v in (shaped, raw, other_rate)}
    assert len(keys) == 3
    assert shaped.key(ack.text, ack.emotion, ack.prosody).voice == "tone"

    class Identified(ToneTTS):
        def voice_identity(self) -> str:
            return "persona:clinic/amy@1.1"

    assert voice_of(Identified(), "tone") == "persona:clinic/amy@1.1"
    assert (await raw.render(ack.text, ack.emotion, ack.prosody)) is not None
    assert await shaped.lookup(ack.text, ack.emotion, ack.prosody) is None


async def test_a_failing_tts_is_counted_not_raised(tmp_path: Path) -> None:
    report = await prewarm(voice(tmp_path, ToneTTS(fail_on=0)), [Phrase.of("Right.", "neutral"),
                                                                  Phrase.of("Okay.", "neutral")])
    assert (report.failed, report.rendered) == (1, 1)


def test_an_unknown_acknowledgement_emotion_names_the_key() -> None:
    with pytest.raises(ConfigError, match="speech_cache.acknowledgement_emotions.*'grumpy'"):
        stock_phrases(config(acknowledgement_emotions=["calm", "grumpy"]))


def _reply(llm: ScriptedLLM, tts: ToneTTS, phrases: PhraseVoice) -> tuple[Reply, list[Any]]:
    events: list[Any] = []
    understander = Understander(calm_planner, lambda rs: rs[-1], lambda rs: "stable", PromptBuilder())

    async def clock(duration_s: float) -> float:
        return 0.0

    deps = ReplyDeps(FixedASR(), llm, tts, understander, ReplySettings(output_sample_rate=RATE), TurnContext,
                     clock, events.append, ProsodyApplicator, phrases=phrases)
    trace = TurnTrace(turn=1, speech_start_s=0.0, speech_end_s=1.0)
    return Reply(deps, 1, None, trace, text="hello"), events


async def _run(reply: Reply) -> None:
    reply.start()
    reply.commit()
    assert reply.task is not None
    await asyncio.wait_for(reply.task, 30)


def _entries(directory: Path) -> int:
    return len(list(directory.glob("*.npz")))


def _audio(events: list[Any]) -> np.ndarray:
    return np.concatenate([e.audio.samples for e in events if e.type == ev.AUDIO_DELTA])


async def test_reply_sentences_are_looked_up_and_only_the_short_ones_stored(tmp_path: Path) -> None:
    tokens = ("I", " see.", " That", " sounds", " like", " a", " long", " day", " for", " you.")
    tts = ToneTTS()
    phrases = voice(tmp_path, tts)
    first, events1 = _reply(ScriptedLLM(tokens), tts, phrases)
    await _run(first)
    await phrases.drain()  # the disk write runs behind the reply
    assert tts.texts == ["I see.", "That sounds like a long day for you."]
    assert _entries(tmp_path) == 1  # "I see." kept; the long sentence is not stored
    second, events2 = _reply(ScriptedLLM(tokens), tts, voice(tmp_path, tts))  # another process, same directory
    await _run(second)
    assert tts.texts[2:] == ["That sounds like a long day for you."]  # "I see." came from the cache
    assert np.array_equal(_audio(events1), _audio(events2))  # and sounds the same
    assert second.outcome().heard_text == "I see. That sounds like a long day for you."
    assert second.outcome().trace.info["cached_sentences"] == 1 and "cached_sentences" not in first.outcome().trace.info


async def test_a_prewarmed_acknowledgement_serves_the_reply_that_says_it(tmp_path: Path) -> None:
    tts = ToneTTS()
    phrases = voice(tmp_path, tts)
    calm = calm_planner(None, "complement")
    ack = Phrase("Okay.", EmotionCategory.CALM, calm.prosody)
    assert (await prewarm(phrases, [ack])).rendered == 1
    reply, events = _reply(ScriptedLLM(("Okay.",)), tts, phrases)
    await _run(reply)
    assert tts.texts == ["Okay."]  # only the prewarm synthesised it
    assert any(e.type == ev.AUDIO_DELTA for e in events)
    other_voice, _ = _reply(ScriptedLLM(("Okay.",)), ToneTTS(), phrases)  # the session speaks with another TTS
    await _run(other_voice)
    assert other_voice.d.tts.texts == ["Okay."]  # type: ignore[attr-defined]  # not the cache's voice: synthesised


@pytest.mark.real
async def test_on_piper_a_disk_hit_is_the_rendering_itself(tmp_path: Path) -> None:
    from attune.backends.tts.piper_backend import PiperTTS
    from tests.engines_util import installed_model

    piper = PiperTTS(installed_model("piper-joe"))
    ack = Phrase.of("I see.", EmotionCategory.CALM)
    made = await voice(tmp_path, piper, rate=24000).render(ack.text, ack.emotion, ack.prosody)
    assert made is not None and 0.3 < made.duration_s < 2.0 and made.sample_rate == 24000
    assert float(np.sqrt(np.mean(made.samples ** 2))) > 0.01  # speech, not silence
    cold = voice(tmp_path, piper, rate=24000)
    hit = await cold.lookup(ack.text, ack.emotion, ack.prosody)
    assert hit is not None and np.array_equal(hit.samples, made.samples)
    assert voice_of(piper, "piper").startswith(piper.model_path.name + ":")


async def test_warm_up_prewarms_the_stock_phrases_and_a_second_start_renders_none(tmp_path: Path) -> None:
    from attune.pipeline.session import SessionBackends
    from attune.pipeline.session_backends import Voice
    from attune.pipeline.stack import warm_up
    from attune.pipeline.turn import EnergyVAD

    cfg = config(acknowledgements=["Okay.", "I see."], acknowledgement_emotions=["calm"])
    counts = []
    for _ in range(2):  # two starts over one directory
        tts = ToneTTS()
        backends = SessionBackends(asr=FixedASR(), llm=ScriptedLLM(), vad=EnergyVAD(),
                                   voice=Voice(tts, voice(tmp_path, tts)))
        out = await warm_up(backends, cfg, greetings=("Welcome back.",))
        assert "phrases_s" in out
        counts.append(len(tts.texts) - 1)  # warm_up's own "Hello." is not a stock phrase
    assert counts == [4, 0]  # the greeting, two acknowledgements, the refusal
    off = config(prewarm=False)
    tts = ToneTTS()
    backends = SessionBackends(asr=FixedASR(), llm=ScriptedLLM(), vad=EnergyVAD(),
                               voice=Voice(tts, voice(tmp_path / "off", tts)))
    assert "phrases_s" not in await warm_up(backends, off) and len(tts.texts) == 1


async def test_speech_from_a_fail_over_is_played_but_never_cached_under_the_planned_voice(tmp_path: Path) -> None:
    from attune.backends.tts.router import VoiceModelRouter
    from tests.fakes import PitchedTTS

    piper, espeak = PitchedTTS("piper", native=False), PitchedTTS("espeak", native=True)
    piper.fail = True
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high", sample_rate=22050)
    phrases = voice(tmp_path, router)
    ack = Phrase.of("Okay.", EmotionCategory.CALM)
    spoken = await phrases.render(ack.text, ack.emotion, ack.prosody)
    assert spoken is not None and spoken.duration_s > 0.1  # espeak spoke it
    assert phrases.key(ack.text, ack.emotion, ack.prosody).provider == "piper"
    assert await phrases.lookup(ack.text, ack.emotion, ack.prosody) is None and _entries(tmp_path) == 0
    reply, _ = _reply(ScriptedLLM(("Okay.",)), router, phrases)  # type: ignore[arg-type]
    await _run(reply)
    await phrases.drain()
    assert await phrases.lookup(ack.text, ack.emotion, ack.prosody) is None and _entries(tmp_path) == 0
    piper.fail = False
    assert await phrases.render(ack.text, ack.emotion, ack.prosody) is not None
    assert _entries(tmp_path) == 1  # piper spoke: cached under its key
