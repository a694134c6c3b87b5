"""The persona page and the conversation page's persona picker in headless Debian Chromium (playwright's async API,
never ``playwright install``), against the real server and its real persona API on the fake engines: create a
persona through the form, see it listed, edit its pitch (a bad value is named beside the field), upload a sample
the server rejects (the rule is shown) and one it accepts (its figures are shown), try the voice (the preview's
WAV is decoded and played in the page), pick it on the conversation page (session.update with persona_id), and
delete it. With the real Piper voice behind the router, raising the pitch in the form raises the F0 of what the
page's "try" button plays. ``ATTUNE_SAVE_SCREENSHOTS=1`` also saves docs/web-personas.png."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from attune.agent.speech_dsp import f0_track
from attune.backends.tts.piper_backend import PiperTTS
from attune.backends.tts.router import VoiceModelRouter
from attune.core.audio import load_wav, load_wav_bytes
from tests.engines_util import installed_model
from tests.fakes import ToneTTS
from tests.transports.test_web_client import CHROMIUM, DOCS, FLAGS
from tests.ws_util import FakeStack, running_server

LAYER = "fakes"  # the real server and persona API; the engines behind the preview are the fakes of tests/fakes.py

TOKEN = "page-test-token"
REFERENCES = Path(__file__).resolve().parents[2] / "attune" / "references"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                                reason="Debian chromium not installed (scripts/setup.sh installs it)")


def _samples(tmp_path: Path) -> tuple[Path, Path]:
    """A real 2.2 s recording (too short: the duration rule), and ~9.8 s of real speech from the reference bank
    (24 kHz) joined with short pauses, over faint noise, as a 16-bit stereo file (accepted, with a down-mix note)."""
    short = tmp_path / "short.wav"
    shutil.copy(REFERENCES / "neutral.wav", short)
    parts: list[np.ndarray] = []
    rate = 0
    for name in ("neutral", "calm_supportive", "confident"):
        audio, rate = load_wav(REFERENCES / f"{name}.wav")
        parts += [audio, np.zeros(int(0.3 * rate), np.float32)]
    speech = np.concatenate(parts)
    noise = np.random.default_rng(7).normal(0.0, 0.002, (len(speech), 2))
    good = tmp_path / "good.wav"
    sf.write(str(good), np.clip(speech[:, None] + noise, -1, 1), rate, subtype="PCM_16")
    return short, good


async def _wait(page: Any, condition: str, timeout_ms: int = 15000) -> None:
    await page.wait_for_function(f"() => {{ const s = window.personaPage.stats; return {condition}; }}",
                                 timeout=timeout_ms)


async def _layout_fits(page: Any) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def _unlabelled(page: Any) -> list[str]:
    return list(await page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map((el) => el.id)"""))


async def _fill_persona(page: Any) -> str:
    """Fills the form for a new persona (opened from the keyboard); returns the id of the field focused on open."""
    await page.focus("#new")
    await page.keyboard.press("Enter")
    focused = str(await page.evaluate("document.activeElement.id"))
    await page.fill("#f-id", "clinic")
    await page.fill("#f-name", "Ada")
    await page.fill("#f-description", "the clinic's waiting-room voice")
    await page.fill("#f-traits", "You are Ada, a calm receptionist. You speak in short, kind sentences.")
    await page.select_option("#f-strategy", "match")
    await page.fill("#f-greeting", "Hello, I am Ada. Take a seat, please.")
    await page.fill("#f-provider", "piper")
    await page.fill("#f-fallback", "espeak")
    await page.fill("#f-language", "en-us")
    await page.select_option("#f-quality", "medium")
    await page.fill("#f-speed", "1.1")
    await page.fill("#f-pitch", "2")
    for key, value in (("alpha", "0.3"), ("diffusion_steps", "5"), ("style", "warm")):
        await page.click("#add-setting")
        await page.locator("#advanced .kv").last.locator(".k").fill(key)
        await page.locator("#advanced .kv").last.locator(".v").fill(value)
    return focused


async def test_persona_page_in_chromium(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    short, good = _samples(tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with running_server(tokens=(TOKEN,)) as srv, playwright.async_playwright() as pw, \
            httpx.AsyncClient(base_url=srv.http, headers=auth) as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
            page.on("dialog", lambda d: d.accept())  # the delete button asks first
            page.on("console", lambda m: print("console:", m.text))  # shown when the test fails
            page.on("pageerror", lambda e: print("page error:", e))
            await page.goto(f"{srv.http}/personas?token={TOKEN}")
            await _wait(page, "s.listed >= 1")
            focused_on_open = await _fill_persona(page)
            fits_phone = await _layout_fits(page)
            unlabelled = await _unlabelled(page)
            await page.click("#save")
            await _wait(page, "s.saved >= 1")
            listed = await page.inner_text("#list")
            stored = (await http.get("/v1/personas/clinic")).json()

            await page.fill("#f-pitch", "20")  # outside -12..12: the server names voice.pitch
            await page.click("#save")
            await _wait(page, "s.errors.length >= 1")
            pitch_error = await page.inner_text("#e-pitch")
            pitch_invalid = await page.get_attribute("#f-pitch", "aria-invalid")
            await page.fill("#f-pitch", "-3")
            await page.press("#f-pitch", "Enter")  # Enter in a field saves, as a form does
            await _wait(page, "s.saved >= 2")
            pitch_after = (await http.get("/v1/personas/clinic")).json()["voice"]["pitch"]

            await page.set_input_files("#f-sample", str(short))
            await page.click("#upload")
            await _wait(page, "s.rejections.length >= 1")
            rejection = await page.inner_text("#e-sample")
            await page.set_input_files("#f-sample", str(good))
            await page.click("#upload")
            await _wait(page, "s.uploads >= 1")
            sample_text = await page.inner_text("#sample")
            notes = await page.inner_text("#notes")

            await page.fill("#f-line", "Please take a seat, the doctor will see you soon.")
            await page.click("#try-buttons [data-emotion=happy]")
            await page.click("#try-buttons [data-emotion=sad]")
            await _wait(page, "s.previews.length >= 2 && s.played >= 1", timeout_ms=30000)
            previews = await page.evaluate("window.personaPage.stats.previews")
            await page.set_viewport_size({"width": 900, "height": 1400})
            await page.screenshot(path=str(tmp_path / "web-personas.png"), full_page=True)

            await page.goto(f"{srv.http}/?token={TOKEN}")
            await page.wait_for_selector("#persona option[value=clinic]", state="attached")
            await page.select_option("#persona", "clinic")
            await page.click("#start")
            await page.wait_for_function("() => window.attune.stats.personaId === 'clinic'", timeout=15000)
            picker_fits = await _layout_fits(page)
            await page.select_option("#persona", "")  # (configured): persona_id null, back to the configured agent
            await page.wait_for_function("() => window.attune.stats.personaId === null", timeout=15000)
            await page.click("#start")  # stop

            await page.goto(f"{srv.http}/personas?token={TOKEN}")
            await _wait(page, "s.listed >= 1")
            await page.click("#list li[data-id=clinic] button.edit")
            await page.click("#delete")
            await _wait(page, "s.deleted >= 1")
            listed_after = await page.inner_text("#list")
            gone = (await http.get("/v1/personas/clinic")).status_code

            await page.click("#new")  # a taken id: 409, named beside the id field
            await page.fill("#f-id", "default")
            await page.click("#save")
            await _wait(page, "s.errors.length >= 1")  # counted since this page was loaded
            duplicate = await page.inner_text("#e-id")
            await page.click("#list li[data-id=default] button.edit")  # the last persona cannot go
            await page.click("#delete")
            await _wait(page, "s.errors.length >= 2")
            last = await page.inner_text("#e-id")
            codes = [e["code"] for e in await page.evaluate("window.personaPage.stats.errors")]
        finally:
            await browser.close()

    assert fits_phone and picker_fits, "the page is wider than a 390 px phone"
    assert unlabelled == [], f"inputs without a label: {unlabelled}"
    assert focused_on_open == "f-id"
    assert "Ada" in listed and "clinic" in listed
    assert stored["name"] == "Ada" and stored["strategy"] == "match"
    assert stored["greeting"] == "Hello, I am Ada. Take a seat, please."
    assert stored["voice"]["fallback"] == ["espeak"] and stored["voice"]["quality"] == "medium"
    assert stored["voice"]["speed"] == pytest.approx(1.1) and stored["voice"]["pitch"] == pytest.approx(2.0)
    assert stored["voice"]["advanced"] == {"alpha": 0.3, "diffusion_steps": 5, "style": "warm"}
    assert pitch_error.strip() and pitch_invalid == "true", "the pitch error is not shown beside the pitch"
    assert pitch_after == pytest.approx(-3.0)
    assert 'rule "duration"' in rejection and "2.19 s" in rejection  # the rule, the measured value
    assert "9.8 s" in sample_text and "24000 Hz" in sample_text and "SNR" in sample_text
    assert "down-mixed 2 channels to mono" in notes
    assert [p["emotion"] for p in previews] == ["happy", "sad"]
    for p in previews:
        assert p["decodedDuration"] > 0.2 and p["peak"] > 0.05 and p["rate"] > 0
    assert "clinic" not in listed_after and gone == 404
    assert codes == ["exists", "last_persona"]
    assert "exists" in duplicate and "default" in duplicate and last.strip()
    if os.environ.get("ATTUNE_SAVE_SCREENSHOTS") == "1":
        shutil.copy(tmp_path / "web-personas.png", DOCS / "web-personas.png")


def _piper_router() -> VoiceModelRouter:
    """The real Piper voice first; the fallback a tone (espeak is not what this test listens to)."""
    espeak = ToneTTS(22050)
    espeak.name = "espeak"
    return VoiceModelRouter({"piper": PiperTTS(installed_model("piper-joe")), "espeak": espeak}, sample_rate=22050)


async def _try_and_hear(page: Any, n: int) -> float:
    """Clicks "Try calm", waits for the page's ``n``-th preview and returns the median F0 of the WAV it received."""
    await page.click("#try-buttons [data-emotion=calm]")
    await _wait(page, f"s.previews.length >= {n}", timeout_ms=60000)
    b64 = await page.evaluate("""(() => { const b = new Uint8Array(window.personaPage.state.lastWav); let s = "";
        for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
        return btoa(s); })()""")
    samples, rate = load_wav_bytes(base64.b64decode(b64))
    f0, _ = f0_track(samples, rate)
    voiced = f0[f0 > 0]
    assert len(voiced) > 20, "the preview has too little voiced speech to measure"
    return float(np.median(voiced))


@pytest.mark.real
async def test_persona_page_pitch_changes_the_real_voice() -> None:
    playwright = pytest.importorskip("playwright.async_api")
    async with running_server(FakeStack(tts=_piper_router())) as srv, playwright.async_playwright() as pw, \
            httpx.AsyncClient(base_url=srv.http, timeout=60) as http:
        created = await http.post("/v1/personas", json={"id": "ada", "name": "Ada",
                                                        "voice": {"provider": "piper", "pitch": -3.0}})
        assert created.status_code == 201, created.text
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            page.on("console", lambda m: print("console:", m.text))  # shown when the test fails
            await page.goto(f"{srv.http}/personas")
            await _wait(page, "s.listed >= 1")
            await page.click("#list li[data-id=ada] button.edit")
            await page.fill("#f-line", "Hello, how are you feeling today?")
            low = await _try_and_hear(page, 1)
            await page.fill("#f-pitch", "3")
            await page.press("#f-pitch", "Enter")
            await _wait(page, "s.saved >= 1")
            high = await _try_and_hear(page, 2)
            previews = await page.evaluate("window.personaPage.stats.previews")
        finally:
            await browser.close()
    assert all(p["decodedDuration"] > 0.5 and p["peak"] > 0.05 for p in previews)
    assert 1.2 < high / low < 1.7, (low, high)  # 6 semitones apart is x1.41
