"""Helpers shared by the engine tests: model locations (skip when not installed) and a localhost aiohttp server."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from attune.config import Config
from attune.models import is_verified, model_path

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")


def installed_model(name: str) -> Path:
    config = Config()
    cache = config.models_dir()
    if not is_verified(cache, name):
        pytest.skip(f"model {name} not installed (bash scripts/setup.sh)")
    return model_path(cache, name)


def librivox_clips() -> list[tuple[Path, str]]:
    """(wav, reference transcript) pairs from Debian's pocketsphinx-testdata, or a skip."""
    from attune_lab.bench_engines import librivox_pairs

    pairs = librivox_pairs(LIBRIVOX_DIR)
    if not pairs:
        pytest.skip("pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)")
    return pairs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run an aiohttp application on 127.0.0.1 and yield its base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def piper_seed() -> int:
    """The seed of Piper's noise in the tests (0). ``ATTUNE_TEST_PIPER_SEED=1 pytest -m real`` renders every
    sentence anew: a test's margin should hold on other renders too, as it must on another CPU, whose kernels
    change the render (the seeds stand in for that; each test notes what it measured on seeds 0-2)."""
    return int(os.environ.get("ATTUNE_TEST_PIPER_SEED", "0"))


def tts_speech(text: str, provider: str = "piper", level_dbfs: float = -24.0) -> tuple[Any, int]:
    """Neutral speech from a real TTS provider through the router, or a skip. At -24 dBFS RMS Piper's peaks
    stay near 0.6, under the prosody DSP's limiter knee (0.9); at -20 they reach it. Piper renders are seeded:
    the closed-loop thresholds were checked on unseeded renders too (spreads noted at each test)."""
    from attune.agent.speech_source import render_speech
    from attune.core.errors import BackendUnavailable

    if provider == "piper":
        import onnxruntime

        onnxruntime.set_seed(piper_seed())  # Piper's VITS samples noise: one fixed render, the same on every run
    try:
        speech = render_speech(text, provider=provider, level_dbfs=level_dbfs)
    except BackendUnavailable as exc:
        pytest.skip(f"TTS provider {provider} unavailable: {exc}")
    return speech.audio, speech.sample_rate
