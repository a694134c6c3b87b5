"""Where the expression tools get speech from: the TTS router (Piper by default) plus the prosody DSP.

``speak``, ``build-references`` and ``bench-prosody`` call ``render_speech``. The engine gets the whole
ProsodyParameters and realises what it does natively (Piper: the rate, through length_scale; espeak-ng: rate,
pitch and volume); the router stamps each chunk with the provider that really spoke it and what it applied
natively (``SpeechAudio``), and the DSP (``apply_to_audio``) applies the rest (``SpeechAudio.remaining``): the
same mechanism as a conversation's replies, so no dimension is applied twice, after a fail-over too. The text is
made speakable first by ``normalize_for_tts``, the function the live pipeline uses before every sentence it
speaks (no markdown, emoji or links read aloud).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import numpy as np

from attune.backends.tts.router import VoiceModelRouter
from attune.backends.tts.tts_factory import TTS_BACKENDS, create_tts
from attune.config import Config
from attune.core.audio import rms
from attune.core.errors import TTSError
from attune.core.frames import AudioChunk, SpeechAudio
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


async def _collect(router: VoiceModelRouter, text: str, prosody: ProsodyParameters) -> tuple[np.ndarray, SpeechAudio]:
    """The whole utterance, and its first chunk's stamp (one request is spoken by one provider; no audio: none)."""
    parts = [speech async for speech in router.synthesize_speech(text, prosody)]
    if not parts:
        silent = np.zeros(0, np.float32)
        return silent, SpeechAudio(AudioChunk(silent, router.sample_rate))
    return np.concatenate([p.chunk.samples for p in parts]).astype(np.float32), parts[0]


def render_speech(text: str, prosody: ProsodyParameters | None = None, *, router: VoiceModelRouter | None = None,
                  config: Config | None = None, provider: str | None = None, apply_dsp: bool = True,
                  level_dbfs: float | None = None) -> RenderedSpeech:
    """``text`` spoken with ``prosody`` (default neutral): native dimensions by the engine, the rest by the DSP.

    ``level_dbfs`` normalises the engine's output to that RMS level before the DSP; volume is then held back
    from the engine and applied by the DSP, so the asked level difference survives the normalisation.
    ``apply_dsp=False`` returns the engine's audio alone. Blocking (it runs its own event loop): async code
    streams ``router.synthesize_speech`` itself and shapes each chunk by its ``remaining()``. Raises TTSError
    (empty or unspeakable text, unknown provider, every provider failed) or BackendUnavailable (the provider
    cannot run here, with its install command).
    """
    spoken = normalize_for_tts(text)
    if not spoken:
        raise TTSError(f"nothing speakable in {text[:40]!r} once markup, emoji and symbols are removed")
    p = prosody or ProsodyParameters()
    router = router or speech_router(config, provider)
    engine_prosody = p.neutralized("volume_db") if level_dbfs is not None else p
    audio, first = asyncio.run(_collect(router, spoken, engine_prosody))
    # The engine applied its native dimensions of ``engine_prosody``; with a level asked, volume was held back
    # from it (neutral), so the DSP still has to apply the asked volume.
    native = tuple(d for d in first.native if not (level_dbfs is not None and d == "volume_db"))
    if level_dbfs is not None:
        audio = (audio * (10 ** (level_dbfs / 20) / max(rms(audio), 1e-6))).astype(np.float32)
    rest = SpeechAudio(first.chunk, first.provider, native).remaining(p)
    if apply_dsp and not rest.is_neutral:
        from attune.agent.prosody_dsp import apply_to_audio

        audio = apply_to_audio(audio, router.sample_rate, rest)
    return RenderedSpeech(audio, router.sample_rate, first.provider, native, spoken)
