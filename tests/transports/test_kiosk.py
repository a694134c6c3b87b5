"""The kiosk: backoff and JSON log lines (loop-free); greeting, idle reset, a lost and returning sound card,
failing engines and the health snapshot over a fake duplex device with fake engines; SIGTERM in a subprocess."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from attune.config import load_config
from attune.pipeline.session import SessionBackends
from attune.pipeline.session_backends import ChosenPersona, Voice
from attune.pipeline.turn import EnergyVAD
from attune.transports.echo import PassThrough
from attune.transports.kiosk import Backoff, JsonLineFormatter, Kiosk, log_event
from attune.transports.microphone import LocalAudio
from tests.fake_audio import FakeDuplexDevice
from tests.fakes import FakeEmotion, FixedASR, ScriptedLLM, ToneTTS, calm_planner

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


# ---- loop-free ----
def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def test_log_lines_are_one_json_object_each_with_their_fields() -> None:
    record = logging.LogRecord("attune.kiosk", logging.WARNING, __file__, 1, "device.lost", None, None)
    record.fields = {"error": "unplugged", "retry_in_s": 1.0}
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "device.lost" and data["level"] == "WARNING" and data["retry_in_s"] == 1.0
    assert data["ts"].endswith("+00:00")


# ---- the kiosk over a fake sound card ----
def _config(**kiosk: Any) -> Any:
    settings = {"idle_reset_s": 3.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, **kiosk}
    return load_config(environ={}, overrides={"pipeline": {"vad": "energy", "output_sample_rate": RATE},
                                              "local_audio": {"device_timeout_s": 0.3}, "kiosk": settings})


class Rig:
    """A kiosk on fake engines and a fake device; ``load_failures`` engine loads fail first."""

    def __init__(self, *, load_failures: int = 0, llm: ScriptedLLM | None = None, persona: Any = None,
                 **kiosk: Any) -> None:
        self.config = _config(**kiosk)
        self.llm = llm or ScriptedLLM(["Sure, I am here."])
        self.loads = 0
        self.load_failures = load_failures
        self.memories: list[int] = []
        self.tts: list[ToneTTS] = []
        self.kiosk = Kiosk(self.config, load_engines=self._load, open_audio=self._open, rescan=self._rescan,
                           for_session=self._for_session, persona=persona)
        self.device = FakeDuplexDevice(pace=self._consumed_s)
        self.rescans = 0
        self._audio: LocalAudio | None = None
        self._base_s = 0.0

    def _consumed_s(self) -> float:
        """Device time the kiosk has read up to (so the fake card never runs ahead of it)."""
        audio = self._audio
        return self.device.time_s if audio is None else self._base_s + audio.frames_read * 0.02

    async def _load(self) -> SessionBackends:
        self.loads += 1
        if self.loads <= self.load_failures:
            raise RuntimeError("the LLM server is not up yet")
        self.tts.append(ToneTTS())
        return SessionBackends(asr=FixedASR(), llm=self.llm, voice=Voice(self.tts[-1]), vad=EnergyVAD(),
                               emotion=FakeEmotion(), aggregate=lambda rs: rs[-1] if rs else None, planner=calm_planner)

    def _for_session(self, config: Any, b: SessionBackends) -> SessionBackends:
        return SessionBackends(asr=b.asr, llm=b.llm, voice=b.voice, vad=EnergyVAD(), emotion=FakeEmotion(),
                               aggregate=b.aggregate, planner=b.planner)

    def _open(self) -> LocalAudio:
        self._base_s = self.device.time_s
        self._audio = LocalAudio(self.device.module, output_rate=RATE, canceller=PassThrough(),
                                 device_timeout_s=self.config.local_audio.device_timeout_s)
        return self._audio

    def _rescan(self) -> None:
        self.rescans += 1

    async def run_until(self, done: Any, max_wall_s: float = 60.0) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self.kiosk.run(stop))
        try:
            for _ in range(int(max_wall_s / 0.02)):
                if done():
                    break
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"condition not met; health: {self.kiosk.health_snapshot()}")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            self.device.shutdown()

    def say_now(self, seconds: float = 1.0, after_s: float = 0.2) -> None:
        self.device.say(_tone(seconds), self.device.time_s + after_s)


def _greeting_played(device: FakeDuplexDevice) -> float:
    return float(np.sum(np.abs(np.concatenate(device.played or [np.zeros(1)])) > 0.05)) / RATE


async def test_kiosk_greets_answers_and_resets_the_conversation_after_idle_time() -> None:
    rig = Rig()
    said: list[int] = []

    def progress() -> bool:
        h = rig.kiosk.health
        if not said and rig.kiosk.session is not None and rig.device.time_s > 2.5:
            rig.say_now()  # after the greeting has been heard
            said.append(1)
        return h.conversations >= 2 and rig.kiosk.session is not None and rig.kiosk.session.now > 1.0

    await rig.run_until(progress)
    h = rig.kiosk.health
    assert h.turns == 1 and h.conversations >= 2 and h.device["opens"] == 1
    assert rig.kiosk.session is None  # stopped cleanly; the new conversation started with an empty memory
    assert _greeting_played(rig.device) > 2 * 1.5  # greeted at start and again after the reset, plus the reply
    assert rig.llm.calls and len(rig.llm.calls) == 1


async def test_a_kiosk_runs_as_its_persona_and_speaks_its_greeting() -> None:
    """With a persona (``personas.default_id``) every conversation has the persona's name, traits, strategy and
    voice, and the greeting spoken is the persona's, in that voice."""
    from attune.agent.persona_model import parse_persona
    from attune.agent.persona_voice import PersonaVoice

    record = parse_persona({"id": "clinic", "name": "Ada", "traits": "You are Ada, calm.", "strategy": "match",
                            "greeting": "Hello, I am Ada. Take a seat.", "voice": {"pitch": -2.0}})
    voices: list[PersonaVoice] = []

    async def persona(backends: SessionBackends) -> Any:
        voices.append(PersonaVoice(backends.tts, record.voice, persona_id=record.id))
        return ChosenPersona(record, voices[-1])

    rig = Rig(persona=persona)
    assert rig.kiosk.greeting_text() == rig.config.kiosk.greeting  # before the engines: the configured one
    await rig.run_until(lambda: rig.kiosk.session is not None and rig.device.time_s > 2.0)
    assert rig.kiosk.greeting_text() == "Hello, I am Ada. Take a seat."
    assert rig.tts[-1].texts[:1] == ["Hello, I am Ada. Take a seat."]
    assert rig.config.kiosk.greeting not in rig.tts[-1].texts
    assert _greeting_played(rig.device) > 0.5


async def test_a_kiosks_conversation_takes_the_personas_settings() -> None:
    from attune.agent.persona_model import parse_persona
    from attune.agent.persona_voice import PersonaVoice

    record = parse_persona({"id": "clinic", "name": "Ada", "traits": "You are Ada, calm.", "strategy": "match"})
    seen: list[Any] = []

    async def persona(backends: SessionBackends) -> Any:
        return ChosenPersona(record, PersonaVoice(backends.tts, record.voice, persona_id=record.id))

    rig = Rig(persona=persona)

    def started() -> bool:
        s = rig.kiosk.session
        if s is not None and not seen:
            seen.append((s.settings.persona.name, s.settings.strategy, s.backends.tts))
        return bool(seen)

    await rig.run_until(started)
    name, strategy, tts = seen[0]
    assert (name, strategy) == ("Ada", "match") and isinstance(tts, PersonaVoice) and tts.persona_id == "clinic"


async def test_kiosk_survives_a_lost_sound_card_and_carries_on_when_it_returns() -> None:
    rig = Rig(greeting="")
    steps: list[str] = []

    def progress() -> bool:
        h = rig.kiosk.health
        if not steps and h.device["state"] == "open" and rig.device.time_s > 0.5:
            rig.device.unplug()
            steps.append("unplugged")
        elif steps == ["unplugged"] and h.device["losses"] == 1 and h.device["state"] in ("lost", "missing"):
            assert not rig.kiosk.health_snapshot()["listening"]
            assert rig.kiosk.health_snapshot()["status"] == "degraded"
            rig.device.plug()
            steps.append("plugged")
        elif steps == ["unplugged", "plugged"] and h.device["state"] == "open" and h.device["opens"] == 2:
            rig.say_now()
            steps.append("spoke")
        return "spoke" in steps and h.turns == 1

    await rig.run_until(progress)
    h = rig.kiosk.health
    assert h.device["losses"] == 1 and h.device["opens"] == 2 and rig.rescans >= 1
    assert h.last_error is not None and h.last_error["code"] == "audio_device"


async def test_kiosk_retries_engines_that_fail_to_load_with_backoff() -> None:
    rig = Rig(load_failures=2, greeting="")
    await rig.run_until(lambda: rig.kiosk.health.engines["state"] == "ready" and rig.kiosk.session is not None)
    snap = rig.kiosk.health_snapshot()
    assert rig.loads == 3 and snap["engines"]["loads"] == 1
    assert snap["last_error"]["code"] == "engines_failed" and "not up yet" in snap["last_error"]["message"]


async def test_kiosk_reloads_engines_after_consecutive_failed_replies() -> None:
    rig = Rig(llm=ScriptedLLM(fail_after=0), greeting="", failed_turns_before_rebuild=2)
    spoken: list[float] = []

    def progress() -> bool:
        s = rig.kiosk.session
        if s is not None and s.idle and (not spoken or rig.device.time_s > spoken[-1] + 2.5) and rig.loads == 1:
            rig.say_now(0.8)
            spoken.append(rig.device.time_s)
        return rig.loads == 2 and rig.kiosk.health.engines["state"] == "ready"

    await rig.run_until(progress)
    snap = rig.kiosk.health_snapshot()
    assert snap["failed_turns"] >= 2 and snap["last_error"]["code"] == "llm_failed"


async def test_health_snapshot_is_json_and_says_what_the_kiosk_is_doing() -> None:
    rig = Rig(greeting="")
    await rig.run_until(lambda: rig.kiosk.session is not None and rig.kiosk.session.now > 0.5)
    snap = rig.kiosk.health_snapshot()
    json.dumps(snap)
    assert snap["status"] == "stopping" and snap["device"]["state"] == "closed"
    log_event("test.event", value=1)  # the structured logger takes fields without a formatter, too


# ---- SIGTERM, in a subprocess ----
KIOSK_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from tests.transports.test_kiosk import Rig
    from attune.commands.run_kiosk import json_logging, run_kiosk

    json_logging("INFO")
    rig = Rig(idle_reset_s=600.0)
    code = asyncio.run(run_kiosk(rig.kiosk, health_port=int(sys.argv[1])))
    rig.device.shutdown()
    sys.exit(code)
""")


def _get_health(port: int) -> tuple[int, dict[str, Any]]:
    import time
    import urllib.error
    import urllib.request

    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            time.sleep(0.1)  # not listening yet
    raise AssertionError("GET /health never answered")


def test_kiosk_answers_health_and_exits_cleanly_on_sigterm() -> None:
    from tests.engines_util import free_port

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KIOSK_SCRIPT, str(port)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        for raw in proc.stderr:  # wait until it listens: the conversation has started
            lines.append(json.loads(raw))
            if lines[-1]["event"] == "conversation.start":
                break
        status, health = _get_health(port)
        assert status == 200 and health["status"] == "ok" and health["listening"] is True
        assert health["device"]["state"] == "open" and health["engines"]["state"] == "ready"
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    lines += [json.loads(raw) for raw in rest.splitlines() if raw.strip()]
    events = [line["event"] for line in lines]
    assert proc.returncode == 0
    assert events[0] == "kiosk.start" and "engines.ready" in events and "device.open" in events
    assert events[-2:] == ["conversation.end", "kiosk.stop"]
    assert [line for line in lines if line["event"] == "conversation.end"][-1]["reason"] == "stop"
    assert not any(line["level"] == "ERROR" for line in lines)


def test_kiosk_command_without_portaudio_is_a_clear_error(monkeypatch, capsys) -> None:
    import run_agent
    from attune.core.errors import BackendUnavailable
    from attune.transports import microphone

    def missing() -> None:
        raise BackendUnavailable("the microphone needs sounddevice and PortAudio: no library",
                                 install_hint=microphone.PORTAUDIO_HINT)

    monkeypatch.setattr(microphone, "import_sounddevice", missing)
    assert run_agent.main(["kiosk"]) == 1
    assert "PortAudio" in capsys.readouterr().err



def test_health_endpoint_answers_503_when_the_kiosk_cannot_listen() -> None:
    from starlette.testclient import TestClient

    from attune.transports.kiosk_health import health_app

    snap = {"status": "degraded", "listening": False}
    with TestClient(health_app(lambda: snap)) as client:
        resp = client.get("/health")
        assert resp.status_code == 503 and resp.json() == snap
        snap["status"] = "ok"
        assert client.get("/health").status_code == 200


async def test_the_greeting_comes_from_the_speech_cache_on_a_second_start(tmp_path: Path) -> None:
    from attune.agent.prosody_dsp import ProsodyApplicator
    from attune.backends.tts.cache import SpeechCache, SpeechStore
    from attune.pipeline.phrases import PhraseVoice

    config = load_config(environ={})

    def backends(tts: ToneTTS) -> SessionBackends:
        cache = SpeechCache(store=SpeechStore(tmp_path, max_bytes=10**8))
        return SessionBackends(asr=FixedASR(), llm=ScriptedLLM(), vad=EnergyVAD(), dsp_factory=ProsodyApplicator,
                               voice=Voice(tts, PhraseVoice(tts, ProsodyApplicator,
                                                            config.pipeline.output_sample_rate, cache)))

    kiosk = Kiosk(config, load_engines=lambda: None, open_audio=lambda: None)  # type: ignore[arg-type,return-value]
    first_tts, second_tts = ToneTTS(), ToneTTS()
    first = await kiosk._render_greeting(backends(first_tts))
    second = await kiosk._render_greeting(backends(second_tts))  # a restarted kiosk, the same directory
    assert first_tts.texts == [config.kiosk.greeting] and second_tts.texts == []
    assert first is not None and second is not None and np.array_equal(first, second) and len(first) > 0
