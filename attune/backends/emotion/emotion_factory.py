"""Choosing the emotion backend: ``create_emotion_backend(config)`` builds ``emotion.backend`` from the catalogue
(``attune.core.catalog.EMOTION``) and falls back to prosodic when it cannot run here, logging why once.

Every backend class has ``from_config(config)`` and ``analyze(audio, rate)``; one that also implements
``FrameTrackBackend`` (prosodic) gets the streaming detector's cheap per-hop path. An unknown name is a
``ConfigError`` naming ``emotion.backend``.
"""

from __future__ import annotations

from attune.backends.base import EmotionBackend
from attune.backends.registry import availability, build, build_or_fallback
from attune.config import Config

DEFAULT_BACKEND = "prosodic"


def build_emotion_backend(name: str, config: Config | None = None) -> EmotionBackend:
    """Build the named backend: ConfigError (unknown) or BackendUnavailable (missing dependency or weights)."""
    backend: EmotionBackend = build("emotion", name, config or Config())
    return backend


def create_emotion_backend(config: Config | None = None, name: str | None = None) -> EmotionBackend:
    """The backend ``name`` (default: ``emotion.backend``); one that cannot run here falls back to prosodic."""
    cfg = config or Config()
    backend: EmotionBackend = build_or_fallback("emotion", name or cfg.emotion.backend, cfg)
    return backend


def get_available_backends(config: Config | None = None) -> dict[str, tuple[bool, str]]:
    """For every registered backend: (usable here, reason or description). Builds each one to find out."""
    return availability("emotion", config or Config())
