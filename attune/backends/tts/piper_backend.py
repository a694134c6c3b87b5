"""Piper (VITS, onnxruntime) with the embedded en_US joe voice, 22,050 Hz.

Synthesis is blocking, so it runs in a worker thread. The text is spoken as given, one chunk per call (the
pipeline sends one sentence at a time; it is never re-split here). Rate and variation come from
``prosody_map.piper_controls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from attune.backends.tts.common import check_text
from attune.backends.tts.prosody_map import piper_controls
from attune.config import Config
from attune.core.errors import BackendUnavailable, TTSError
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters
from attune.models import model_path as embedded_model_path

INSTALL_HINT = "bash scripts/setup.sh  (or: pip install piper-tts==1.8.0)"


class PiperTTS:
    name = "piper"

    def __init__(self, model_path: Path) -> None:
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise BackendUnavailable(f"piper-tts is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        if not Path(model_path).is_file():
            raise BackendUnavailable(f"Piper voice not found: {model_path}",
                                     install_hint=".venv/bin/python -m attune.models install piper-joe",
                                     backend=self.name)
        try:
            self._voice: Any = PiperVoice.load(str(model_path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise TTSError(f"cannot load Piper voice {model_path}: {exc}", backend=self.name) from exc
        self._config_cls: Any = SynthesisConfig
        self.model_path = Path(model_path)  # the voice, for caches of synthesised speech
        self.sample_rate = int(self._voice.config.sample_rate)
        self._base_length = float(getattr(self._voice.config, "length_scale", 1.0) or 1.0)

    def synthesize_sentence(self, sentence: str, prosody: ProsodyParameters | None = None) -> np.ndarray:
        """One sentence as float32 audio at ``sample_rate``. Blocking."""
        c = piper_controls(prosody, self._base_length)
        config = self._config_cls(length_scale=c.length_scale, noise_scale=c.noise_scale, noise_w_scale=c.noise_w)
        try:
            parts = [chunk.audio_float_array for chunk in self._voice.synthesize(sentence, syn_config=config)]
        except (RuntimeError, ValueError) as exc:
            raise TTSError(f"Piper failed on {sentence[:40]!r}: {exc}", retryable=True, backend=self.name) from exc
        if not parts:
            raise TTSError(f"Piper produced no audio for {sentence[:40]!r}", backend=self.name)
        return np.concatenate(parts).astype(np.float32)

    async def synthesize(self, text: str, prosody: ProsodyParameters | None = None, *,
                         emotion: str | None = None) -> AsyncIterator[AudioChunk]:
        clean = check_text(text, self.name)
        audio = await asyncio.to_thread(self.synthesize_sentence, clean, prosody)
        yield AudioChunk(audio, self.sample_rate, 0.0)

    @classmethod
    def from_config(cls, config: Config) -> PiperTTS:
        """The voice ``tts.piper_model`` if set, else the embedded joe voice."""
        t = config.tts
        path = (config.resolve_path(t.piper_model) if t.piper_model
                else embedded_model_path(config.resolve_path(config.models.cache_dir), "piper-joe"))
        return cls(path)
