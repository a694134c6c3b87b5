"""The small protocols every backend implements (the tables that name and build them: ``attune.core.catalog``).

Each backend kind has one main method: emotion ``analyze(audio, rate) -> EmotionResult``, ASR
``transcribe(chunk) -> Transcription``, LLM ``stream(messages) -> TokenStream`` (its text pieces, then the call's
``Completion``), TTS ``synthesize(text, prosody) -> AsyncIterator[AudioChunk]``. What an engine can do beyond that
is data it declares (``LLMBackend.capabilities``), and what a call measured comes back with the call's result
(``Transcription.encoder_states``, ``TokenStream.completion``), never as attributes left on a shared engine.
Blocking ones (emotion, ASR) are called through ``asyncio.to_thread`` by the pipeline, never on the event loop.
Every backend class also has a classmethod ``from_config(config) -> backend``, which ``backends.registry.build``
calls.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from attune.core.audio import AudioQuality
from attune.core.emotion import EmotionResult
from attune.core.frames import AudioChunk, SpeechAudio

if TYPE_CHECKING:
    from attune.backends.emotion.features import SpeakerBaseline


@runtime_checkable
class EmotionBackend(Protocol):
    name: str

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        """Estimate the emotion in mono float audio. Blocking; validated input only."""
        ...


@runtime_checkable
class FrameTrackBackend(Protocol):
    """An emotion backend that reads per-frame feature tracks (``features.compute_track``) and keeps one speaker's
    running statistics. The streaming detector computes the track of each new hop once and hands the backend the
    window's concatenated tracks, so a hop costs only its new audio; calibration seeds the speaker statistics."""

    name: str

    def result_from_track(self, track: np.ndarray, quality: AudioQuality, duration_s: float) -> EmotionResult:
        """The result for a frame track already computed (a window's tracks, concatenated in time)."""
        ...

    def calibrate(self, features: np.ndarray | None, baseline: SpeakerBaseline | None) -> None:
        """Fold one neutral recording's feature vector into the speaker's normalisation (when given) and set the
        speaker's pitch/rate baseline (when given)."""
        ...


@runtime_checkable
class TurnEmotion(Protocol):
    """A whole-turn emotion reader (``WhisperEmotionBackend``, ``HybridBackend``): the turn's 16 kHz audio and,
    when the ASR returned it, the encoder's pass over it (reused instead of encoding again). Read once per turn,
    after ASR; the streaming windows then use the cheap prosodic meter."""

    @property
    def reads_asr_pass(self) -> bool:
        """Whether a turn's reading uses the ASR's encoder pass (its last layer): a middle block encodes its own,
        so the ASR need not return its pass for it."""
        ...

    def analyze_turn(self, audio16k: np.ndarray, states: np.ndarray | None = None) -> EmotionResult: ...


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcription:
    text: str
    segments: tuple[Segment, ...] = ()
    no_speech_prob: float = 0.0
    language: str = "en"
    duration_s: float = 0.0
    # The encoder's pass over the clip, (ceil(samples / 320), d_model) float32, when asked for and the engine
    # exposes it (faster-whisper): the emotion head reuses it instead of encoding the turn again.
    encoder_states: np.ndarray | None = None


@runtime_checkable
class ASRBackend(Protocol):
    name: str

    def transcribe(self, audio: AudioChunk, *, encoder_states: bool = False) -> Transcription:
        """Transcribe one utterance; ``encoder_states``: also return the encoder's pass where the engine can
        (else ``Transcription.encoder_states`` stays None). Blocking."""
        ...


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class LLMCapabilities:
    """What an LLM engine can do beyond streaming a reply, declared rather than probed."""

    prefill: bool = False  # ``prefill()`` evaluates a prompt's head into the KV cache while the user speaks
    replay: bool = False  # ``first_token_alone()`` times a prompt's tail again in isolation (the lab's A/B)


@dataclass(frozen=True)
class Completion:
    """One LLM call's own figures, returned with it (``TokenStream.completion``): the prompt's size and how much
    of it the KV cache served, the engine's time to its first piece, and, through a shared LLM, how long the call
    waited for the slot. ``prompt``: its tokens where the engine tokenises itself (llama.cpp), for a replay."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    ttft_s: float = 0.0
    queue_wait_ms: float = 0.0
    queued: bool = False
    prompt: tuple[int, ...] = ()


class _Figures:
    """Where an engine reports a call's figures: held by the stream and by the engine's generator alike, so the
    generator never holds the stream (a cycle would keep an abandoned stream, and the model it holds, alive until
    the cyclic garbage collector ran)."""

    def __init__(self) -> None:
        self.completion: Completion | None = None

    def report(self, completion: Completion) -> None:
        self.completion = completion


class Gate:
    """Whether an engine may write its next token: open, it writes on; closed (``TokenStream.pause``), it holds
    after the token in progress until opened again. Thread-safe: the engine waits on it in its worker thread."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._followers: list[Gate] = []

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        self._open.clear()
        for gate in self._followers:
            gate.close()

    def open(self) -> None:
        self._open.set()
        for gate in self._followers:
            gate.open()

    def lead(self, other: Gate) -> None:
        """``other`` (an inner engine's gate) opens and closes with this one from now on."""
        self._followers.append(other)
        if self.is_open:
            other.open()
        else:
            other.close()

    def wait(self, timeout: float) -> bool:
        """Blocks until open or ``timeout`` s have passed; True when open."""
        return self._open.wait(timeout)


class TokenStream:
    """One LLM call. ``async for piece in stream`` gives the reply's text pieces; ``completion`` holds the call's
    figures as the engine reports them (at the first piece, and again when the pieces end), None before.

    ``pieces(report)`` is the engine's async generator; it calls ``report(Completion(...))`` with what it knows.
    Closing the stream, or dropping it (a ``break`` out of the loop), stops generation. ``pause()`` holds an engine
    that honours ``gate`` (one in this process, which would otherwise take the cores from what the pipeline does
    meanwhile) after the token in progress, until ``resume()``; an engine elsewhere (a server) writes on."""

    def __init__(self, pieces: Callable[[Callable[[Completion], None]], AsyncGenerator[str, None]],
                 gate: Gate | None = None) -> None:
        self._figures = _Figures()
        self._pieces = pieces(self._figures.report)
        self.gate = gate

    @property
    def completion(self) -> Completion | None:
        return self._figures.completion

    def pause(self) -> None:
        if self.gate is not None:
            self.gate.close()

    def resume(self) -> None:
        if self.gate is not None:
            self.gate.open()

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> str:
        return await self._pieces.__anext__()

    async def aclose(self) -> None:
        await self._pieces.aclose()


@runtime_checkable
class LLMBackend(Protocol):
    name: str
    capabilities: LLMCapabilities

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        """Stream the reply's text pieces. Cancelling the consumer stops it."""
        ...

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 0, max_new: int = 16) -> int:
        """Evaluate ``messages``' head into the KV cache ahead of a reply (only where ``capabilities.prefill``;
        elsewhere 0 at once). Blocking; returns the tokens evaluated."""
        ...


@runtime_checkable
class TTSBackend(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        """Stream speech for ``text`` with optional ``ProsodyParameters``."""
        ...


@runtime_checkable
class NamedVoice(Protocol):
    """A TTS backend that names the voice it speaks with (Piper's file, espeak-ng's voice, CSM's speaker): the
    voice part of a speech-cache key, so speech rendered in one voice is never played in another."""

    def voice_identity(self) -> str: ...


@runtime_checkable
class HealthProbe(Protocol):
    """An engine that can say how it is (a CSM service, the router over its providers) for ``GET /health``."""

    async def health(self) -> dict[str, Any]: ...


@runtime_checkable
class MappedPages(Protocol):
    """An engine that reads a mapped file row by row (the in-process LLM's input embedding table) and can hand the
    pages its calls faulted in back (they are re-read from the page cache when needed); returns the bytes."""

    def release_lookup_pages(self) -> int: ...


@runtime_checkable
class SpeakingVoice(Protocol):
    """A TTS that says with every chunk which provider spoke and which prosody it applied natively (the router,
    a persona's voice over it), so the prosody DSP applies exactly the rest; it also tells which provider the next
    request will try first and the fail-over chain."""

    name: str
    sample_rate: int

    @property
    def providers(self) -> Mapping[str, TTSBackend]: ...

    def synthesize_speech(self, text: str, prosody: Any = None) -> AsyncIterator[SpeechAudio]: ...

    def planned_provider(self) -> str: ...

    def chain(self) -> list[str]: ...

    async def health(self) -> dict[str, Any]: ...
