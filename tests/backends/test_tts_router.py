"""VoiceModelRouter: tiers and fallback, no fail-over once audio is out, cool-down, override, stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from attune.backends.base import TTSBackend
from attune.backends.tts.prosody_map import native_dimensions
from attune.backends.tts.router import VoiceModelRouter
from attune.backends.tts.tts_factory import create_tts
from attune.config import Config
from attune.core.errors import BackendUnavailable, TTSError
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters
from tests.conftest import tone
from tests.engines_util import free_port, installed_model

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out


class ToneTTS:
    """A fake provider: tone chunks, with knobs to fail before or after its first chunk."""

    def __init__(self, name: str, rate: int = 22050, fail: str = "", chunks: int = 2) -> None:
        self.name, self.sample_rate, self.fail, self.chunks = name, rate, fail, chunks
        self.calls = 0

    async def synthesize(self, text: str, prosody: Any = None, *, emotion: str | None = None
                         ) -> AsyncIterator[AudioChunk]:
        self.calls += 1
        self.emotion = emotion
        if self.fail == "before":
            raise TTSError(f"{self.name} down", retryable=True, backend=self.name)
        for i in range(self.chunks):
            if self.fail == "after" and i == 1:
                raise TTSError(f"{self.name} crashed", retryable=True, backend=self.name)
            yield AudioChunk(tone(300, 0.25, self.sample_rate), self.sample_rate, 0.25 * i)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _collect(router: VoiceModelRouter, text: str = "Hello there.", **kw: Any) -> list[AudioChunk]:
    return [c async for c in router.synthesize(text, **kw)]


async def test_falls_back_along_the_tier_chain() -> None:
    csm, piper, espeak = ToneTTS("csm", 24000, fail="before"), ToneTTS("piper"), ToneTTS("espeak")
    router = VoiceModelRouter({"csm": csm, "piper": piper, "espeak": espeak}, tier="highest")
    assert router.planned_provider() == "csm" and router.planned_provider(provider="espeak") == "espeak"
    assert router.planned_provider(provider="nope") == ""
    chunks = await _collect(router)
    assert len(chunks) == 2 and (csm.calls, piper.calls, espeak.calls) == (1, 1, 0)
    assert router.last_provider == "piper" and native_dimensions(router.last_provider) == ("speech_rate",)
    stats = router.stats_dict()
    assert stats["csm"]["failures"] == 1 and stats["piper"]["requests"] == 1 and stats["piper"]["failures"] == 0
    assert stats["piper"]["rtf"] > 0 and stats["piper"]["mean_latency_ms"] >= 0


async def test_no_failover_once_audio_was_emitted() -> None:
    piper, espeak = ToneTTS("piper", fail="after"), ToneTTS("espeak")
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high")
    got: list[AudioChunk] = []
    with pytest.raises(TTSError, match="crashed"):
        async for c in router.synthesize("Hello."):
            got.append(c)
    assert len(got) == 1 and espeak.calls == 0


async def test_every_provider_failing_is_one_retryable_error() -> None:
    router = VoiceModelRouter({"piper": ToneTTS("piper", fail="before"), "espeak": ToneTTS("espeak", fail="before")})
    with pytest.raises(TTSError, match="every TTS provider failed") as err:
        await _collect(router)
    assert err.value.retryable


async def test_a_failing_provider_cools_down_then_returns() -> None:
    clock = Clock()
    piper, espeak = ToneTTS("piper", fail="before"), ToneTTS("espeak")
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, failure_threshold=2, cooldown_s=30, clock=clock)
    for _ in range(2):
        await _collect(router)
    assert piper.calls == 2 and router.chain() == ["espeak"]
    await _collect(router)
    assert piper.calls == 2  # skipped while cooling down
    clock.now += 31
    piper.fail = ""
    await _collect(router)
    assert piper.calls == 3 and router.chain() == ["piper", "espeak"]
    health = await router.health()
    assert health["piper"]["cooling_down"] is False and health["piper"]["stats"]["failures"] == 2


async def test_provider_override_and_tiers() -> None:
    piper, espeak = ToneTTS("piper"), ToneTTS("espeak")
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high",
                              unavailable={"csm": "not reachable"})
    await _collect(router, provider="espeak")
    await _collect(router, tier="fast")
    assert (piper.calls, espeak.calls) == (0, 2)
    with pytest.raises(BackendUnavailable, match="not reachable"):
        await _collect(router, provider="csm")
    with pytest.raises(TTSError, match="unknown tier"):
        await _collect(router, tier="ultra")
    with pytest.raises(TTSError, match="nothing to speak"):
        await _collect(router, text="  ")
    assert (piper.calls, espeak.calls) == (0, 2)  # bad requests never reach a provider


async def test_chunks_leave_at_the_router_rate() -> None:
    router = VoiceModelRouter({"csm": ToneTTS("csm", 24000)}, tier="highest", sample_rate=22050)
    chunks = await _collect(router)
    assert all(c.sample_rate == 22050 for c in chunks)
    assert len(chunks[0].samples) == pytest.approx(0.25 * 22050, abs=2)
    peak_bin = np.argmax(np.abs(np.fft.rfft(chunks[0].samples)))
    assert peak_bin * 22050 / len(chunks[0].samples) == pytest.approx(300, abs=8)


@pytest.mark.real
async def test_create_tts_builds_real_providers_and_falls_back_from_a_dead_csm() -> None:
    installed_model("piper-joe")
    config = Config()
    from dataclasses import replace

    config = replace(config, tts=replace(config.tts, tier="highest", csm_url=f"http://127.0.0.1:{free_port()}",
                                         timeout_s=2.0))
    router = create_tts(config)
    assert isinstance(router, TTSBackend) and all(isinstance(b, TTSBackend) for b in router.providers.values())
    assert set(router.providers) == {"csm", "piper", "espeak"}
    chunks = await _collect(router, "It is lovely to talk with you.")
    assert sum(c.duration_s for c in chunks) > 1.0
    assert router.stats_dict()["csm"]["failures"] == 1 and router.stats_dict()["piper"]["requests"] == 1
    health = await router.health()
    assert health["csm"]["available"] is False and health["piper"]["available"] is True


class PlainTTS:
    """A provider implementing only the protocol's synthesize(text, prosody)."""

    name, sample_rate = "plain", 22050

    async def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(tone(300, 0.2, 22050), 22050)


async def test_reference_emotion_reaches_providers_that_take_it() -> None:
    csm = ToneTTS("csm", 24000)
    router = VoiceModelRouter({"csm": csm, "plain": PlainTTS()}, tier="highest")
    await _collect(router, emotion="sad")
    assert csm.emotion == "sad"
    assert len(await _collect(router, provider="plain")) == 1


async def test_every_chunk_says_which_provider_spoke_it_and_what_it_did_natively() -> None:
    piper, espeak = ToneTTS("piper", fail="before"), ToneTTS("espeak")
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high")
    speech = [s async for s in router.synthesize_speech("Hello there.")]
    assert len(speech) == 2 and {(s.provider, s.native) for s in speech} == {("espeak", native_dimensions("espeak"))}
    assert router.planned_provider() == "piper"  # a plan, not who spoke
    rest = speech[0].remaining(ProsodyParameters(pitch_shift_semitones=3.0, volume_db=-4.0, breathiness=0.5))
    assert (rest.pitch_shift_semitones, rest.volume_db, rest.breathiness) == (0.0, 0.0, 0.5)


def test_render_speech_after_a_fail_over_applies_each_dimension_once() -> None:
    """speech_source uses the same per-chunk mechanism as replies: espeak-ng after Piper failed."""
    from attune.agent.speech_source import render_speech
    from tests.fakes import PitchedTTS, peak_hz

    piper, espeak = PitchedTTS("piper", native=False), PitchedTTS("espeak", native=True)
    piper.fail = True
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, tier="high")
    speech = render_speech("one two three four", ProsodyParameters(pitch_shift_semitones=4.0), router=router)
    assert speech.provider == "espeak" and "pitch_shift_semitones" in speech.native
    assert abs(peak_hz(espeak.raw[0], 22050) - 252.0) < 1.0
    assert abs(peak_hz(speech.audio, speech.sample_rate) - 252.0) < 3.0  # not shifted again (318 Hz)
