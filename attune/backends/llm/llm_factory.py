"""``create_llm(config)``: the one place an LLM backend is chosen (``attune.core.catalog.LLM``; each backend
builds itself with ``from_config``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from attune.backends.base import LLMBackend
from attune.backends.registry import build
from attune.config import Config


def create_llm(config: Config, **overrides: Any) -> LLMBackend:
    """Build the configured LLM backend; ``overrides`` replace ``config.llm`` keys (e.g. ``model=...``).

    An unknown name is a ``ConfigError``; a backend that cannot load raises ``BackendUnavailable`` (LLMs have no
    fallback: a reply from another model is not what the user configured)."""
    config = replace(config, llm=replace(config.llm, **overrides)) if overrides else config
    backend: LLMBackend = build("llm", config.llm.backend, config)
    return backend
