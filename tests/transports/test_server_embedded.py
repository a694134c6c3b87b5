"""The real embedded stack end to end through the server: ``run_agent.py serve`` (Silero VAD, the prosodic
emotion detector, Whisper tiny.en, Qwen2.5 0.5B, Piper) in a child process, ``run_agent.py client`` streaming
espeak-ng speech at its own 22,050 Hz (resampled at the server's edge), then SIGTERM: the process exits 0.

Skipped where the embedded models are not installed (``bash scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from attune.config import REPO_ROOT, load_config
from attune.core.audio import load_wav

LAYER = "real"  # STYLE.md layer 4: real models on real audio

MODELS = ("whisper-tiny.en", "qwen2.5-0.5b", "piper-joe")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def server():
    from attune.models import is_verified

    config = load_config(environ={})
    missing = [m for m in MODELS if not is_verified(config.models_dir(), m)]
    if missing:
        pytest.skip(f"embedded models not installed: {missing}")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ATTUNE_LLM__MAX_TOKENS": "48", "ATTUNE_LOGGING__LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "run_agent.py"), "serve", "--port", str(port),
                             "--llm-model", "qwen2.5-0.5b"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(base + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        yield proc, base, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_embedded_stack_through_the_server(server, tmp_path: Path) -> None:
    proc, base, port = server
    wav = tmp_path / "say.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), "What time does the library open tomorrow?"],
                   check=True)
    assert load_wav(wav)[1] == 22050
    out = tmp_path / "reply.wav"
    client = subprocess.run([sys.executable, str(REPO_ROOT / "run_agent.py"), "client", "--url",
                             f"ws://127.0.0.1:{port}/ws", "--input", str(wav), "--output", str(out), "--tail", "90"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert client.returncode == 0, client.stdout + client.stderr
    events = [json.loads(line) for line in (tmp_path / "reply.events.jsonl").read_text().splitlines()]
    kinds = [e["type"] for e in events]
    transcript = next(e["transcript"] for e in events
                      if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert "library" in transcript.lower()
    assert "emotion.measurement" in kinds and "emotion.turn" in kinds
    done = next(e for e in events if e["type"] == "response.done")
    assert done["status"] == "completed" and done["trace"]["reply_text"]
    assert done["trace"]["llm_prompt_tokens"] > 0 and done["trace"]["llm_ttft_ms"] > 0  # through the shared LLM
    reply, rate = load_wav(out)
    voiced = np.sum(np.abs(reply) > 0.02) / rate
    assert voiced > 0.3  # real speech came back
    health = httpx.get(base + "/health").json()
    assert health["engines"]["asr"]["ready"] and health["engines"]["tts"]["providers"]["piper"]["available"]
    metrics = httpx.get(base + "/metrics").text
    assert 'attune_turns_total{outcome="completed"} 1.0' in metrics
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
