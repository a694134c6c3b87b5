"""Stock phrases spoken from the speech cache: ``PhraseVoice`` renders a short text exactly as a reply's sentence
would sound (TTS with the emotion's prosody, the prosody DSP for what the provider did not apply natively, the
output rate) into a ``SpeechCache``, and ``prewarm`` renders a list of them at start-up, so the kiosk's greeting,
a persona's greeting and the acknowledgements (``pipeline/acknowledgement.py``) cost nothing at run time.

Reply sentences go through it too (``ReplyDeps.phrases``): every sentence is looked up (the memory front, then
one file open; far cheaper than the TTS), and a sentence of at most ``STORE_MAX_WORDS`` words is stored after it
is spoken. Short sentences are the ones that come back ("I see.", "Oh no.", "That's wonderful."), and they are
also the acknowledgements rendered at start-up, which share their keys; long sentences almost never repeat word
for word, and storing each (about 100 KB per second of speech, fsynced) would only churn the size cap and push
the stock phrases out. A hit sounds bit-identical to the rendering it replaces: the key holds everything that
changes the sound, and the entry holds the DSP's float output, not a re-quantised copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attune.agent.persona_voice import PersonaVoice
from attune.backends.base import NamedVoice, SpeakingVoice, TTSBackend
from attune.backends.tts.cache import CachedSpeech, SpeechCache, SpeechKey
from attune.backends.tts.router import VoiceModelRouter, speech_of
from attune.core.audio import resample
from attune.core.emotion import EmotionCategory
from attune.core.errors import BackendError, ConfigError
from attune.core.normalize import normalize_for_tts
from attune.core.prosody import ProsodyParameters, profile_for

log = logging.getLogger(__name__)
STORE_MAX_WORDS = 4  # reply sentences this short are stored; longer ones are only looked up
ACK_INTENSITY = 0.7  # the acknowledgements are rendered at this intensity of each configured emotion
# A turn refused for want of a place at the LLM (``pipeline.shedding``): a stock phrase, rendered at start-up, so
# that a crowd of refusals costs no synthesis while the admitted replies need the cores.
BUSY_REPLY = "Sorry, I'm answering a lot of people right now. Please say that again in a moment."


@dataclass(frozen=True)
class Phrase:
    """A stock phrase: the words and the prosody (an emotion's profile) it is spoken with."""

    text: str
    emotion: EmotionCategory
    prosody: ProsodyParameters

    @classmethod
    def of(cls, text: str, emotion: EmotionCategory | str, intensity: float = ACK_INTENSITY) -> Phrase:
        category = EmotionCategory(emotion)
        return cls(text, category, profile_for(category, intensity))


@dataclass
class PrewarmReport:
    ready: int = 0  # found in the cache (memory or disk)
    rendered: int = 0
    failed: int = 0


class PhraseVoice:
    """``cached(text, emotion, prosody)`` -> audio or None (memory front only: never blocks the loop);
    ``render(...)`` finds it (memory, then disk) or makes and caches it.

    ``dsp_factory(sample_rate, prosody)`` is the reply's prosody DSP (None: no DSP), given what the speaking
    provider did not apply natively, exactly as for a reply's sentence; ``out_rate`` is the output sample rate.
    The audio is kept as rendered (leading silence and all), as a reply's sentence is; callers that start a
    reply with it trim the onset, as the reply does for its first sentence.
    """

    def __init__(self, tts: TTSBackend, dsp_factory: Callable[[int, ProsodyParameters], Any] | None, out_rate: int,
                 cache: SpeechCache | None = None) -> None:
        self.tts = tts
        self.dsp_factory = dsp_factory
        self.out_rate = out_rate
        self.cache = cache if cache is not None else SpeechCache()
        self._writes: set[asyncio.Task[None]] = set()  # disk writes of kept sentences, owned here

    def speaking_with(self, tts: TTSBackend) -> PhraseVoice:
        """The same cache with another voice (a session's persona): its keys name that voice."""
        return PhraseVoice(tts, self.dsp_factory, self.out_rate, self.cache)

    def key(self, text: str, emotion: EmotionCategory | str, prosody: ProsodyParameters | None) -> SpeechKey:
        provider = self.tts.planned_provider() if isinstance(self.tts, SpeakingVoice) else str(self.tts.name)
        shaped = self.dsp_factory is not None and prosody is not None
        return SpeechKey.of(normalize_for_tts(text), voice=voice_of(self.tts, provider),
                            provider=provider if shaped else f"{provider}+raw",  # no DSP: another sound
                            emotion=EmotionCategory(emotion).value, prosody=prosody, sample_rate=self.out_rate)

    def cached(self, text: str, emotion: EmotionCategory | str, prosody: ProsodyParameters | None
               ) -> CachedSpeech | None:
        return self.cache.get_memory(self.key(text, emotion, prosody))

    async def lookup(self, text: str, emotion: EmotionCategory | str, prosody: ProsodyParameters | None
                     ) -> CachedSpeech | None:
        """Memory, then disk (off the loop); None on a miss."""
        key = self.key(text, emotion, prosody)
        hit = self.cache.get_memory(key)
        if hit is None and self.cache.store is not None:
            hit = await asyncio.to_thread(self.cache.get, key)
        return hit

    async def store(self, text: str, emotion: EmotionCategory | str, prosody: ProsodyParameters | None,
                    samples: np.ndarray) -> CachedSpeech | None:
        """Keep audio rendered elsewhere (a reply's sentence) under its key; writing to disk runs off the loop."""
        if samples.size == 0:
            return None
        key = self.key(text, emotion, prosody)
        return await asyncio.to_thread(self.cache.put, key, samples, self.out_rate)

    def keep(self, text: str, emotion: EmotionCategory | str, prosody: ProsodyParameters | None,
             samples: np.ndarray, spoke: str) -> CachedSpeech | None:
        """Keep audio rendered elsewhere (a reply's sentence) that provider ``spoke``: in memory now, on disk in
        the background, so the caller waits for no file (``drain()`` waits for the writes still running). Not
        kept when another provider than the planned one spoke (a fail-over): it would sit under the wrong key."""
        key = self.key(text, emotion, prosody)
        if samples.size == 0 or not _same_provider(key, spoke):
            return None
        item = self.cache.put(key, samples, self.out_rate, persist=False)
        if self.cache.store is not None:
            task = asyncio.create_task(asyncio.to_thread(self.cache.persist, key, item), name="speech-cache-write")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        return item

    async def drain(self) -> None:
        await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def render(self, text: str, emotion: EmotionCategory | str, prosody: ProsodyParameters | None
                     ) -> CachedSpeech | None:
        """The phrase from the cache, or synthesised as a reply's sentence would be (TTS, then the DSP for what the
        provider did not apply, off the loop) and cached. None when the TTS fails (a stock phrase is an extra)."""
        hit = await self.lookup(text, emotion, prosody)
        if hit is not None:
            return hit
        speakable = normalize_for_tts(text)
        if not speakable:
            return None
        key = self.key(text, emotion, prosody)
        dsp: Any = None
        parts: list[np.ndarray] = []
        spoke = ""
        try:
            async for speech in speech_of(self.tts, speakable, prosody):
                spoke = spoke or speech.provider
                if dsp is None and self.dsp_factory is not None and prosody is not None:
                    dsp = self.dsp_factory(self.tts.sample_rate, speech.remaining(prosody))
                parts.append(await asyncio.to_thread(self._shape, speech.chunk.samples, speech.chunk.sample_rate, dsp))
            if dsp is not None:
                parts.append(await asyncio.to_thread(self._shape, dsp.flush(), self.tts.sample_rate, None))
        except BackendError as exc:
            log.warning("stock phrase %r not rendered: %s", text, exc)
            return None
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if samples.size == 0:
            return None
        if not _same_provider(key, spoke):  # a fail-over spoke: play it, but never under the planned voice's key
            log.info("stock phrase %r spoken by %s, not %s: not cached", text, spoke, key.provider)
            return CachedSpeech(samples, self.out_rate)
        return await self.store(text, emotion, prosody, samples)

    def _shape(self, samples: np.ndarray, rate: int, dsp: Any) -> np.ndarray:
        out = np.asarray(dsp.push(samples) if dsp is not None else samples, dtype=np.float32)
        return resample(out, rate, self.out_rate) if out.size and rate != self.out_rate else out


def _same_provider(key: SpeechKey, spoke: str) -> bool:
    return key.provider.removesuffix("+raw") == spoke


async def prewarm(voice: PhraseVoice, phrases: Iterable[Phrase]) -> PrewarmReport:
    """Make every phrase ready in the cache: found (a later start finds them on disk) or rendered now."""
    report = PrewarmReport()
    if voice.cache.store is not None:
        await asyncio.to_thread(voice.cache.store.sweep)  # expired entries go before any is read
    for phrase in phrases:
        if await voice.lookup(phrase.text, phrase.emotion, phrase.prosody) is not None:
            report.ready += 1
        elif await voice.render(phrase.text, phrase.emotion, phrase.prosody) is not None:
            report.rendered += 1
        else:
            report.failed += 1
    return report


def stock_phrases(config: Any, greetings: Iterable[str] = ()) -> list[Phrase]:
    """The acknowledgements of ``config.speech_cache`` in each of its emotions, each greeting (neutral), the
    refusal (``BUSY_REPLY``, neutral) and with ``agent.acknowledgements`` the first sounds, each phrase once.
    An unknown emotion name is a ConfigError naming the key."""
    c = config.speech_cache
    emotions: list[EmotionCategory] = []
    for name in c.acknowledgement_emotions:
        try:
            emotions.append(EmotionCategory(name))
        except ValueError:
            known = ", ".join(e.value for e in EmotionCategory)
            raise ConfigError(f"config key 'speech_cache.acknowledgement_emotions': {name!r} is not an emotion "
                              f"(known: {known})") from None
    phrases = [Phrase.of(g, EmotionCategory.NEUTRAL) for g in [*greetings, BUSY_REPLY] if g.strip()]
    phrases += [Phrase.of(text, e) for e in emotions for text in c.acknowledgements if text.strip()]
    if config.agent.acknowledgements:  # the first sound's choices (pipeline.acknowledgement), each in its voices
        from attune.pipeline.acknowledgement import phrases as first_sounds

        phrases += [Phrase.of(text, e, intensity) for text, e, intensity in first_sounds()]
    return list(dict.fromkeys(phrases))  # a first sound that is also a stock acknowledgement is rendered once


def voice_of(tts: TTSBackend, provider: str) -> str:
    """The identity of the voice a provider of the router speaks with, for the key: a persona's voice's
    ``identity()`` (its file, pitch, speed, sample) with the provider, else the provider backend's own
    ``voice_identity()`` (Piper's file name and size, espeak-ng's voice, CSM's speaker), else the provider's name."""
    if isinstance(tts, PersonaVoice):
        return f"{tts.identity()}|{provider}"
    backend = tts.providers.get(provider, tts) if isinstance(tts, VoiceModelRouter) else tts
    return backend.voice_identity() if isinstance(backend, NamedVoice) else provider
