"""The file transport, the latency measure and the commands' clear errors, with fake backends."""

from __future__ import annotations

import numpy as np
import pytest

import run_agent
from attune.core import events as ev
from attune.core.audio import FRAME_S
from attune.transports.file import stream_file
from attune.transports.microphone import OutputBuffer
from attune_lab.latency import frame_levels, voice_to_voice
from tests.fakes import Harness, ScriptedLLM

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

RATE = 16000


def _utterance(seconds: float, start: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


async def test_file_transport_two_utterances_are_two_turns_on_one_timeline() -> None:
    h = Harness(llm=ScriptedLLM(["Sure, I am here for you."]))
    audio = np.concatenate([np.zeros(8000, np.float32), _utterance(1.0), np.zeros(3 * RATE, np.float32),
                            _utterance(1.0)])
    async with h.session() as s:
        run = await stream_file(s, audio, speed=0.0)
    assert len(s.turns) == 2 and [t.info["status"] for t in s.turns] == ["completed", "completed"]
    assert len([e for e in run.events if e.type == ev.RESPONSE_DONE]) == 2
    # The reply sits after each utterance on the input's timeline: first after 1.5 s, second after 5.5 s.
    first = voice_to_voice(audio, RATE, run.output, run.output_rate)
    assert first is not None and first[0] == pytest.approx(1.5, abs=0.05) and first[2] > 0
    second = voice_to_voice(audio, RATE, run.output, run.output_rate, after_s=5.0)
    assert second is not None and second[0] == pytest.approx(5.5, abs=0.05)
    reply_s = float(np.sum(frame_levels(run.output, run.output_rate) > -50)) * FRAME_S
    assert reply_s == pytest.approx(2 * 6 * 0.25, abs=0.1)  # two replies of six words of tone


def test_voice_to_voice_measure() -> None:
    user = np.concatenate([_utterance(1.0), np.zeros(RATE, np.float32)])
    reply = np.concatenate([np.zeros(int(1.42 * 24000), np.float32), 0.1 * np.ones(24000, np.float32)])
    speech_end, reply_start, ms = voice_to_voice(user, RATE, reply, 24000)
    assert speech_end == pytest.approx(1.0) and reply_start == pytest.approx(1.42) and ms == pytest.approx(420)
    assert voice_to_voice(user, RATE, np.zeros(24000, np.float32), 24000) is None


def test_output_buffer_drains_and_clears() -> None:
    b = OutputBuffer()
    b.write(np.ones(300, np.float32))
    out = np.full(200, 9.0, np.float32)
    b.read_into(out)
    assert np.all(out == 1.0)
    b.read_into(out)
    assert np.all(out[:100] == 1.0) and np.all(out[100:] == 0.0)
    b.write(np.ones(300, np.float32))
    b.clear()
    b.read_into(out)
    assert np.all(out == 0.0)


def test_bench_latency_on_missing_folder_is_a_clear_error(tmp_path, capsys) -> None:
    assert run_agent.main(["bench-latency", "--data", str(tmp_path / "nope")]) == 1
    assert "no WAV files" in capsys.readouterr().err


def test_file_command_on_a_missing_input_is_a_clear_error(tmp_path, capsys) -> None:
    code = run_agent.main(["file", "--input", str(tmp_path / "none.wav"), "--output", str(tmp_path / "o.wav")])
    assert code == 1 and "audio file not found" in capsys.readouterr().err


def test_mic_without_portaudio_or_device_is_a_clear_error(capsys) -> None:
    from attune.core.errors import BackendUnavailable
    from attune.transports.microphone import check_devices

    try:
        check_devices()
    except BackendUnavailable:
        pass
    else:
        pytest.skip("this machine has audio devices")
    assert run_agent.main(["mic"]) == 1
    err = capsys.readouterr().err
    assert "PortAudio" in err or "audio device" in err
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        assert "install with" in err  # no PortAudio: how to install it
    else:
        assert "install with" not in err and "file --input" in err  # PortAudio but no device: what to do instead


async def test_microphone_transport_with_a_fake_device() -> None:
    import asyncio

    from attune.transports.echo import PassThrough
    from attune.transports.microphone import LocalAudio, run_microphone
    from tests.fake_audio import FakeDuplexDevice

    h = Harness()
    stop = asyncio.Event()
    seen: list[str] = []

    def on_event(event) -> None:
        seen.append(event.type)
        if event.type == ev.RESPONSE_DONE:
            stop.set()

    async with h.session() as s:
        device = FakeDuplexDevice(pace=lambda: s.now)  # headphones: no echo path
        device.say(_utterance(1.0), 0.2)
        try:
            with LocalAudio(device.module, output_rate=16000, canceller=PassThrough()) as audio:
                await asyncio.wait_for(run_microphone(s, audio, on_event=on_event, stop=stop), timeout=60)
        finally:
            device.shutdown()
    assert ev.SPEECH_STARTED in seen and ev.TRANSCRIPT in seen and ev.RESPONSE_DONE in seen
    played = np.concatenate(device.played)
    assert np.sum(np.abs(played) > 0.05) > 0.5 * 16000  # the reply reached the speaker


async def test_mic_demo_falls_back_to_a_two_turn_conversation_when_there_is_no_device(monkeypatch, tmp_path) -> None:
    """`make run` runs `mic --demo`: with no device it speaks the demo turns into one session, one after the
    other, and writes both sides on one timeline."""
    import argparse

    from attune.commands import conversation
    from attune.core.audio import load_wav
    from attune.core.errors import BackendUnavailable
    from attune.pipeline import stack
    from attune.transports import microphone as local_audio

    h = Harness(llm=ScriptedLLM(["I am here with you."]))
    template = h.session()

    def no_device(*_: object) -> None:
        raise BackendUnavailable("no usable audio device: none", install_hint="apt-get install libportaudio2")

    async def no_warm_up(*_: object) -> dict[str, float]:
        return {}

    monkeypatch.setattr(local_audio, "check_devices", no_device)
    monkeypatch.setattr(conversation, "demo_utterances", lambda config, router=None: [_utterance(1.0), _utterance(1.5)])
    monkeypatch.setattr(stack, "build_backends", lambda config: template.backends)
    monkeypatch.setattr(stack, "warm_up", no_warm_up)
    args = argparse.Namespace(input_device=None, output_device=None, demo=True, demo_out=str(tmp_path))
    assert await conversation._mic(args, template.config) == 0
    user, user_rate = load_wav(tmp_path / "demo_input.wav")
    reply, reply_rate = load_wav(tmp_path / "demo_reply.wav")
    first = voice_to_voice(user, user_rate, reply, reply_rate)
    assert first is not None and first[0] == pytest.approx(1.0, abs=0.05)
    # The second utterance starts only after the first reply has ended, as a person waiting for an answer would.
    active = frame_levels(reply, reply_rate) > -50
    reply_start = int(np.argmax(active))
    reply_end = reply_start + int(np.argmin(active[reply_start:]))  # first silent frame after the reply began
    speaking = frame_levels(user, user_rate) > -40
    second_start = 60 + int(np.argmax(speaking[60:]))  # first speech frame after the first utterance (1.2 s on)
    assert reply_end > reply_start and second_start >= reply_end
    second = voice_to_voice(user, user_rate, reply, reply_rate, after_s=second_start * FRAME_S)
    assert second is not None and second[2] > 0
    with pytest.raises(BackendUnavailable):
        await conversation._mic(argparse.Namespace(input_device=None, output_device=None, demo=False,
                                                   demo_out=str(tmp_path)), template.config)


def test_one_flag_vocabulary_and_old_spellings_with_a_deprecation_line(capsys) -> None:
    import argparse

    from attune.commands.cli import build_parser
    from attune.commands.flags import input_of

    parser = build_parser()
    args = parser.parse_args(["speak", "--text", "Hi.", "--out", "o.wav"])
    assert args.output == "o.wav" and "--out is deprecated" in capsys.readouterr().err
    args = parser.parse_args(["speak", "--text", "Hi.", "--output", "o.wav"])
    assert args.output == "o.wav" and capsys.readouterr().err == ""
    args = parser.parse_args(["transcribe", "--model", "base", "x.wav"])
    assert args.asr_model == "base" and input_of(args) == "x.wav"
    err = capsys.readouterr().err
    assert "--model is deprecated" in err and "use --asr-model" in err and "positional FILE" in err
    args = parser.parse_args(["analyze", "--input", "x.wav", "--config", "my.yaml"])  # --config after the command
    assert input_of(args) == "x.wav" and args.config == "my.yaml"
    assert parser.parse_args(["--config", "a.yaml", "serve"]).config == "a.yaml"  # and before it, as ever
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    silent = [(name, a.option_strings) for name, p in commands.items() for a in p._actions
              if not a.help and a.dest != "file"]  # the positional FILE is hidden on purpose (deprecated)
    assert not silent  # every flag of every command says what it does
