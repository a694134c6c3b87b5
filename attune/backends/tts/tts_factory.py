"""``create_tts(config)``: builds every TTS provider that can run here and puts the router in front of them.

The providers are ``attune.core.catalog.TTS`` (each builds itself with ``from_config``; its tiers, native
prosody dimensions and rate are data there), so a new provider is one catalogue entry plus its module.
"""

from __future__ import annotations

import logging

from attune.backends.base import TTSBackend
from attune.backends.registry import build
from attune.backends.tts.router import TIERS, VoiceModelRouter
from attune.config import Config
from attune.core import catalog
from attune.core.errors import BackendError

log = logging.getLogger(__name__)
TTS_BACKENDS = catalog.TTS  # the providers by name (the catalogue's table, under the name callers know)
DEFAULT_TIER = "high"  # its providers are always built, so a request may name the embedded ones at any tier


def wanted_providers(tier: str, provider: str = "") -> tuple[str, ...]:
    """The providers ``create_tts`` builds: the tier's chain, the forced provider, and the default tier's."""
    names = (*TIERS[tier], *((provider,) if provider else ()), *TIERS[DEFAULT_TIER])
    return tuple(dict.fromkeys(names))


def create_tts(config: Config, *, tier: str | None = None, only: tuple[str, ...] | None = None) -> VoiceModelRouter:
    """The router over every provider of the tier's chain (or ``only`` these) that can be built here.

    An unknown name is a ``ConfigError``. A provider that cannot be built is listed in ``router.unavailable``
    with the reason and install command; the router's chain is its fallback. CSM is a client, so it is always
    built; whether its service answers shows in ``health()`` and fail-over.
    """
    tier = tier or config.tts.tier
    wanted = only or wanted_providers(tier, config.tts.provider)
    providers: dict[str, TTSBackend] = {}
    unavailable: dict[str, str] = {}
    for name in wanted:
        catalog.spec("tts", name)  # unknown -> ConfigError, before anything is built
    for name in wanted:
        try:
            providers[name] = build("tts", name, config)
        except BackendError as exc:
            unavailable[name] = str(exc)
            log.warning("TTS provider %s is unavailable; requests go to the next in the chain: %s", name, exc)
    return VoiceModelRouter(providers, tier=tier, failure_threshold=config.tts.failure_threshold,
                            cooldown_s=config.tts.cooldown_s, unavailable=unavailable,
                            default_provider=config.tts.provider)
