"""Client of the CSM service (``csm_service``) on a GPU host: ``POST /synthesize`` -> 24 kHz WAV, ``GET /health``.

Each call is one request for the text as given (the pipeline sends one sentence at a time), carrying ``text``,
``speaker`` and ``reference_emotion`` (the reference bank entry the service passes to CSM as a context segment),
and, for a persona with a voice sample, ``reference`` (the sample's WAV, base64, and its transcript if known),
which the service puts first in the context so CSM speaks in that voice.
Connection errors, timeouts and 5xx are retryable.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator
from typing import Any

from attune.backends.tts.tts_common import check_text
from attune.config import Config
from attune.core.audio import load_wav_bytes
from attune.core.errors import AudioInputError, BackendUnavailable, TTSError
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters

CSM_RATE = 24000  # Hz, Mimi's output rate


class CSMClientTTS:
    name = "csm"
    sample_rate = CSM_RATE

    def __init__(self, url: str, *, speaker: int = 0, timeout_s: float = 30.0) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise BackendUnavailable(f"httpx is not installed: {exc}", install_hint="pip install httpx==0.28.1",
                                     backend=self.name) from exc
        self._httpx: Any = httpx
        self.url = url.rstrip("/")
        self.speaker = speaker
        self.timeout_s = timeout_s
        self.reference: tuple[bytes, str] | None = None  # a persona's voice sample (WAV bytes, transcript)

    def voice_identity(self) -> str:
        return str(self.speaker)

    def with_reference(self, wav: bytes, text: str = "") -> CSMClientTTS:
        """This client sending ``wav`` (a persona's voice sample) as the first context segment of every request."""
        view = copy.copy(self)
        view.reference = (wav, text)
        return view

    @classmethod
    def from_config(cls, config: Config) -> CSMClientTTS:
        t = config.tts
        return cls(t.csm_url, speaker=t.csm_speaker, timeout_s=t.timeout_s)

    async def health(self) -> dict[str, Any]:
        """The service's ``/health`` answer; raises a retryable ``TTSError`` when it cannot be reached."""
        httpx = self._httpx
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(min(self.timeout_s, 5.0))) as client:
                resp = await client.get(f"{self.url}/health")
                resp.raise_for_status()
                data: dict[str, Any] = resp.json()
                return data
        except (httpx.HTTPError, ValueError) as exc:
            raise TTSError(f"CSM service at {self.url} is not healthy: {exc!r}", retryable=True,
                           backend=self.name) from exc

    async def request(self, client: Any, sentence: str, emotion: str | None) -> AudioChunk:
        httpx = self._httpx
        body: dict[str, Any] = {"text": sentence, "speaker": self.speaker, "reference_emotion": emotion}
        if self.reference is not None:
            wav, said = self.reference
            body["reference"] = {"audio_wav_base64": base64.b64encode(wav).decode("ascii"), "text": said}
        try:
            resp = await client.post(f"{self.url}/synthesize", json=body)
        except httpx.HTTPError as exc:
            raise TTSError(f"CSM service at {self.url} unreachable or stalled: {exc!r}", retryable=True,
                           backend=self.name) from exc
        if resp.status_code != 200:
            raise TTSError(f"CSM service answered HTTP {resp.status_code}: {resp.text[:200]}",
                           retryable=resp.status_code >= 500, backend=self.name)
        try:
            samples, rate = load_wav_bytes(resp.content)
        except AudioInputError as exc:
            raise TTSError(f"CSM service sent unreadable audio: {exc}", retryable=True, backend=self.name) from exc
        return AudioChunk(samples, rate)

    async def synthesize(self, text: str, prosody: ProsodyParameters | None = None, *,
                         emotion: str | None = None) -> AsyncIterator[AudioChunk]:
        clean = check_text(text, self.name)
        httpx = self._httpx
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s)) as client:
            got = await self.request(client, clean, emotion)
        yield AudioChunk(got.samples, got.sample_rate, 0.0)
