"""Openings spoken from the cache: ``OpeningVoice`` renders each opening through the session's own speech path
(TTS with the expressed emotion's prosody, the prosody DSP, the output rate, the leading silence trimmed) into a
``SpeechCache`` at start-up, so at the moment a turn is committed the opening is ready to play.

The choice of words is the agent's (``attune.agent.openings``); this module only makes and finds the sound.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from attune.agent.openings import OPENINGS, Opening
from attune.backends.base import TTSBackend
from attune.backends.tts.cache import CachedSpeech, SpeechCache, SpeechKey
from attune.backends.tts.router import speech_of
from attune.core.audio import resample, trim_leading_silence
from attune.core.emotion import EmotionCategory
from attune.core.errors import BackendError
from attune.core.prosody import ProsodyParameters, profile_for

log = logging.getLogger(__name__)
INTENSITY_LEVELS = (0.4, 0.7, 1.0)  # openings are rendered at the nearest of these, so a few renders serve all plans
# What the default strategy expresses most (complement: calm for agitation, warmth for low moods, a positive
# feeling matched at ~0.8 x the detector's confidence; neutral when unsure): rendered at start-up. Any other
# emotion is rendered the first time it is needed, for the next turn.
PREWARM: tuple[tuple[EmotionCategory, float], ...] = (
    (EmotionCategory.NEUTRAL, 1.0), (EmotionCategory.CALM, 0.7), (EmotionCategory.AFFECTIONATE, 0.7),
    (EmotionCategory.HAPPY, 0.4), (EmotionCategory.HAPPY, 0.7), (EmotionCategory.EXCITED, 0.4),
    (EmotionCategory.EXCITED, 0.7), (EmotionCategory.CONTENT, 0.4),
)


def opening_level(intensity: float) -> float:
    return min(INTENSITY_LEVELS, key=lambda level: abs(level - intensity))


def opening_prosody(emotion: EmotionCategory, intensity: float) -> ProsodyParameters:
    """The prosody an opening is spoken with: the emotion's profile at the nearest of ``INTENSITY_LEVELS``."""
    return profile_for(emotion, opening_level(intensity))


class OpeningVoice:
    """``cached(opening, intensity)`` -> audio or None (never blocks); ``render(...)`` makes and caches it.

    ``dsp_factory(sample_rate, prosody)`` is the reply's prosody DSP (None: no DSP), given what the speaking
    provider did not apply natively, exactly as a reply's sentence; ``out_rate`` is the output sample rate.
    """

    def __init__(self, tts: TTSBackend, dsp_factory: Callable[[int, ProsodyParameters], Any] | None, out_rate: int,
                 cache: SpeechCache | None = None) -> None:
        self.tts = tts
        self.dsp_factory = dsp_factory
        self.out_rate = out_rate
        self.cache = cache or SpeechCache()
        self._pending: dict[SpeechKey, asyncio.Task[CachedSpeech | None]] = {}

    def speaking_with(self, tts: TTSBackend) -> OpeningVoice:
        """The same cache of renderings with another voice (a session's persona); its own background renders."""
        view = copy.copy(self)
        view.tts, view._pending = tts, {}
        return view

    def key(self, opening: Opening, intensity: float) -> SpeechKey:
        planned = getattr(self.tts, "planned_provider", None)
        provider = planned() if callable(planned) else getattr(self.tts, "name", "")
        return SpeechKey.of(opening.text, voice=voice_of(self.tts, str(provider)), provider=str(provider),
                            emotion=opening.emotion.value, prosody=opening_prosody(opening.emotion, intensity))

    def cached(self, opening: Opening, intensity: float) -> CachedSpeech | None:
        return self.cache.get(self.key(opening, intensity))

    async def render(self, opening: Opening, intensity: float) -> CachedSpeech | None:
        """Synthesise the opening as a reply's sentence would be (TTS, then the DSP for what the provider did
        not apply, off the loop) and cache it. None when the TTS fails (an opening is an extra: the reply goes on
        without it)."""
        key = self.key(opening, intensity)
        prosody = opening_prosody(opening.emotion, intensity)
        dsp: Any = None
        parts: list[np.ndarray] = []
        try:
            async for speech in speech_of(self.tts, opening.text, prosody):
                if dsp is None and self.dsp_factory is not None:
                    dsp = self.dsp_factory(self.tts.sample_rate, speech.remaining(prosody))
                parts.append(await asyncio.to_thread(self._shape, speech.chunk.samples, speech.chunk.sample_rate, dsp))
            if dsp is not None:
                parts.append(await asyncio.to_thread(self._shape, dsp.flush(), self.tts.sample_rate, None))
        except BackendError as exc:
            log.warning("opening %r not rendered: %s", opening.text, exc)
            return None
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        samples = trim_leading_silence(samples, self.out_rate)
        if samples.size == 0:
            return None
        return self.cache.put(key, samples, self.out_rate)

    def render_later(self, opening: Opening, intensity: float) -> None:
        """Start rendering a missing opening in the background, for the next turn that needs it. The task is
        this object's: ``close()`` cancels what is still running."""
        key = self.key(opening, intensity)
        if key not in self._pending:
            task = asyncio.create_task(self.render(opening, intensity), name=f"opening-{opening.situation}")
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))

    async def close(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def prewarm(self, combos: Iterable[tuple[EmotionCategory, float]] = PREWARM) -> int:
        """Render every opening for each (emotion, intensity); returns how many are cached."""
        done = 0
        for emotion, intensity in combos:
            for situation, text in OPENINGS.items():
                if await self.render(Opening(text, situation, emotion), intensity) is not None:
                    done += 1
        return done

    def _shape(self, samples: np.ndarray, rate: int, dsp: Any) -> np.ndarray:
        out = np.asarray(dsp.push(samples) if dsp is not None else samples, dtype=np.float32)
        return resample(out, rate, self.out_rate) if out.size and rate != self.out_rate else out


def voice_of(tts: Any, provider: str) -> str:
    """The voice a provider of the router speaks with (Piper's model file, espeak-ng's voice name), for the key;
    a persona's voice names itself (``identity()``: its file, pitch, speed, sample)."""
    identity = getattr(tts, "identity", None)
    if callable(identity):
        return f"{identity()}|{provider}"
    backend = getattr(tts, "providers", {}).get(provider, tts)
    for attr in ("model_path", "voice", "speaker"):
        value = getattr(backend, attr, None)
        if value is not None and not callable(value):
            return str(getattr(value, "name", value))
    return provider
