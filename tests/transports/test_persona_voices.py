"""Persona voices end to end on a real server with the real Piper voice (the other engines fake): switching
``persona_id`` mid-session changes the next reply's voice (two personas a few semitones apart give replies whose
F0 differs accordingly), and the preview endpoint speaks in the persona's voice."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np

from attune.agent.speech_dsp import f0_track
from attune.backends.tts.piper_backend import PiperTTS
from attune.backends.tts.router import VoiceModelRouter
from attune.core.audio import load_wav_bytes
from tests.engines_util import installed_model
from tests.fakes import ToneTTS
from tests.ws_util import FakeStack, Log, collect, connect, running_server, talk, wait_for

LAYER = "real"
RATE = 16000  # the test server's output rate


def _router() -> VoiceModelRouter:
    espeak = ToneTTS(22050)
    espeak.name = "espeak"
    return VoiceModelRouter({"piper": PiperTTS(installed_model("piper-joe")), "espeak": espeak},
                            sample_rate=22050)


def _median_f0(samples: np.ndarray, rate: int) -> float:
    f0, _ = f0_track(samples, rate)
    voiced = f0[f0 > 0]
    assert len(voiced) > 20, "the reply has too little voiced speech to measure"
    return float(np.median(voiced))


def _pcm(chunks: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32768.0


async def test_switching_persona_changes_the_next_replys_pitch() -> None:
    async with running_server(FakeStack(tts=_router())) as srv, httpx.AsyncClient(base_url=srv.http) as c:
        for pid, pitch in (("deep", -4.0), ("bright", 4.0)):
            resp = await c.post("/v1/personas", json={"id": pid, "voice": {"provider": "piper", "pitch": pitch}})
            assert resp.status_code == 201
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            await wait_for(log, "session.created")
            heard = {}
            for n, pid in enumerate(("deep", "bright"), start=1):
                await ws.send(json.dumps({"type": "session.update", "session": {"persona_id": pid}}))
                await wait_for(log, "session.updated", count=n)
                start = len(log.audio)
                await talk(ws, log)
                heard[pid] = _median_f0(_pcm(log.audio[start:]), RATE)
            await ws.close()
            await reader
    ratio = heard["bright"] / heard["deep"]
    assert 1.35 < ratio < 2.3, heard  # 8 semitones apart is x1.59


async def test_preview_speaks_in_the_personas_voice() -> None:
    async with running_server(FakeStack(tts=_router())) as srv, httpx.AsyncClient(base_url=srv.http,
                                                                                 timeout=60) as c:
        f0 = {}
        for pid, pitch in (("low", -5.0), ("high", 5.0)):
            await c.post("/v1/personas", json={"id": pid, "voice": {"provider": "piper", "pitch": pitch}})
            resp = await c.post(f"/v1/personas/{pid}/preview", json={"text": "Hello, how are you feeling today?",
                                                                      "emotion": "calm"})
            assert resp.status_code == 200
            samples, rate = load_wav_bytes(resp.content)
            assert rate == RATE
            f0[pid] = _median_f0(samples, rate)
    assert f0["high"] / f0["low"] > 1.5, f0  # 10 semitones apart is x1.78
