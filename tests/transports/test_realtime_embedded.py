"""The real embedded stack through ``/v1/realtime`` with the official ``openai`` SDK: ``run_agent.py serve`` (Silero
VAD, the emotion detector, Whisper tiny.en, Qwen2.5 0.5B, Piper) in a child process; espeak-ng speech resampled to
24 kHz and appended as base64 with the server's turn detection; the user transcript, a spoken reply and its
transcript come back. Skipped where the embedded models are not installed (``bash scripts/setup.sh``)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path

import numpy as np
import pytest

from attune.core.audio import load_wav, resample
from tests.transports.realtime_util import RATE, Received, b64, read_sdk
from tests.transports.test_server_embedded import server  # noqa: F401 - the fixture

LAYER = "real"  # STYLE.md layer 4: real models on real audio

openai = pytest.importorskip("openai", reason="the openai SDK is in the dev extra")


async def _converse(port: int, audio: np.ndarray) -> Received:
    client = openai.AsyncOpenAI(api_key="any", base_url=f"http://127.0.0.1:{port}/v1")
    async with client.realtime.connect(model="attune") as conn:
        got = Received()
        reader = asyncio.create_task(read_sdk(conn, got))
        await got.wait("session.created", timeout_s=30)
        padded = np.concatenate([np.zeros(RATE // 2, np.float32), audio, np.zeros(int(1.5 * RATE), np.float32)])
        step = RATE // 10
        for i in range(0, len(padded), step):  # in real time, as a microphone would
            await conn.input_audio_buffer.append(audio=b64(padded[i:i + step]))
            await asyncio.sleep(0.1)
        await got.wait("response.done", timeout_s=120)
        reader.cancel()
        return got


def test_real_recording_gets_a_transcript_and_a_spoken_reply(server, tmp_path: Path) -> None:  # noqa: F811
    proc, base, port = server
    wav = tmp_path / "say.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), "What time does the library open tomorrow?"],
                   check=True)
    samples, rate = load_wav(wav)
    got = asyncio.run(_converse(port, resample(samples, rate, RATE).astype(np.float32)))
    transcript = got.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert "library" in transcript.lower()
    done = got.of("response.done")[0]
    assert done["response"]["status"] == "completed"
    spoken = done["response"]["output"][0]["content"][0]["transcript"]
    assert len(spoken.split()) >= 2
    audio = np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in got.of("response.output_audio.delta")),
                          dtype="<i2").astype(np.float32) / 32768.0
    voiced = np.sum(np.abs(audio) > 0.02) / RATE
    assert voiced > 0.3  # real speech came back, at 24 kHz
    assert got.of("emotion.turn") and done["attune"]["strategy"]
    assert not got.invalid, got.invalid
