"""The ``kiosk`` subcommand: a headless, unattended agent on the local microphone and loudspeaker, logging JSON
lines to stderr (journald keeps them), until SIGTERM or SIGINT. See docs/KIOSK.md for the systemd unit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from attune.config import Config
from attune.core.errors import PersonaError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("kiosk", help="headless unattended agent on the microphone and loudspeaker (JSON logs)")
    p.add_argument("--input-device", default=None, help="microphone: index or part of its name")
    p.add_argument("--output-device", default=None, help="speaker: index or part of its name")
    p.add_argument("--echo", choices=("webrtc", "off"), default=None, help="echo cancellation (off = headphones)")
    p.set_defaults(handler=cmd_kiosk)


def json_logging(level: str) -> None:
    """Route every log record to stderr as one JSON object per line."""
    from attune.transports.kiosk import JsonLineFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


async def run_kiosk(kiosk: Any, *, health_host: str = "127.0.0.1", health_port: int = 0) -> int:
    """Run ``kiosk`` (and ``GET /health`` on ``health_host:health_port`` unless the port is 0) until SIGTERM or
    SIGINT, then let it finish cleanly (reply cut, streams closed, health server stopped); 0."""
    from attune.transports.kiosk_health import serve_health

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = (asyncio.create_task(serve_health(kiosk.health_snapshot, health_host, health_port, done))
              if health_port else None)
    try:
        await kiosk.run(stop)
    finally:
        done.set()
        if health is not None:
            await health
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def build_kiosk(config: Config, args: argparse.Namespace) -> Any:
    """The kiosk on the embedded engines and PortAudio (which must be importable: checked here, at start), as the
    stored persona ``personas.default_id`` where one is set (an unknown id is a ConfigError naming the key)."""
    from attune.agent.persona_store import PersonaStore
    from attune.agent.persona_voice import VoiceRegistry
    from attune.pipeline.session_backends import ChosenPersona
    from attune.pipeline.stack import build_backends, warm_up
    from attune.transports.kiosk import Kiosk
    from attune.transports.microphone import import_sounddevice, open_local_audio, rescan
    from attune.transports.persona_api import PersonaService

    sd = import_sounddevice()  # no PortAudio at all is not worth retrying: fail now, with the install hint
    store = PersonaStore.from_config(config) if config.personas.default_id else None
    start_record = store.default_persona(config.personas.default_id) if store is not None else None
    registry = VoiceRegistry()

    async def load_engines() -> Any:
        backends = await asyncio.to_thread(build_backends, config, emotion=False)
        await warm_up(backends, config, greetings=(config.kiosk.greeting,))  # greeting ready in the speech cache
        if store is not None and start_record is not None:  # its persona's greeting and acknowledgements too
            await PersonaService(store, backends.tts, config, registry).prewarm(backends.voice.phrases,
                                                                               only=(start_record.id,))
        return backends

    async def persona(backends: Any) -> Any:
        """The persona as stored now (its start-up record if it has gone since) and its voice. A voice that
        cannot load fails the engine load, which the kiosk retries."""
        if store is None or start_record is None:
            return None
        service = PersonaService(store, backends.tts, config, registry)
        try:
            return await service.resolve(start_record.id)
        except PersonaError:
            return ChosenPersona(start_record, await asyncio.to_thread(service.voice_sync, start_record))

    def open_audio() -> Any:
        return open_local_audio(config, sd=sd, input_device=args.input_device, output_device=args.output_device,
                                echo=args.echo)

    return Kiosk(config, load_engines=load_engines, open_audio=open_audio, rescan=lambda: rescan(sd), persona=persona)


def cmd_kiosk(args: argparse.Namespace, config: Config) -> int:
    json_logging(args.log_level or config.logging.level)
    k = config.kiosk
    return asyncio.run(run_kiosk(build_kiosk(config, args), health_host=k.health_host, health_port=k.health_port))
