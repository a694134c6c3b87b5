"""Openings spoken from the cache: ``OpeningVoice`` renders each opening through the session's own speech path
(TTS with the expressed emotion's prosody, the prosody DSP, the output rate, the leading silence trimmed) into a
``SpeechCache`` at start-up, so at the moment a turn is committed the opening is ready to play.

The choice of words is the agent's (``attune.agent.openings``); this module only makes and finds the sound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from attune.agent.openings import OPENINGS, Opening
from attune.backends.base import TTSBackend
from attune.backends.tts.cache import CachedSpeech, SpeechCache, SpeechKey
from attune.core.audio import resample, trim_leading_silence
from attune.core.emotion import EmotionCategory
from attune.core.errors import BackendError
from attune.core.prosody import ProsodyParameters, profile_for

log = logging.getLogger(__name__)
INTENSITY_STEP = 0.1  # openings are rendered at intensities rounded to this, so a few renders serve every plan
# What the default strategy expresses most (complement: calm for agitation, warmth for low moods; neutral when
# unsure): rendered at start-up. Other emotions are rendered the first time they are needed, for the next turn.
PREWARM: tuple[tuple[EmotionCategory, float], ...] = (
    (EmotionCategory.NEUTRAL, 1.0), (EmotionCategory.CALM, 0.7), (EmotionCategory.AFFECTIONATE, 0.7),
)


def opening_prosody(emotion: EmotionCategory, intensity: float) -> ProsodyParameters:
    """The prosody an opening is spoken with: the emotion's profile at the intensity rounded to a step."""
    k = min(1.0, max(0.0, round(intensity / INTENSITY_STEP) * INTENSITY_STEP))
    return profile_for(emotion, k)


class OpeningVoice:
    """``cached(opening, intensity)`` -> audio or None (never blocks); ``render(...)`` makes and caches it.

    ``make_dsp(prosody)`` returns the push/flush DSP the session would use for that prosody (or None);
    ``out_rate`` is the session's output sample rate.
    """

    def __init__(self, tts: TTSBackend, make_dsp: Callable[[ProsodyParameters], Any], out_rate: int,
                 cache: SpeechCache | None = None) -> None:
        self.tts = tts
        self.make_dsp = make_dsp
        self.out_rate = out_rate
        self.cache = cache or SpeechCache()
        self._pending: dict[SpeechKey, asyncio.Task[CachedSpeech | None]] = {}

    def key(self, opening: Opening, intensity: float) -> SpeechKey:
        planned = getattr(self.tts, "planned_provider", None)
        provider = planned() if callable(planned) else getattr(self.tts, "name", "")
        return SpeechKey.of(opening.text, voice=voice_of(self.tts, str(provider)), provider=str(provider),
                            emotion=opening.emotion.value, prosody=opening_prosody(opening.emotion, intensity))

    def cached(self, opening: Opening, intensity: float) -> CachedSpeech | None:
        return self.cache.get(self.key(opening, intensity))

    async def render(self, opening: Opening, intensity: float) -> CachedSpeech | None:
        """Synthesise the opening as the reply would be (off the loop for the DSP) and cache it. None when the
        TTS fails (an opening is an extra: the reply goes on without it)."""
        key = self.key(opening, intensity)
        prosody = opening_prosody(opening.emotion, intensity)
        dsp = self.make_dsp(prosody)
        parts: list[np.ndarray] = []
        try:
            async for chunk in self.tts.synthesize(opening.text, prosody):
                parts.append(await asyncio.to_thread(self._shape, chunk.samples, chunk.sample_rate, dsp))
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
    """The voice a provider of the router speaks with (Piper's model file, espeak-ng's voice name), for the key."""
    backend = getattr(tts, "providers", {}).get(provider, tts)
    for attr in ("model_path", "voice", "speaker"):
        value = getattr(backend, attr, None)
        if value is not None and not callable(value):
            return str(getattr(value, "name", value))
    return provider
