"""``create_asr(config)``: the one place an ASR backend is chosen (``auto`` = mlx-whisper on Apple Silicon)."""

from __future__ import annotations

import platform
from typing import Any

from attune.backends.asr.common import WHISPER_MODELS
from attune.backends.base import ASRBackend, BackendSpec
from attune.config import Config
from attune.core.errors import BackendUnavailable
from attune.models import model_path

ASR_BACKENDS: dict[str, BackendSpec] = {
    "faster-whisper": BackendSpec("attune.backends.asr.faster_whisper_backend:FasterWhisperASR",
                                  install_hint="bash scripts/setup.sh", description="Whisper on CPU (CTranslate2)"),
    "mlx-whisper": BackendSpec("attune.backends.asr.mlx_backend:MLXWhisperASR",
                               install_hint="pip install mlx-whisper", description="Whisper on Apple Silicon"),
}


def is_apple_silicon(system: str | None = None, machine: str | None = None) -> bool:
    return (system or platform.system()) == "Darwin" and (machine or platform.machine()) == "arm64"


def choose_asr_backend(requested: str, *, system: str | None = None, machine: str | None = None,
                       mlx_importable: bool | None = None) -> str:
    """Resolve ``auto``: mlx-whisper on Apple Silicon when it imports, faster-whisper everywhere else."""
    if requested != "auto":
        return requested
    if not is_apple_silicon(system, machine):
        return "faster-whisper"
    if mlx_importable is None:
        import importlib.util

        mlx_importable = importlib.util.find_spec("mlx_whisper") is not None
    return "mlx-whisper" if mlx_importable else "faster-whisper"


def create_asr(config: Config, **overrides: Any) -> ASRBackend:
    """Build the configured ASR backend; ``overrides`` (e.g. ``model="base"``) replace ``config.asr`` keys."""
    settings = {**config.asr.__dict__, **overrides}
    name = choose_asr_backend(settings["backend"])
    if name not in ASR_BACKENDS:
        raise BackendUnavailable(f"unknown ASR backend '{name}' (known: {', '.join(ASR_BACKENDS)})")
    model = settings["model"]
    if model not in WHISPER_MODELS:
        raise BackendUnavailable(f"unknown Whisper model '{model}' (known: {', '.join(WHISPER_MODELS)})")
    folder = model_path(config.resolve_path(config.models.cache_dir), WHISPER_MODELS[model])
    factory = ASR_BACKENDS[name].load()
    backend: ASRBackend = factory(folder, compute_type=settings["compute_type"], threads=settings["threads"],
                                  beam_size=settings["beam_size"], language=settings["language"],
                                  encoder_window_s=settings["encoder_window_s"])
    return backend
