"""VoiceModelRouter: one TTSBackend in front of several providers, with quality tiers and fallback chains.

A request walks its chain (or the one provider it names) and fails over to the next provider only while none
of its audio has been emitted (livekit/agents' rule); after that a failure is the caller's. A provider that
fails ``failure_threshold`` times in a row is skipped for ``cooldown_s``. Every chunk leaves at the router's
``sample_rate``. ``synthesize_speech`` says with every chunk which provider spoke it and which prosody dimensions
that provider applied natively (``SpeechAudio``), so the prosody DSP applies exactly the rest; ``speech_of`` gives
the same for any TTS backend. Per-provider statistics: requests, failures, mean latency, time to first audio, RTF.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attune.backends.base import HealthProbe, SpeakingVoice, TTSBackend
from attune.backends.tts.prosody_map import native_dimensions
from attune.backends.tts.tts_common import check_text
from attune.core.audio import resample
from attune.core.catalog import tts_tiers
from attune.core.errors import BackendError, BackendUnavailable, TTSError
from attune.core.frames import AudioChunk, SpeechAudio

TIERS: dict[str, tuple[str, ...]] = tts_tiers()  # each tier's chain, from the providers' catalogue entries


@dataclass
class ProviderStats:
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    total_latency_s: float = 0.0  # request start -> last chunk, successful requests
    total_first_audio_s: float = 0.0
    total_audio_s: float = 0.0
    successes: int = 0
    cooldown_until: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        n = max(self.successes, 1)
        return {
            "requests": self.requests,
            "failures": self.failures,
            "mean_latency_ms": round(1000 * self.total_latency_s / n, 1),
            "mean_first_audio_ms": round(1000 * self.total_first_audio_s / n, 1),
            "rtf": round(self.total_latency_s / self.total_audio_s, 4) if self.total_audio_s else 0.0,
        }


class VoiceModelRouter:
    name = "router"

    def __init__(self, providers: Mapping[str, TTSBackend], *, tier: str = "high", sample_rate: int = 22050,
                 failure_threshold: int = 3, cooldown_s: float = 30.0,
                 unavailable: Mapping[str, str] | None = None, default_provider: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if tier not in TIERS:
            raise TTSError(f"unknown tier '{tier}' (known: {', '.join(TIERS)})")
        self.providers = dict(providers)
        self.unavailable = dict(unavailable or {})  # name -> why it could not be built
        self.tier = tier
        self.default_provider = default_provider  # used when a request names none
        self.preferred: tuple[str, ...] = ()  # a persona's chain (``agent.persona_voice``); () = the tier's
        self.sample_rate = sample_rate
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.stats: dict[str, ProviderStats] = {name: ProviderStats() for name in self.providers}
        self.last_provider = ""  # the provider whose audio the latest request emitted (any session's; for reports)

    def chain(self, tier: str | None = None, provider: str | None = None) -> list[str]:
        """The providers a request will try, in order: built, not cooling down. A named provider (the request's
        or ``default_provider``) is the only one; else ``preferred`` where any of it is built and not cooling
        down; else the tier's chain."""
        provider = provider or self.default_provider
        if provider:
            if provider not in self.providers:
                why = self.unavailable.get(provider, "not registered")
                raise BackendUnavailable(f"TTS provider '{provider}' is not available: {why}", backend=provider)
            return [provider]
        now = self._clock()
        if self.preferred and tier is None:
            chosen = [n for n in self.preferred if n in self.providers and self.stats[n].cooldown_until <= now]
            if chosen:
                return chosen
        names = TIERS.get(tier or self.tier)
        if names is None:
            raise TTSError(f"unknown tier '{tier}' (known: {', '.join(TIERS)})")
        return [n for n in names if n in self.providers and self.stats[n].cooldown_until <= now]

    def planned_provider(self, tier: str | None = None, provider: str | None = None) -> str:
        """The provider the next request will try first ("" if none). Only a plan: after a fail-over another one
        speaks, so the DSP decides from each chunk's ``SpeechAudio.native``, never from this."""
        try:
            names = self.chain(tier, provider)
        except BackendUnavailable:
            return ""
        return names[0] if names else ""

    def _failed(self, name: str) -> None:
        s = self.stats[name]
        s.failures += 1
        s.consecutive_failures += 1
        if s.consecutive_failures >= self.failure_threshold:
            s.cooldown_until = self._clock() + self.cooldown_s
            s.consecutive_failures = 0

    async def synthesize(self, text: str, prosody: Any = None, *, tier: str | None = None,
                         provider: str | None = None, emotion: str | None = None) -> AsyncIterator[AudioChunk]:
        """The ``TTSBackend`` method: the audio of ``synthesize_speech`` without who spoke it."""
        async for speech in self.synthesize_speech(text, prosody, tier=tier, provider=provider, emotion=emotion):
            yield speech.chunk

    async def synthesize_speech(self, text: str, prosody: Any = None, *, tier: str | None = None,
                                provider: str | None = None, emotion: str | None = None
                                ) -> AsyncIterator[SpeechAudio]:
        """Speech for ``text``: each chunk at ``sample_rate`` with the provider that spoke it and the dimensions
        of ``prosody`` it applied natively. Every chunk of one request comes from one provider (fail-over happens
        only before the first chunk). Raises TTSError when every provider failed."""
        check_text(text, self.name)  # a bad request fails here, not once per provider
        names = self.chain(tier, provider)
        if not names:
            raise TTSError(f"no TTS provider available for tier '{tier or self.tier}' (all cooling down or "
                           f"missing: {self.unavailable or 'none built'})", retryable=True)
        errors: list[str] = []
        for name in names:
            backend, stats = self.providers[name], self.stats[name]
            stats.requests += 1
            emitted, audio_s, first_s = False, 0.0, 0.0
            native = native_dimensions(name)
            t0 = time.perf_counter()
            try:
                # ``emotion`` (a reference-bank name) only goes to providers when set: the protocol's
                # synthesize(text, prosody) is all a third-party provider has to implement.
                stream = (backend.synthesize(text, prosody, emotion=emotion)  # type: ignore[call-arg]
                          if emotion is not None else backend.synthesize(text, prosody))
                async for chunk in stream:
                    if not emitted:
                        first_s = time.perf_counter() - t0
                        self.last_provider = name
                    emitted = True
                    audio_s += chunk.duration_s
                    yield SpeechAudio(self._at_rate(chunk), name, native)
            except BackendError as exc:
                self._failed(name)
                if emitted:
                    raise
                errors.append(f"{name}: {exc}")
                continue
            stats.successes += 1
            stats.consecutive_failures = 0
            stats.total_latency_s += time.perf_counter() - t0
            stats.total_first_audio_s += first_s
            stats.total_audio_s += audio_s
            return
        raise TTSError("every TTS provider failed: " + "; ".join(errors), retryable=True)

    def _at_rate(self, chunk: AudioChunk) -> AudioChunk:
        if chunk.sample_rate == self.sample_rate:
            return chunk
        return AudioChunk(resample(chunk.samples, chunk.sample_rate, self.sample_rate), self.sample_rate,
                          chunk.timestamp_s)

    async def health(self) -> dict[str, Any]:
        """Per provider: available, cooling down, its own health answer where it has one, and its statistics."""
        now = self._clock()
        out: dict[str, Any] = {}
        for name, backend in self.providers.items():
            entry: dict[str, Any] = {"available": True, "cooling_down": self.stats[name].cooldown_until > now,
                                     "stats": self.stats[name].to_dict()}
            if isinstance(backend, HealthProbe):
                try:
                    entry["health"] = await backend.health()
                except BackendError as exc:
                    entry.update(available=False, error=str(exc))
            out[name] = entry
        for name, why in self.unavailable.items():
            out[name] = {"available": False, "error": why}
        return out

    def stats_dict(self) -> dict[str, dict[str, float | int]]:
        return {name: s.to_dict() for name, s in self.stats.items()}


def provider_names(tiers: Sequence[str] = tuple(TIERS)) -> list[str]:
    return sorted({n for t in tiers for n in TIERS[t]})


async def speech_of(tts: TTSBackend, text: str, prosody: Any = None) -> AsyncIterator[SpeechAudio]:
    """``tts``'s speech for ``text`` as ``SpeechAudio``: the router (or a view of it with ``synthesize_speech``,
    like a persona's voice) says per chunk who spoke; any other backend speaks itself, with the native
    dimensions listed for its name."""
    if isinstance(tts, SpeakingVoice):
        async for speech in tts.synthesize_speech(text, prosody):
            yield speech
        return
    native = native_dimensions(tts.name)
    async for chunk in tts.synthesize(text, prosody):
        yield SpeechAudio(chunk, tts.name, native)
