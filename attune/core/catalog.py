"""The catalogue of engines: every backend Attune can build, by kind and name, as data (one ``BackendSpec`` each).

A spec names the class that implements the backend (``"module:Class"``, imported only when it is built), the
install command for when it cannot be, a description, the backend it falls back to, and what it can do
(``capabilities``: a frozen value per kind). Every backend class has ``from_config(config) -> backend``, so
building any engine is ``spec.load().from_config(config)`` (``attune.backends.registry.build``).

It sits on the ground floor because two rooms below the engines read it: ``config.py`` validates backend names
against it at load time, and the TTS router reads its tiers from it. Nothing
here imports a backend. Adding a backend is one entry in a table here plus its module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from attune.core.errors import BackendUnavailable, ConfigError

C = TypeVar("C")

SETUP = "bash scripts/setup.sh"


@dataclass(frozen=True)
class ASRCapabilities:
    streaming: bool = False  # transcribes partial audio as it arrives (else: one whole utterance per call)


@dataclass(frozen=True)
class LLMCapabilities:
    local: bool = True  # runs in this process (else: a client of a server that may be down)


@dataclass(frozen=True)
class TTSCapabilities:
    sample_rate: int  # Hz of the audio the provider emits (the router resamples to its own rate)
    native_dimensions: tuple[str, ...] = ()  # ProsodyParameters fields it realises itself; the DSP does the rest
    tiers: tuple[str, ...] = ()  # quality tiers whose fail-over chain includes it (table order = chain order)


@dataclass(frozen=True)
class EmotionCapabilities:
    frame_tracks: bool = False  # reuses per-hop frame tracks (``FrameTrackBackend``): a hop costs only its new audio
    streams_cheaply: bool = False  # a 500 ms hop costs well under its own duration on 2 CPU cores


@dataclass(frozen=True)
class VADCapabilities:
    neural: bool = False  # a learned speech model (else: a level gate)


@dataclass(frozen=True)
class BackendSpec(Generic[C]):
    """One backend: ``target`` is ``"module:Class"``; the class has ``from_config(config)``."""

    name: str
    target: str
    capabilities: C
    install_hint: str = ""
    description: str = ""
    fallback: str = ""  # the backend of the same kind to build when this one cannot load here ("" = none)

    def load(self) -> Any:
        """The backend class, imported now; ``BackendUnavailable`` (with the install hint) if it cannot be."""
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendUnavailable(f"cannot import {module_name}: {exc}", install_hint=self.install_hint,
                                     backend=self.name) from exc
        return getattr(module, attr)  # the catalogue names a class by string: the lazy import's lookup


def _table(*specs: BackendSpec[C]) -> dict[str, BackendSpec[C]]:
    return {s.name: s for s in specs}


ASR: dict[str, BackendSpec[ASRCapabilities]] = _table(
    BackendSpec("faster-whisper", "attune.backends.asr.faster_whisper_backend:FasterWhisperASR", ASRCapabilities(),
                install_hint=SETUP + "  (or: pip install faster-whisper==1.2.1)",
                description="Whisper on CPU (CTranslate2, int8)"),
    BackendSpec("mlx-whisper", "attune.backends.asr.mlx_backend:MLXWhisperASR", ASRCapabilities(),
                install_hint="pip install mlx-whisper  (macOS on Apple Silicon only)",
                description="Whisper on Apple Silicon (Metal)", fallback="faster-whisper"),
)

LLM: dict[str, BackendSpec[LLMCapabilities]] = _table(
    BackendSpec("llama-cpp", "attune.backends.llm.llama_cpp_backend:LlamaCppLLM", LLMCapabilities(local=True),
                install_hint=SETUP, description="in-process GGUF through llama-cpp-python (offline)"),
    BackendSpec("ollama", "attune.backends.llm.ollama_backend:OllamaLLM", LLMCapabilities(local=False),
                install_hint="pip install ollama==0.6.3", description="an Ollama server"),
    BackendSpec("openai", "attune.backends.llm.openai_backend:OpenAICompatLLM", LLMCapabilities(local=False),
                install_hint="pip install httpx==0.28.1", description="vLLM / llama.cpp server / LM Studio"),
)

# Piper's pitch_variance mapping only shapes its noise terms, so the DSP still applies pitch variance for it.
TTS: dict[str, BackendSpec[TTSCapabilities]] = _table(
    BackendSpec("csm", "attune.backends.tts.csm_client:CSMClientTTS",
                TTSCapabilities(24000, (), ("highest",)),
                install_hint="pip install httpx==0.28.1", description="Sesame CSM over HTTP (GPU host)"),
    BackendSpec("piper", "attune.backends.tts.piper_backend:PiperTTS",
                TTSCapabilities(22050, ("speech_rate",), ("highest", "high", "medium")),
                install_hint=SETUP + "  (or: pip install piper-tts==1.8.0)",
                description="Piper, embedded en_US joe voice"),
    BackendSpec("espeak", "attune.backends.tts.espeak_backend:EspeakTTS",
                TTSCapabilities(22050, ("speech_rate", "pitch_shift_semitones", "volume_db"),
                                ("highest", "high", "medium", "fast")),
                install_hint="sudo apt-get install espeak-ng", description="espeak-ng formant voice"),
)

EMOTION: dict[str, BackendSpec[EmotionCapabilities]] = _table(
    BackendSpec("prosodic", "attune.backends.emotion.prosodic:ProsodicBackend",
                EmotionCapabilities(frame_tracks=True, streams_cheaply=True),
                description="pure DSP features + a small learned model shipped as JSON (default, no extra install)"),
    BackendSpec("whisper", "attune.backends.emotion.whisper_head:WhisperEmotionBackend",
                EmotionCapabilities(frame_tracks=False, streams_cheaply=False),
                install_hint=SETUP + "  (the embedded Whisper model of emotion.encoder)",
                description="a small head on Whisper encoder states (block 2 by default, or the ASR's last-layer pass)",
                fallback="prosodic"),
    BackendSpec("hybrid", "attune.backends.emotion.hybrid:HybridBackend",
                EmotionCapabilities(frame_tracks=False, streams_cheaply=False),
                install_hint=SETUP + "  (the embedded Whisper model of emotion.encoder)",
                description="the Whisper head's category fused with prosody's (markers from prosody)",
                fallback="prosodic"),
    BackendSpec("emotion2vec", "attune.backends.emotion.emotion2vec:Emotion2VecBackend",
                EmotionCapabilities(frame_tracks=False, streams_cheaply=False),
                install_hint="python -m attune.backends.emotion.e2v_weights model.pt e2v.npz  # then set "
                             "emotion.model_path; pip install 'mlx[cpu]==0.32.4' for MLX (numpy otherwise)",
                description="emotion2vec (data2vec 2.0, 9 classes) from user-supplied weights, in MLX or numpy",
                fallback="prosodic"),
)

VAD: dict[str, BackendSpec[VADCapabilities]] = _table(
    BackendSpec("silero", "attune.backends.vad:SileroVAD", VADCapabilities(neural=True),
                install_hint="pip install faster-whisper==1.2.1",
                description="Silero VAD v6 through onnxruntime (the file faster-whisper bundles)", fallback="energy"),
    BackendSpec("energy", "attune.backends.vad:EnergyVAD", VADCapabilities(neural=False),
                description="a -40 dBFS level gate (no dependency)"),
)

CATALOG: dict[str, dict[str, Any]] = {"asr": ASR, "llm": LLM, "tts": TTS, "emotion": EMOTION, "vad": VAD}
CONFIG_KEYS: dict[str, str] = {  # the config key that names each kind's backend
    "asr": "asr.backend", "llm": "llm.backend", "tts": "tts.provider", "emotion": "emotion.backend",
    "vad": "pipeline.vad",
}


def names(kind: str) -> tuple[str, ...]:
    """The backend names of ``kind`` (asr | llm | tts | emotion | vad), in table order."""
    return tuple(CATALOG[kind])


def spec(kind: str, name: str) -> BackendSpec[Any]:
    """The spec of ``name``; an unknown name is a ``ConfigError`` naming the config key and the known names."""
    table = CATALOG[kind]
    if name not in table:
        raise ConfigError(f"config key '{CONFIG_KEYS[kind]}': unknown {kind} backend {name!r} "
                          f"(known: {', '.join(table)})")
    found: BackendSpec[Any] = table[name]
    return found


def tts_tiers() -> dict[str, tuple[str, ...]]:
    """Each quality tier's fail-over chain, from the providers' ``tiers`` (in table order)."""
    tiers: dict[str, list[str]] = {t: [] for t in ("highest", "high", "medium", "fast")}
    for s in TTS.values():
        for t in s.capabilities.tiers:
            tiers[t].append(s.name)
    return {t: tuple(chain) for t, chain in tiers.items()}
