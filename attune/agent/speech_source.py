"""Where the expression tools get speech from: the TTS router (Piper by default) plus the prosody DSP.

``speak``, ``build-references`` and ``bench-prosody`` call ``render_speech``. The engine gets the whole
ProsodyParameters and realises what it does natively (Piper: the rate, through length_scale; espeak-ng: rate,
pitch and volume); the DSP (``apply_to_audio``) then applies the rest, on
``prosody.neutralized(*native_dimensions(provider))`` for the provider that really spoke, so no dimension is
applied twice. The text is made speakable first by ``normalize_for_tts``, the function the live pipeline uses
before every sentence it speaks (no markdown, emoji or links read aloud).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import numpy as np

from attune.backends.tts.factory import TTS_BACKENDS, create_tts
from attune.backends.tts.prosody_map import native_dimensions
from attune.backends.tts.router import VoiceModelRouter
from attune.config import Config
from attune.core.audio import rms
from attune.core.errors import TTSError
from attune.core.normalize import normalize_for_tts
from attune.core.prosody import ProsodyParameters


@dataclass(frozen=True)
class RenderedSpeech:
    """Speech from ``render_speech``: mono float32 at ``sample_rate``, who spoke it, and what the engine did."""

    audio: np.ndarray
    sample_rate: int
    provider: str
    native: tuple[str, ...]  # the prosody dimensions the engine applied itself
    text: str = ""  # what was spoken: the text after normalize_for_tts


FALLBACK = "espeak"  # the last-resort voice a fallback router adds behind the asked provider


def speech_router(config: Config | None = None, provider: str | None = None, *,
                  fallback: bool = False) -> VoiceModelRouter:
    """A router over ``provider`` alone (default ``expression.tts``; empty = the ``tts`` tier chain).

    ``fallback=True`` puts espeak-ng behind it, so a provider that cannot load or fails (a corrupt voice file)
    hands the request on, as in a session. Raises TTSError for an unknown provider name."""
    config = config or Config()
    name = config.expression.tts if provider is None else provider
    if name and name not in TTS_BACKENDS:
        raise TTSError(f"unknown TTS provider {name!r} (known: {', '.join(TTS_BACKENDS)})")
    if not name:
        return create_tts(config)
    if not fallback or name == FALLBACK:
        return create_tts(config, only=(name,))
    # The tier whose chain starts with ``name`` and ends with espeak; no fixed provider, so the chain applies.
    tts = dataclasses.replace(config.tts, provider="", tier="highest" if name == "csm" else "high")
    return create_tts(dataclasses.replace(config, tts=tts), only=(name, FALLBACK))


async def _collect(router: VoiceModelRouter, text: str, prosody: ProsodyParameters) -> np.ndarray:
    parts = [chunk.samples async for chunk in router.synthesize(text, prosody)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def render_speech(text: str, prosody: ProsodyParameters | None = None, *, router: VoiceModelRouter | None = None,
                  config: Config | None = None, provider: str | None = None, apply_dsp: bool = True,
                  level_dbfs: float | None = None) -> RenderedSpeech:
    """``text`` spoken with ``prosody`` (default neutral): native dimensions by the engine, the rest by the DSP.

    ``level_dbfs`` normalises the engine's output to that RMS level before the DSP; volume is then held back
    from the engine and applied by the DSP, so the asked level difference survives the normalisation.
    ``apply_dsp=False`` returns the engine's audio alone. Blocking (it runs its own event loop): async code
    streams ``router.synthesize`` itself and plans the DSP with ``router.planned_provider()``. Raises TTSError
    (empty or unspeakable text, unknown provider, every provider failed) or BackendUnavailable (the provider
    cannot run here, with its install command).
    """
    spoken = normalize_for_tts(text)
    if not spoken:
        raise TTSError(f"nothing speakable in {text[:40]!r} once markup, emoji and symbols are removed")
    p = prosody or ProsodyParameters()
    router = router or speech_router(config, provider)
    engine_prosody = p.neutralized("volume_db") if level_dbfs is not None else p
    audio = asyncio.run(_collect(router, spoken, engine_prosody))
    spoke = router.last_provider
    native = tuple(d for d in native_dimensions(spoke) if not (level_dbfs is not None and d == "volume_db"))
    if level_dbfs is not None:
        audio = (audio * (10 ** (level_dbfs / 20) / max(rms(audio), 1e-6))).astype(np.float32)
    rest = p.neutralized(*native)
    if apply_dsp and not rest.is_neutral:
        from attune.agent.prosody_dsp import apply_to_audio

        audio = apply_to_audio(audio, router.sample_rate, rest)
    return RenderedSpeech(audio, router.sample_rate, spoke, native, spoken)
