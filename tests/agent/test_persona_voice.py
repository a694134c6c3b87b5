"""Persona voices with the real embedded Piper voice: the persona's pitch moves the F0 of the audio, its speed
Piper's length scale, a user-supplied voice file is loaded once and shared, the persona's chain is the one
tried; and the CSM client hands the persona's sample to the service as the first context segment."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from attune.agent.persona_model import Sample, VoiceConfig, parse_persona
from attune.agent.persona_voice import PersonaVoice, VoiceRegistry
from attune.agent.speech_dsp import f0_track
from attune.backends.tts.csm_client import CSMClientTTS
from attune.backends.tts.csm_service import create_app
from attune.backends.tts.piper_backend import PiperTTS
from attune.backends.tts.router import VoiceModelRouter, speech_of
from attune.core.audio import load_wav_bytes, wav_bytes
from tests.backends.test_csm import FakeCSM
from tests.conftest import tone
from tests.engines_util import installed_model, piper_seed, serve
from tests.fakes import ToneTTS

LAYER = "real"
TEXT = "Good morning, I am here to help you today."


@pytest.fixture(scope="module")
def joe() -> PiperTTS:
    return PiperTTS(installed_model("piper-joe"))


def _router(piper: object) -> VoiceModelRouter:
    espeak = ToneTTS(22050)
    espeak.name = "espeak"
    return VoiceModelRouter({"piper": piper, "espeak": espeak}, sample_rate=22050)  # type: ignore[dict-item]


async def _speak(voice: PersonaVoice) -> tuple[np.ndarray, list[str]]:
    import onnxruntime

    onnxruntime.set_seed(piper_seed())
    parts, providers = [], []
    async for speech in speech_of(voice, TEXT):
        parts.append(speech.chunk.samples)
        providers.append(speech.provider)
    return np.concatenate(parts), providers


def _median_f0(x: np.ndarray, rate: int) -> float:
    f0, _ = f0_track(x, rate)
    return float(np.median(f0[f0 > 0]))


async def test_pitch_moves_f0_and_speed_is_native(joe: PiperTTS) -> None:
    router = _router(joe)
    base_length = joe._base_length
    low, who = await _speak(PersonaVoice(router, VoiceConfig(pitch=-4.0)))
    high, _ = await _speak(PersonaVoice(router, VoiceConfig(pitch=4.0)))
    plain, _ = await _speak(PersonaVoice(router, VoiceConfig()))
    fast, _ = await _speak(PersonaVoice(router, VoiceConfig(speed=1.5)))
    assert who == ["piper"]
    f_low, f_plain, f_high = (_median_f0(x, 22050) for x in (low, plain, high))
    assert f_low < f_plain < f_high
    assert 1.4 < f_high / f_low < 2.2  # 8 semitones is x1.59
    assert len(fast) < 0.8 * len(plain)  # Piper's length scale: the same words, said faster
    assert abs(_median_f0(fast, 22050) / f_plain - 1.0) < 0.12  # ... at the same pitch
    assert joe._base_length == base_length  # the shared voice keeps its own rate


async def test_the_chain_is_the_personas_and_falls_back(joe: PiperTTS) -> None:
    router = _router(joe)
    _, who = await _speak(PersonaVoice(router, VoiceConfig(provider="espeak", fallback=("piper",))))
    assert set(who) == {"espeak"}
    _, who = await _speak(PersonaVoice(router, VoiceConfig(provider="csm", fallback=("piper",))))
    assert set(who) == {"piper"}  # csm is not built here: the rest of the chain speaks
    assert router.stats["espeak"].requests == 1  # the shared router's figures


async def test_a_user_voice_file_is_loaded_once_and_shared(joe: PiperTTS, tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    os.symlink(joe.model_path, voices / "mine.onnx")
    os.symlink(f"{joe.model_path}.json", voices / "mine.onnx.json")
    registry = VoiceRegistry()
    record = parse_persona({"id": "mine", "voice": {"model": "mine.onnx", "speed": 1.2}})
    router = _router(ToneTTS(22050))
    a = PersonaVoice.build(router, record, registry=registry, voices_dir=voices)
    b = PersonaVoice.build(router, record, registry=registry, voices_dir=voices)
    assert len(registry) == 1
    assert a.providers["piper"]._voice is b.providers["piper"]._voice  # one loaded model
    audio, who = await _speak(a)
    assert who == ["piper"] and len(audio) > 22050  # the user's voice spoke, not the tone in the router
    assert "mine.onnx@" in a.identity()


async def test_csm_gets_the_sample_as_its_first_context_segment(tmp_path: Path) -> None:
    engine = FakeCSM()
    samples = tmp_path / "samples"
    samples.mkdir()
    wav = wav_bytes(tone(150, 7.0, 24000), 24000)
    sample = Sample("cd" * 32, 7.0, 24000, 1, 16, 40.0)
    (samples / f"{sample.sha256}.wav").write_bytes(wav)
    record = parse_persona({"id": "ref", "voice": {"provider": "csm", "fallback": []}}).with_sample(sample)
    async with serve(create_app(engine, {})) as url:
        router = VoiceModelRouter({"csm": CSMClientTTS(url)}, sample_rate=24000)
        voice = PersonaVoice.build(router, record, registry=VoiceRegistry(), voices_dir=None, samples_dir=samples)
        async for _ in speech_of(voice, "Hello there."):
            pass
        plain = router.providers["csm"]
        async for _ in plain.synthesize("Hello again."):
            pass
    (_, _, context), (_, _, none) = engine.calls
    assert len(context) == 1 and len(context[0].audio) == pytest.approx(7 * 24000, abs=2)
    expected, _ = load_wav_bytes(wav)
    assert np.allclose(context[0].audio, expected, atol=1e-4)
    assert none == []  # the shared client stays without a reference


async def test_reply_sentences_in_a_personas_voice_are_cached_apart() -> None:
    """The speech cache's phrase voice, switched to a persona, keys by the persona's identity over the one cache:
    a sentence kept in one persona's voice is never played in another's."""
    from attune.core.emotion import EmotionCategory
    from attune.pipeline.phrases import PhraseVoice

    router = _router(ToneTTS(22050))
    shared = PhraseVoice(router, None, 16000)
    low = shared.speaking_with(PersonaVoice(router, VoiceConfig(pitch=-3.0)))
    high = shared.speaking_with(PersonaVoice(router, VoiceConfig(pitch=3.0)))
    keys = {v.key("Okay.", EmotionCategory.CALM, None) for v in (shared, low, high)}
    assert len(keys) == 3
    assert low.cache is shared.cache and low.tts is not shared.tts
    assert await low.render("Okay.", EmotionCategory.CALM, None) is not None
    assert low.cached("Okay.", EmotionCategory.CALM, None) is not None
    assert high.cached("Okay.", EmotionCategory.CALM, None) is None
