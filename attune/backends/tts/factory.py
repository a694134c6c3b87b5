"""``create_tts(config)``: builds every TTS provider that can run here and puts the router in front of them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from attune.backends.base import BackendSpec, TTSBackend
from attune.backends.tts.router import VoiceModelRouter
from attune.config import Config
from attune.core.errors import BackendError
from attune.models import model_path

log = logging.getLogger(__name__)

TTS_BACKENDS: dict[str, BackendSpec] = {
    "csm": BackendSpec("attune.backends.tts.csm_client:CSMClientTTS", install_hint="pip install httpx==0.28.1",
                       description="Sesame CSM over HTTP (GPU host)"),
    "piper": BackendSpec("attune.backends.tts.piper_backend:PiperTTS", install_hint="bash scripts/setup.sh",
                         description="Piper, embedded en_US joe voice"),
    "espeak": BackendSpec("attune.backends.tts.espeak_backend:EspeakTTS",
                          install_hint="sudo apt-get install espeak-ng", description="espeak-ng formant voice"),
}


def _builders(config: Config) -> dict[str, Callable[[Callable[..., Any]], Any]]:
    t = config.tts

    def piper(factory: Callable[..., Any]) -> Any:
        path = (config.resolve_path(t.piper_model) if t.piper_model
                else model_path(config.resolve_path(config.models.cache_dir), "piper-joe"))
        return factory(path)

    return {
        "csm": lambda f: f(t.csm_url, speaker=t.csm_speaker, timeout_s=t.timeout_s),
        "piper": piper,
        "espeak": lambda f: f(t.espeak_voice),
    }


def create_tts(config: Config, *, tier: str | None = None, only: tuple[str, ...] | None = None) -> VoiceModelRouter:
    """The router over every provider of the tier chains (or ``only`` these) that can be built here.

    A provider that cannot be built is listed in ``router.unavailable`` with the reason and install command.
    CSM is a client, so it is always built; whether its service answers shows in ``health()`` and fail-over.
    """
    tier = tier or config.tts.tier
    wanted = only or (("csm",) if tier == "highest" or config.tts.provider == "csm" else ()) + ("piper", "espeak")
    providers: dict[str, TTSBackend] = {}
    unavailable: dict[str, str] = {}
    builders = _builders(config)
    for name in wanted:
        try:
            providers[name] = builders[name](TTS_BACKENDS[name].load())
        except BackendError as exc:
            unavailable[name] = str(exc)
            log.warning("TTS provider %s is unavailable; requests go to the next in the chain: %s", name, exc)
    router = VoiceModelRouter(providers, tier=tier, failure_threshold=config.tts.failure_threshold,
                              cooldown_s=config.tts.cooldown_s, unavailable=unavailable,
                              default_provider=config.tts.provider)
    return router
