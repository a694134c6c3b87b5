"""Openings spoken from the cache: ``OpeningVoice`` renders each opening through the session's own speech path
(``pipeline/phrases.py``'s ``PhraseVoice``: TTS with the expressed emotion's prosody, the prosody DSP, the output
rate) into the shared ``SpeechCache`` at start-up, so at the moment a turn is committed the opening is ready to
play, its leading silence trimmed (it starts the reply).

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
from attune.core.audio import trim_leading_silence
from attune.core.emotion import EmotionCategory
from attune.core.prosody import ProsodyParameters, profile_for
from attune.pipeline.phrases import PhraseVoice, voice_of

__all__ = ["PREWARM", "OpeningVoice", "opening_level", "opening_prosody", "voice_of"]
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

    ``dsp_factory(sample_rate, prosody)`` is the reply's prosody DSP (None: no DSP); ``out_rate`` is the output
    sample rate; ``cache`` the process's speech cache (shared with the other stock phrases), or a ``PhraseVoice``
    given as ``phrases`` that already holds it.
    """

    def __init__(self, tts: TTSBackend, dsp_factory: Callable[[int, ProsodyParameters], Any] | None, out_rate: int,
                 cache: SpeechCache | None = None, *, phrases: PhraseVoice | None = None) -> None:
        self.voice = phrases if phrases is not None else PhraseVoice(tts, dsp_factory, out_rate, cache)
        self.tts, self.dsp_factory, self.out_rate = self.voice.tts, self.voice.dsp_factory, self.voice.out_rate
        self.cache = self.voice.cache
        self._pending: dict[SpeechKey, asyncio.Task[CachedSpeech | None]] = {}
        self._trimmed: dict[SpeechKey, CachedSpeech] = {}

    def speaking_with(self, tts: TTSBackend) -> OpeningVoice:
        """The same cache of renderings with another voice (a session's persona); its own background renders."""
        view = copy.copy(self)
        view.voice = self.voice.speaking_with(tts)
        view.tts, view._pending, view._trimmed = tts, {}, {}
        return view

    def key(self, opening: Opening, intensity: float) -> SpeechKey:
        return self.voice.key(opening.text, opening.emotion, opening_prosody(opening.emotion, intensity))

    def cached(self, opening: Opening, intensity: float) -> CachedSpeech | None:
        """The opening's audio from the memory front, leading silence trimmed; None when it is not there."""
        key = self.key(opening, intensity)
        speech = self.cache.get_memory(key)
        if speech is None:
            return None
        trimmed = self._trimmed.get(key)
        if trimmed is None or trimmed.created_s != speech.created_s:
            samples = trim_leading_silence(np.asarray(speech.samples), speech.sample_rate)
            trimmed = CachedSpeech(samples, speech.sample_rate, speech.created_s)
            self._trimmed[key] = trimmed
        return trimmed

    async def render(self, opening: Opening, intensity: float) -> CachedSpeech | None:
        """Find or synthesise the opening as a reply's sentence would be, and cache it. None when the TTS fails
        (an opening is an extra: the reply goes on without it)."""
        return await self.voice.render(opening.text, opening.emotion, opening_prosody(opening.emotion, intensity))

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
        """Have every opening ready for each (emotion, intensity), from the cache (memory or disk) or rendered
        now; returns how many are ready."""
        done = 0
        for emotion, intensity in combos:
            for situation, text in OPENINGS.items():
                if await self.render(Opening(text, situation, emotion), intensity) is not None:
                    done += 1
        return done
