"""The local microphone: device listing and selection, the echo canceller and its far-end reference (loop-free),
and a live session over a fake duplex sound card whose microphone hears the agent's own loudspeaker through a
reverberant room: no turn from the echo alone, barge-in from the user, emotion only from the user's voice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from attune.backends.vad import SileroVAD
from attune.config import load_config
from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE, load_wav, prepare
from attune.core.errors import AudioDeviceError
from attune.core.frames import AudioChunk
from attune.pipeline.session import Session, SessionBackends
from attune.pipeline.session_backends import Voice
from attune.transports.echo import PassThrough, PlaybackReference, ReferenceTrack, create_echo_canceller
from attune.transports.microphone import LocalAudio, OutputBuffer, list_devices, resolve_device, run_microphone
from attune_lab.echo_path import EchoPath, measure, power_db, room_rir, speech_similarity, synthetic_rir
from tests.engines_util import librivox_clips
from tests.fake_audio import FakeDuplexDevice, kiosk_room
from tests.fakes import FakeEmotion, FixedASR, ScriptedLLM, calm_planner

LAYER = "stage"  # STYLE.md layer 2: one stage, frames in and out


def _speech(index: int) -> np.ndarray:
    path, _ = librivox_clips()[index]
    samples, rate = load_wav(path)
    return prepare(samples, rate, SAMPLE_RATE)[0]


# ---- loop-free cores ----
def test_playback_reference_pairs_frame_for_frame_fills_a_shortfall_and_bounds_the_lead() -> None:
    ref = PlaybackReference(max_lead_s=0.05)  # 800 samples
    ref.push(np.arange(300, dtype=np.float32))
    got = ref.take(320)
    assert np.array_equal(got[:300], np.arange(300)) and np.all(got[300:] == 0) and ref.underruns == 20
    ref.push(np.ones(2000, np.float32))
    got = ref.take(320)  # 2000 queued: 880 beyond the lead are dropped first, the order is kept
    assert ref.dropped == 2000 - 320 - 800 and ref.level == 800 and np.all(got == 1)


def test_output_buffer_hands_back_the_16k_reference_of_exactly_what_it_played() -> None:
    buf = OutputBuffer(24000)
    t = np.arange(24000) / 24000
    buf.write((0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    refs, played = [], []
    for _ in range(60):  # 1.2 s of 20 ms device blocks: 1 s of audio, then the buffer runs dry
        out = np.zeros(480, np.float32)
        refs.append(buf.read_into(out))
        played.append(out)
    ref = np.concatenate(refs)
    assert len(ref) == 60 * 320  # the reference keeps pace with the device, sample for sample
    expected = (0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
    assert np.max(np.abs(ref[100:15900] - expected[100:15900])) < 0.01 and np.all(ref[16000:] == 0)
    buf.write(np.ones(4800, np.float32))
    buf.clear()  # a barge-in: nothing more is played, the reference says so
    out = np.zeros(480, np.float32)
    assert np.all(buf.read_into(out) == 0) and np.all(out == 0)


def test_reference_track_counts_output_samples_exactly_at_a_non_integer_ratio() -> None:
    track = ReferenceTrack(22050)
    assert sum(track.played(441) for _ in range(1000)) == 1000 * 441 * 16000 // 22050


def test_echo_path_block_by_block_equals_the_whole_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32)
    whole = EchoPath(synthetic_rir(0.3), delay_s=0.02, gain=0.5).run(x)
    path = EchoPath(synthetic_rir(0.3), delay_s=0.02, gain=0.5)
    blocks = np.concatenate([path.feed(x[i:i + 320]) for i in range(0, 16000, 320)])
    assert np.allclose(whole, blocks, atol=1e-5) and np.all(whole[:320] == 0)  # 20 ms late


@pytest.mark.parametrize("room", ["pyroomacoustics", "synthetic"])
def test_webrtc_canceller_removes_a_reverberant_echo_and_keeps_the_user(room: str) -> None:
    far = np.concatenate([_speech(0), _speech(2)])[: 8 * SAMPLE_RATE]
    user = _speech(4)
    rir = room_rir(0.4)[0] if room == "pyroomacoustics" else synthetic_rir(0.4)
    echo = EchoPath(rir, delay_s=0.03, gain=1.0).run(far)  # the echo as loud as the user (a kiosk)
    at = 5 * SAMPLE_RATE
    aec = measure(create_echo_canceller("webrtc"), far, echo, user, 5.0)
    off = measure(PassThrough(), far, echo, user, 5.0)
    assert aec.erle_db >= 20.0 and abs(off.erle_db) < 0.5
    # The user's speech survives the double talk (the agent still speaking over it): the output is the user's
    # voice, at the user's level, where without cancellation it is half echo.
    span = slice(at, at + min(len(user), len(far) - at))
    kept, lag = speech_similarity(aec.output[span], user)
    raw, _ = speech_similarity(off.output[span], user)
    assert kept >= 0.8 and kept > raw and lag <= 160
    assert abs(power_db(aec.output[span]) - power_db(user[: span.stop - span.start])) < 4.0


# ---- devices ----
def test_devices_are_listed_and_chosen_by_index_or_name() -> None:
    dev = FakeDuplexDevice()
    try:
        (d,) = list_devices(dev.module)
        assert d.name == "Fake Duplex USB" and d.inputs == 1 and "Fake Duplex USB" in d.describe()
        assert resolve_device("duplex", "input", dev.module) == 0
        assert resolve_device("3", "output", dev.module) == 3 and resolve_device("", "input", dev.module) is None
        with pytest.raises(AudioDeviceError, match="no input device matches 'studio'.*Fake Duplex USB"):
            resolve_device("studio", "input", dev.module)
    finally:
        dev.shutdown()


def test_list_devices_command_prints_the_devices(monkeypatch, capsys) -> None:
    import run_agent
    from attune.transports import microphone

    dev = FakeDuplexDevice()
    monkeypatch.setattr(microphone, "import_sounddevice", lambda: dev.module)
    try:
        assert run_agent.main(["mic", "--list-devices"]) == 0
    finally:
        dev.shutdown()
    assert "Fake Duplex USB" in capsys.readouterr().out


def test_bench_echo_without_clips_is_a_clear_error(tmp_path, capsys) -> None:
    import run_agent

    assert run_agent.main(["bench-echo", "--data", str(tmp_path), "--no-asr"]) == 1
    assert "no LibriVox clips" in capsys.readouterr().err


# ---- a live session over a fake duplex device ----
class RecordedTTS:
    """Speaks every sentence with a real recording (16 kHz, 100 ms chunks): speech Silero VAD hears as speech."""

    name = "recorded"
    sample_rate = SAMPLE_RATE

    def __init__(self, speech: np.ndarray) -> None:
        self.speech = speech

    async def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        for i in range(0, len(self.speech), 1600):
            yield AudioChunk(self.speech[i:i + 1600], SAMPLE_RATE)


def _session(agent_voice: np.ndarray, emotion: FakeEmotion) -> Session:
    config = load_config(environ={}, overrides={"pipeline": {"output_sample_rate": SAMPLE_RATE}})
    backends = SessionBackends(asr=FixedASR("tell me a story"), llm=ScriptedLLM(["Once upon a time there was."]),
                               voice=Voice(RecordedTTS(agent_voice)), vad=SileroVAD(), emotion=emotion,
                               aggregate=lambda rs: rs[-1] if rs else None, planner=calm_planner)
    return Session(config, backends)


async def _converse(echo: str, *, barge_in_after_s: float | None = None, barge_in_gain: float = 2.0) -> dict[str, Any]:
    """The user asks (1 s in), the agent answers with 7 s of speech over the loudspeaker (its echo at the
    microphone 6 dB below the user's voice); optionally the user speaks again ``barge_in_after_s`` into the
    reply, ``barge_in_gain`` louder (2: 12 dB above the echo; at 6 dB AEC3's double-talk suppression leaves too
    little for Silero, see docs/BENCHMARKS.md). Runs until the stream is 4 s past the reply's end."""
    agent_voice, question, interruption = _speech(0), _speech(1), barge_in_gain * _speech(4)
    emotion = FakeEmotion()
    session = _session(agent_voice, emotion)
    device = FakeDuplexDevice(echo=kiosk_room(), pace=lambda: session.now)
    device.say(question, 1.0)
    events: list[Any] = []
    stop = asyncio.Event()
    reply_start: list[float] = []

    def on_event(event: Any) -> None:
        events.append(event)
        if event.type == ev.AUDIO_DELTA and not reply_start:
            reply_start.append(event.audio.timestamp_s)
            if barge_in_after_s is not None:
                device.say(interruption, device.time_s + barge_in_after_s)
    async def until_done() -> None:
        while not (reply_start and session.now > reply_start[0] + len(agent_voice) / SAMPLE_RATE + 4.0):
            if session.now > 40.0:
                raise AssertionError(f"no reply within 40 s of stream time: {_types(events)}")
            await asyncio.sleep(0.05)
        stop.set()

    audio = LocalAudio(device.module, output_rate=SAMPLE_RATE, canceller=create_echo_canceller(echo),
                       echo_tail_s=0.3)
    try:
        async with session:
            with audio:
                await asyncio.wait_for(asyncio.gather(run_microphone(session, audio, on_event=on_event, stop=stop),
                                                      until_done()), 300)
    finally:
        device.shutdown()
    return {"events": events, "turns": session.turns, "reply_start": reply_start[0], "emotion": emotion,
            "dropped": (audio.frames_dropped, audio.reference.dropped, audio.reference.underruns),
            "question_span": (1.0, 1.0 + len(question) / SAMPLE_RATE),
            "interruption": len(interruption) / SAMPLE_RATE}


def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events if e.type != ev.AUDIO_DELTA]


async def test_the_agent_does_not_answer_its_own_voice_over_loudspeakers() -> None:
    run = await _converse("webrtc")
    types = _types(run["events"])
    assert types.count(ev.SPEECH_STARTED) == 1 and ev.RESPONSE_CANCELLED not in types
    assert [t.info["status"] for t in run["turns"]] == ["completed"]
    # Emotion was measured on the user's question only, never on the 7 s of the agent's echo after it.
    q0, q1 = run["question_span"]
    for m in [e for e in run["events"] if e.type == ev.EMOTION_MEASUREMENT]:
        assert q0 - 0.35 <= m.data["audio_start_ms"] / 1000 and m.data["audio_end_ms"] / 1000 <= q1 + 0.5


async def test_without_echo_cancellation_the_echo_interrupts_the_agent() -> None:
    """The control: the same room with the canceller off. The agent hears itself and cuts itself off (the test
    above would fail without the canceller)."""
    run = await _converse("off")
    types = _types(run["events"])
    assert ev.RESPONSE_CANCELLED in types or types.count(ev.SPEECH_STARTED) > 1


async def test_the_user_interrupts_the_agent_over_loudspeakers() -> None:
    run = await _converse("webrtc", barge_in_after_s=2.0)
    cancelled = [e for e in run["events"] if e.type == ev.RESPONSE_CANCELLED]
    assert len(cancelled) == 1 and cancelled[0].data["reason"] == "barge_in", (_types(run["events"]), run["dropped"])
    started = [e for e in run["events"] if e.type == ev.SPEECH_STARTED]
    assert len(started) == 2 and started[1].data["barge_in"] is True
    cut_at = started[1].data["audio_start_ms"] / 1000
    # The clip's first word is 0.26 s in; the cut follows it by barge_in_min_ms (300 ms) plus the VAD's decisions.
    assert run["reply_start"] + 2.26 + 0.3 <= cut_at <= run["reply_start"] + 2.26 + 1.0
    # The interruption became the next turn and was answered.
    assert len(run["turns"]) == 2 and run["turns"][1].info["status"] in ("completed", "cancelled")
    # Its emotion windows start after the barge-in (+ the echo tail), never on the agent's voice before it.
    later = [e for e in run["events"] if e.type == ev.EMOTION_MEASUREMENT
             and e.data["audio_start_ms"] / 1000 > run["question_span"][1] + 0.5]
    assert later and all(m.data["audio_start_ms"] / 1000 >= cut_at - 0.01 for m in later)
