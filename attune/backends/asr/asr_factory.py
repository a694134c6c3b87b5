"""``create_asr(config)``: the one place an ASR backend is chosen (``auto`` = mlx-whisper on Apple Silicon).

The backends themselves are ``attune.core.catalog.ASR``; each builds itself with ``from_config``.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from typing import Any

from attune.backends.base import ASRBackend
from attune.backends.registry import build_or_fallback
from attune.config import Config


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
    """Build the configured ASR backend; ``overrides`` (e.g. ``model="base"``) replace ``config.asr`` keys.

    An unknown backend name is a ``ConfigError``; a named backend that cannot load here falls back along its
    chain (mlx-whisper -> faster-whisper, logged once) and ``BackendUnavailable`` says what to install."""
    config = replace(config, asr=replace(config.asr, **overrides)) if overrides else config
    backend: ASRBackend = build_or_fallback("asr", choose_asr_backend(config.asr.backend), config)
    return backend
