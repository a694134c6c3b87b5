"""The emotion backend table: name -> lazily imported factory, availability checks and fallback to prosodic.

Factories take the ``EmotionConfig`` and return an object with ``name`` and ``analyze(audio, rate)``. A
backend that cannot run here (missing dependency or weights) raises ``BackendUnavailable`` with an install
hint; ``create_emotion_backend`` then logs the reason and builds the prosodic backend instead.
"""

from __future__ import annotations

import logging

from attune.backends.base import BackendSpec, EmotionBackend
from attune.config import EmotionConfig
from attune.core.errors import BackendUnavailable

log = logging.getLogger("attune.emotion.registry")

DEFAULT_BACKEND = "prosodic"

EMOTION_BACKENDS: dict[str, BackendSpec] = {
    "prosodic": BackendSpec(
        "attune.backends.emotion.prosodic:ProsodicBackend",
        description="pure DSP features + a small learned model shipped as JSON (default, no extra install)",
    ),
    "emotion2vec": BackendSpec(
        "attune.backends.emotion.emotion2vec:Emotion2VecBackend",
        install_hint="pip install torch  # and set emotion.model_path to an emotion2vec TorchScript export",
        description="emotion2vec+ speech-emotion model from user-supplied weights (needs torch)",
    ),
}


def build_emotion_backend(name: str, config: EmotionConfig | None = None) -> EmotionBackend:
    """Build the named backend or raise BackendUnavailable (unknown name, missing dependency or weights)."""
    spec = EMOTION_BACKENDS.get(name)
    if spec is None:
        raise BackendUnavailable(f"unknown emotion backend {name!r} (known: {', '.join(EMOTION_BACKENDS)})",
                                 backend=name)
    factory = spec.load()
    backend: EmotionBackend = factory(config or EmotionConfig())
    return backend


def create_emotion_backend(name: str | None = None, config: EmotionConfig | None = None) -> EmotionBackend:
    """The backend ``name`` (default: config.backend); an unusable one falls back to prosodic, logging why."""
    cfg = config or EmotionConfig()
    wanted = name or cfg.backend
    try:
        return build_emotion_backend(wanted, cfg)
    except BackendUnavailable as exc:
        if wanted == DEFAULT_BACKEND:
            raise
        log.warning("emotion backend %r unavailable, using %s: %s", wanted, DEFAULT_BACKEND, exc)
        return build_emotion_backend(DEFAULT_BACKEND, cfg)


def get_available_backends(config: EmotionConfig | None = None) -> dict[str, tuple[bool, str]]:
    """For every registered backend: (usable here, reason or description). Builds each one to find out."""
    out: dict[str, tuple[bool, str]] = {}
    for name, spec in EMOTION_BACKENDS.items():
        try:
            build_emotion_backend(name, config)
        except BackendUnavailable as exc:
            out[name] = (False, str(exc))
        else:
            out[name] = (True, spec.description)
    return out
