"""espeak-ng (Debian package) through a subprocess: the always-available last-resort voice, 22,050 Hz WAV.

The text is spoken as given, one subprocess and one chunk per call."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator

import numpy as np

from attune.backends.tts.prosody_map import espeak_flags
from attune.backends.tts.tts_common import check_text
from attune.config import Config
from attune.core.errors import BackendUnavailable, TTSError
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters

INSTALL_HINT = "sudo apt-get install espeak-ng"
ESPEAK_RATE = 22050  # Hz, espeak-ng's output rate
TIMEOUT_S = 20.0


class EspeakTTS:
    name = "espeak"
    sample_rate = ESPEAK_RATE

    def __init__(self, voice: str = "en-us", binary: str = "espeak-ng") -> None:
        path = shutil.which(binary)
        if path is None:
            raise BackendUnavailable(f"{binary} is not on PATH", install_hint=INSTALL_HINT, backend=self.name)
        self.binary = path
        self.voice = voice

    @classmethod
    def from_config(cls, config: Config) -> EspeakTTS:
        return cls(config.tts.espeak_voice)

    def voice_identity(self) -> str:
        return self.voice

    async def synthesize_sentence(self, sentence: str, prosody: ProsodyParameters | None = None) -> np.ndarray:
        import soundfile as sf

        cmd = [self.binary, "-v", self.voice, *espeak_flags(prosody), "--stdout", "--", sentence]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise TTSError("espeak-ng timed out", retryable=True, backend=self.name) from exc
        if proc.returncode != 0 or not out:
            raise TTSError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')[:200]}",
                           retryable=False, backend=self.name)
        try:
            data, rate = sf.read(io.BytesIO(out), dtype="float32")
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise TTSError(f"espeak-ng wrote unreadable audio: {exc}", backend=self.name) from exc
        self.sample_rate = int(rate)
        return np.asarray(data, dtype=np.float32).reshape(-1)

    async def synthesize(self, text: str, prosody: ProsodyParameters | None = None, *,
                         emotion: str | None = None) -> AsyncIterator[AudioChunk]:
        clean = check_text(text, self.name)
        audio = await self.synthesize_sentence(clean, prosody)
        yield AudioChunk(audio, self.sample_rate, 0.0)
