"""The web client in headless Debian Chromium (driven by playwright's async API, never ``playwright install``),
with a WAV file as the fake microphone, against the real server on the fake engines: the transcript appears,
emotion updates arrive and are drawn, reply audio plays (measured inside the page), and a second utterance over
the reply cuts its playback. ``ATTUNE_SAVE_SCREENSHOTS=1`` also saves the screenshots into docs/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attune.core.audio import write_wav
from tests.fakes import speech_frame
from tests.ws_util import running_server

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                                reason="Debian chromium not installed (scripts/setup.sh installs it)")


def _speech(seconds: float) -> np.ndarray:
    return np.concatenate([speech_frame(i) for i in range(int(seconds * 50))])


def _microphone(path: Path) -> Path:
    """Silence, an utterance, a pause the reply starts in, a second utterance over the reply, silence."""
    z = lambda s: np.zeros(int(s * 16000), np.float32)  # noqa: E731
    write_wav(path, np.concatenate([z(0.5), _speech(1.0), z(1.3), _speech(1.2), z(3.0)]), 16000)
    return path


async def _wait(page: Any, condition: str, timeout_ms: int = 15000) -> None:
    await page.wait_for_function(f"() => {{ const s = window.attune.stats; return {condition}; }}",
                                 timeout=timeout_ms)


async def test_web_client_in_chromium(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    wav = _microphone(tmp_path / "mic.wav")
    async with running_server() as srv, playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
            *FLAGS, f"--use-file-for-fake-audio-capture={wav}%noloop"])
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
            await page.goto(srv.http + "/?ec=0")
            await page.click("#start")  # a real click: the page's audio contexts start on a user gesture
            await _wait(page, "s.transcripts >= 1 && s.emotionDrawn >= 1")
            user_classes = await page.get_attribute("#chat .msg.user", "class") or ""
            await _wait(page, "s.playedPeak > 0.05 && s.audioFrames > 10")
            await _wait(page, "(s.events['response.cancelled'] || 0) >= 1 && s.flushes >= 1")
            stats = await page.evaluate("window.attune.stats")
            transcript = await page.inner_text("#chat")
            category = await page.inner_text("#category")
            await _wait(page, "s.replies >= 1", timeout_ms=15000)
            await page.screenshot(path=str(tmp_path / "web-client-phone.png"))
            await page.set_viewport_size({"width": 900, "height": 720})
            await page.screenshot(path=str(tmp_path / "web-client.png"))
        finally:
            await browser.close()
    assert stats["capturedRms"] > 0.05  # the fake microphone was heard, not silence
    assert "hello there" in transcript
    # Partial transcripts were shown while the user spoke, then replaced by the turn's transcript.
    assert stats["partials"] >= 1
    assert stats["partials"] == stats["events"]["conversation.item.input_audio_transcription.delta"]
    assert stats["partialShown"].startswith("hello") and "partial" not in user_classes
    assert stats["emotionPoints"] >= 1 and "sad" in category.lower()
    assert stats["cutSources"] >= 1  # playback in flight was stopped at the barge-in
    assert stats["events"]["input_audio_buffer.speech_started"] >= 2
    if os.environ.get("ATTUNE_SAVE_SCREENSHOTS") == "1":
        for name in ("web-client-phone.png", "web-client.png"):
            shutil.copy(tmp_path / name, DOCS / name)
