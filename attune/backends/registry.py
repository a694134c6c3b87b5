"""Building any engine from the catalogue (``attune.core.catalog``): ``build(kind, name, config)`` imports the
spec's class and calls its ``from_config(config)``; ``build_or_fallback`` walks the spec's fallback chain when a
known backend cannot load here, logging why once per process.

An unknown name is a ``ConfigError`` naming the key (``config.py`` already rejects it at load time; this guards
the programmatic overrides). A backend that cannot load raises ``BackendUnavailable`` with its install command.
"""

from __future__ import annotations

import logging
from typing import Any

from attune.config import Config
from attune.core import catalog
from attune.core.errors import BackendUnavailable

log = logging.getLogger("attune.backends")

_reported: set[tuple[str, str, str]] = set()  # (kind, name, reason) already logged: a fallback is said once


def build(kind: str, name: str, config: Config) -> Any:
    """The backend ``name`` of ``kind`` built from ``config``; ConfigError (unknown) or BackendUnavailable."""
    spec = catalog.spec(kind, name)
    return spec.load().from_config(config)


def build_or_fallback(kind: str, name: str, config: Config) -> Any:
    """``build``; when the backend cannot load here, its fallback (and so on), logging the reason once."""
    tried: list[str] = []
    while True:
        try:
            return build(kind, name, config)
        except BackendUnavailable as exc:
            fallback = catalog.spec(kind, name).fallback
            if not fallback or fallback in tried:
                raise
            key = (kind, name, str(exc))
            if key not in _reported:
                _reported.add(key)
                log.warning("%s backend %r cannot run here, using %r: %s", kind, name, fallback, exc)
            tried.append(name)
            name = fallback


def availability(kind: str, config: Config) -> dict[str, tuple[bool, str]]:
    """For every backend of ``kind``: (usable here, its description or why not). Builds each one to find out."""
    out: dict[str, tuple[bool, str]] = {}
    for name, spec in catalog.CATALOG[kind].items():
        try:
            build(kind, name, config)
        except BackendUnavailable as exc:
            out[name] = (False, str(exc))
        else:
            out[name] = (True, spec.description)
    return out
