"""Piper (VITS, onnxruntime) with the embedded en_US joe voice, 22,050 Hz.

Synthesis is blocking, so it runs in a worker thread. The text is spoken as given, one chunk per call (the
pipeline sends one sentence at a time; it is never re-split into utterances here). Rate and variation come from
``prosody_map.piper_controls``.

The onnxruntime session runs without its CPU memory arena: the arena keeps the high-water mark of every
sentence's intermediate tensors for the life of the process (+170 MB after one long sentence), where plain
allocations are returned after each run. A voice file that onnxruntime cannot load (corrupt, truncated) is a
``BackendUnavailable`` naming the file and the repair command, so the router falls back to the next provider.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from attune.backends.tts.prosody_map import piper_controls
from attune.backends.tts.tts_common import check_text
from attune.config import Config
from attune.core.errors import BackendUnavailable, TTSError
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters
from attune.models import model_path as embedded_model_path

INSTALL_HINT = "bash scripts/setup.sh  (or: pip install piper-tts==1.8.0)"
REPAIR_HINT = ".venv/bin/python -m attune.models install piper-joe"
MAX_PIECE_CHARS = 40  # a longer sentence is synthesised piece by piece (~15-18 MiB of tensors per s of audio)
MIN_PHRASE_CHARS = 12  # a phrase cut before a conjunction is never shorter than this
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
_PHRASE_START = re.compile(r"\s+(?=(?:and|but|or|so|because|though|although|while|when|which|that|if|until|unless"
                           r"|since|before|after)\b)", re.IGNORECASE)


def _merge(parts: list[str], max_chars: int, min_chars: int = 0) -> list[str]:
    """Consecutive ``parts`` joined by spaces while the piece stays within ``max_chars``; a part shorter than
    ``min_chars`` ("so" before "that ...") first joins the part after it (the last one, the part before)."""
    joined: list[str] = []
    for part in parts:
        if joined and len(joined[-1]) < min_chars:
            joined[-1] = f"{joined[-1]} {part}"
        else:
            joined.append(part)
    if len(joined) > 1 and len(joined[-1]) < min_chars:
        last = joined.pop()
        joined[-1] = f"{joined[-1]} {last}"
    out: list[str] = []
    for part in joined:
        if out and len(out[-1]) + 1 + len(part) <= max_chars:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def clause_pieces(sentence: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """``sentence`` cut into pieces of at most ``max_chars`` where it can be: after commas, semicolons and colons
    first; a clause still longer is cut before a conjunction ("and", "because", "that", ...), where a speaker
    would take a breath, never into pieces under ``MIN_PHRASE_CHARS``; a clause with neither stays whole (never
    cut between two other words). The pieces joined by spaces give the sentence back."""
    if len(sentence) <= max_chars:
        return [sentence]
    phrases = [p for clause in _CLAUSE_END.split(sentence)
               for p in ([clause] if len(clause) <= max_chars
                         else _merge(_PHRASE_START.split(clause), max_chars, MIN_PHRASE_CHARS))]
    return _merge(phrases, max_chars)


def load_voice(model_path: Path) -> Any:
    """A ``PiperVoice`` over an onnxruntime session without the CPU arena (see the module docstring).

    Raises BackendUnavailable when the voice or its ``.onnx.json`` cannot be read or onnxruntime rejects the
    model (onnxruntime's own exceptions derive from ``Exception`` only, so they are caught broadly here)."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    config_path = Path(f"{model_path}.json")
    try:
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        options = onnxruntime.SessionOptions()
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, OSError, JSON and key errors alike
        raise BackendUnavailable(f"Piper voice {model_path} cannot be loaded (corrupt or incomplete?): "
                                 f"{type(exc).__name__}: {str(exc)[:200]}", install_hint=REPAIR_HINT,
                                 backend="piper") from exc
    return PiperVoice(config=config, session=session)


class PiperTTS:
    name = "piper"

    def __init__(self, model_path: Path) -> None:
        try:
            from piper import SynthesisConfig
        except ImportError as exc:
            raise BackendUnavailable(f"piper-tts is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        if not Path(model_path).is_file():
            raise BackendUnavailable(f"Piper voice not found: {model_path}",
                                     install_hint=REPAIR_HINT, backend=self.name)
        self._voice: Any = load_voice(Path(model_path))
        self._config_cls: Any = SynthesisConfig
        self.model_path = Path(model_path)  # the voice, for caches of synthesised speech
        self.sample_rate = int(self._voice.config.sample_rate)
        self._base_length = float(self._voice.config.length_scale or 1.0)

    def voice_identity(self) -> str:
        """The voice file's name and size: the speech cache's key for this voice."""
        try:
            return f"{self.model_path.name}:{self.model_path.stat().st_size}"
        except OSError:
            return self.model_path.name

    def with_speed(self, speed: float) -> PiperTTS:
        """This voice (the same loaded model, shared) speaking ``speed`` times as fast: Piper's length scale."""
        view = copy.copy(self)
        view._base_length = self._base_length / max(float(speed), 1e-3)
        return view

    def synthesize_sentence(self, sentence: str, prosody: ProsodyParameters | None = None) -> np.ndarray:
        """One sentence as float32 audio at ``sample_rate``, clause by clause when it is long. Blocking."""
        c = piper_controls(prosody, self._base_length)
        config = self._config_cls(length_scale=c.length_scale, noise_scale=c.noise_scale, noise_w_scale=c.noise_w)
        try:
            parts = [chunk.audio_float_array for piece in clause_pieces(sentence)
                     for chunk in self._voice.synthesize(piece, syn_config=config)]
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
