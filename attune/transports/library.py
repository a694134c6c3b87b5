"""Attune as a library: ``from attune import Attune``. Load the embedded stack once, open sessions on it, push
16 kHz audio in, read events out: the same ``Session`` the microphone, file and WebSocket ways in use.

    agent = await Attune.load()                      # Whisper, the LLM, Piper, VAD, smart-turn, emotion
    async with agent.session() as session:
        await session.push_audio(frame)              # 20 ms of 16 kHz mono float32 (FRAME = 320 samples)
        event = await session.events.get()           # SessionEvent: .type, .data, .audio (reply speech)

docs/API.md has a runnable example; ``core/events.py`` lists the event types (OpenAI Realtime names plus
``emotion.measurement`` and ``emotion.turn``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attune.config import Config, load_config
from attune.core.audio import SAMPLE_RATE, load_wav, prepare
from attune.pipeline.session import Session
from attune.pipeline.session_backends import SessionBackends
from attune.pipeline.stack import build_backends, for_session, warm_up


def load_audio(path: str | Path) -> np.ndarray:
    """A recording (WAV, FLAC, OGG; any rate, any channels) as 16 kHz mono float32, ready to cut into frames."""
    samples, rate = load_wav(path)
    return prepare(samples, rate, SAMPLE_RATE)[0]


@dataclass
class Attune:
    """The engines, built once per process and shared by every session opened on them."""

    config: Config
    backends: SessionBackends

    @classmethod
    async def load(cls, config: Config | str | Path | None = None, *, warm: bool = True) -> Attune:
        """Build the configured stack (``config``: a ``Config``, a config file, or None for the default one).
        ``warm``: evaluate the persona prefix and render the stock phrases now, so the first turn is not slow.
        A model that is not installed raises ``BackendUnavailable`` naming ``attune setup``."""
        cfg = config if isinstance(config, Config) else load_config(config)
        backends = build_backends(cfg)
        if warm:
            await warm_up(backends, cfg)
        return cls(cfg, backends)

    def session(self) -> Session:
        """A new conversation (its own VAD, turn state, emotion stream and memory) over the shared engines; use it
        as ``async with``: entering starts it, leaving cancels its work and closes it."""
        return Session(self.config, for_session(self.config, self.backends))
