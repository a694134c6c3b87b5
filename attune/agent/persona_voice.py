"""A persona's voice: a view of the shared TTS router that speaks with the persona's ``VoiceConfig``.

``PersonaVoice`` is a TTS backend (``synthesize`` / ``synthesize_speech``, ``sample_rate``) that a session's
``backends.tts`` is swapped to. Its chain is the persona's provider and fallback (the router's tier chain for
``quality`` when none of them is built); ``model`` puts a user-supplied Piper voice in the ``piper`` slot (loaded
once per file by ``VoiceRegistry`` and shared by every session and persona that names it); the persona's speed
is Piper's length scale where Piper speaks, and the DSP's tempo elsewhere; its pitch is a constant shift on the
provider's audio, so it adds to whatever emotion prosody the reply's DSP applies afterwards. A CSM provider gets
the persona's voice sample as its first context segment. Providers, their statistics and cool-downs stay the
shared router's.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from attune.agent.persona_model import PersonaRecord, VoiceConfig
from attune.agent.prosody_dsp import voice_warp
from attune.backends.base import HealthProbe
from attune.backends.tts.csm_client import CSMClientTTS
from attune.backends.tts.piper_backend import PiperTTS
from attune.backends.tts.router import ProviderStats, VoiceModelRouter, speech_of
from attune.core.frames import AudioChunk, SpeechAudio


class VoiceRegistry:
    """User-supplied Piper voices, each loaded once (by resolved path and modification time) and shared."""

    def __init__(self) -> None:
        self._voices: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def piper(self, path: Path) -> Any:
        """The ``PiperTTS`` for ``path``; raises ``BackendUnavailable`` when it cannot be loaded. Blocking."""
        from attune.backends.tts.piper_backend import PiperTTS

        resolved = path.resolve()
        key = (str(resolved), resolved.stat().st_mtime_ns if resolved.exists() else 0)
        with self._lock:
            voice = self._voices.get(key)
            if voice is None:
                voice = self._voices[key] = PiperTTS(resolved)
            return voice

    def __len__(self) -> int:
        return len(self._voices)


class PersonaVoice:
    """``tts`` (the shared router, or any TTS backend) speaking as ``voice`` (see the module docstring).

    Build it with ``PersonaVoice.build`` in a worker thread: loading a user's Piper voice blocks."""

    name = "persona"

    def __init__(self, tts: Any, voice: VoiceConfig, *, persona_id: str = "", piper: Any = None,
                 sample_wav: bytes | None = None, voices_dir: Path | None = None) -> None:
        self.voice = voice
        self.persona_id = persona_id
        self.voices_dir = voices_dir
        self.sample_rate = int(tts.sample_rate)
        self._native_speed = False
        if isinstance(tts, VoiceModelRouter):
            view = copy.copy(tts)
            providers = dict(tts.providers)
            piper = piper if piper is not None else providers.get("piper")
            if piper is not None:
                if abs(voice.speed - 1.0) > 1e-3 and isinstance(piper, PiperTTS):
                    piper, self._native_speed = piper.with_speed(voice.speed), True
                providers["piper"] = piper
                if "piper" not in tts.stats:  # a user voice where the router built no Piper: its own figures
                    view.stats = {**tts.stats, "piper": ProviderStats()}
            csm = providers.get("csm")
            if isinstance(csm, CSMClientTTS) and sample_wav is not None:
                providers["csm"] = csm.with_reference(sample_wav)
            view.providers = providers
            view.default_provider = ""
            view.preferred = voice.chain()
            view.tier = voice.quality
            self._tts: Any = view
        else:
            self._tts = tts

    @classmethod
    def build(cls, tts: Any, record: PersonaRecord, *, registry: VoiceRegistry, voices_dir: Path | None,
              samples_dir: Path | None = None) -> PersonaVoice:
        """The voice of ``record``: its Piper file from ``registry``, its sample's WAV read for CSM. Blocking;
        raises ``BackendUnavailable`` for a Piper file that cannot be loaded."""
        v = record.voice
        path = v.model_path(voices_dir)
        piper = registry.piper(path) if path is not None else None
        wav = None
        if v.sample is not None and samples_dir is not None:
            sample_file = samples_dir / f"{v.sample.sha256}.wav"
            wav = sample_file.read_bytes() if sample_file.is_file() else None
        return cls(tts, v, persona_id=record.id, piper=piper, sample_wav=wav, voices_dir=voices_dir)

    @property
    def providers(self) -> dict[str, Any]:
        return dict(self._tts.providers) if isinstance(self._tts, VoiceModelRouter) else {}

    def identity(self) -> str:
        """The voice part of a speech-cache key (``VoiceConfig.identity``)."""
        return self.voice.identity(self.voices_dir)

    def planned_provider(self) -> str:
        """The provider the next request will try first ("" if none)."""
        return self._tts.planned_provider() if isinstance(self._tts, VoiceModelRouter) else str(self._tts.name)

    def chain(self) -> list[str]:
        return self._tts.chain() if isinstance(self._tts, VoiceModelRouter) else [str(self._tts.name)]

    async def synthesize_speech(self, text: str, prosody: Any = None, **kw: Any) -> AsyncIterator[SpeechAudio]:
        """The view's speech, each chunk shifted by the persona's pitch (and tempo where the provider did not
        take the speed natively); ``native`` is the provider's own, so the reply's DSP still does the rest."""
        stream = (self._tts.synthesize_speech(text, prosody, **kw) if isinstance(self._tts, VoiceModelRouter)
                  else speech_of(self._tts, text, prosody))
        async for speech in stream:
            yield await asyncio.to_thread(self._shape, speech)

    async def synthesize(self, text: str, prosody: Any = None, **kw: Any) -> AsyncIterator[AudioChunk]:
        async for speech in self.synthesize_speech(text, prosody, **kw):
            yield speech.chunk

    def _shape(self, speech: SpeechAudio) -> SpeechAudio:
        native_speed = self._native_speed and speech.provider == "piper"
        tempo = 1.0 if native_speed else self.voice.speed
        if abs(self.voice.pitch) < 1e-3 and abs(tempo - 1.0) < 1e-3:
            return speech
        c = speech.chunk
        samples = voice_warp(c.samples, c.sample_rate, self.voice.pitch, tempo)
        return replace(speech, chunk=AudioChunk(samples, c.sample_rate, c.timestamp_s))

    async def health(self) -> dict[str, Any]:
        return await self._tts.health() if isinstance(self._tts, HealthProbe) else {}
