"""What a new user hit (issue 13): broken model files, unwritable outputs, non-speech, markdown read aloud and
the smaller faults of bad input. Each test reproduces one report against the real code path."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import run_agent
from attune import models
from attune.config import load_config
from attune.core.audio import load_wav
from attune.core.errors import AudioInputError, BackendUnavailable, ConfigError
from attune.core.frames import AudioChunk, SpeechAudio
from tests.engines_util import installed_model, librivox_clips

LAYER = "real"  # STYLE.md layer 4: real models on real audio

RATE = 16000


def _corrupt_piper(tmp_path: Path) -> Path:
    """A copy of the embedded Piper voice whose first 200 kB are overwritten (its JSON config intact)."""
    src = installed_model("piper-joe")
    dst = tmp_path / "voice.onnx"
    shutil.copyfile(src, dst)
    shutil.copyfile(f"{src}.json", f"{dst}.json")
    with dst.open("r+b") as fh:
        fh.write(os.urandom(200_000))
    return dst


# -- 1. a corrupt Piper voice is a provider failure ------------------------------------------------------------

def test_corrupt_piper_voice_is_backend_unavailable_with_the_repair_command(tmp_path: Path) -> None:
    from attune.backends.tts.piper_backend import PiperTTS

    with pytest.raises(BackendUnavailable) as info:
        PiperTTS(_corrupt_piper(tmp_path))
    assert "attune.models install piper-joe" in str(info.value) and "voice.onnx" in str(info.value)


def test_router_falls_back_to_espeak_and_health_names_the_broken_voice(tmp_path: Path, caplog: Any) -> None:
    import asyncio

    from attune.backends.tts.tts_factory import create_tts

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    config = load_config(overrides={"tts": {"piper_model": str(_corrupt_piper(tmp_path))}})
    with caplog.at_level("WARNING"):
        router = create_tts(config)
    assert router.chain() == ["espeak"]
    assert any("piper" in r.getMessage() and "install piper-joe" in r.getMessage() for r in caplog.records)
    health = asyncio.run(router.health())
    assert health["piper"]["available"] is False and "voice.onnx" in health["piper"]["error"]


def test_speak_with_a_corrupt_voice_speaks_with_espeak(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    monkeypatch.setenv("ATTUNE_TTS__PIPER_MODEL", str(_corrupt_piper(tmp_path)))
    out = tmp_path / "o.wav"
    assert run_agent.main(["speak", "--text", "Hello there.", "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert "tts espeak" in printed.out and "install piper-joe" in printed.err
    assert sf.info(str(out)).duration > 0.3


# -- 2. models verify hashes ---------------------------------------------------------------------------------

@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: Any) -> tuple[Path, Path]:
    """A one-file model spec in a temporary cache, installed and stamped as setup would leave it."""
    import hashlib

    data = os.urandom(300_000)
    spec = models.ModelSpec("tiny", "tiny", ("none==0",),
                            (models.ModelFile("w.bin", ("w.bin",), hashlib.sha256(data).hexdigest(), len(data)),))
    monkeypatch.setitem(models.MODELS, "tiny", spec)
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "w.bin").write_bytes(data)
    (folder / models.STAMP_NAME).write_text(json.dumps(
        {"w.bin": models._stamp_entry(folder / "w.bin", spec.files[0].sha256)}))
    return tmp_path, folder / "w.bin"


def test_verify_hashes_a_file_whose_size_and_mtime_are_unchanged(tiny_model: tuple[Path, Path], capsys: Any) -> None:
    cache, path = tiny_model
    assert models.main(["verify", "tiny", "--cache-dir", str(cache)]) == 0
    st = path.stat()
    with path.open("r+b") as fh:
        fh.seek(100_000)
        fh.write(b"\0" * 50_000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert models.is_verified(cache, "tiny")  # the fast stamp check (setup's) is fooled ...
    capsys.readouterr()
    assert models.main(["verify", "tiny", "--cache-dir", str(cache)]) == 1  # ... verify is not
    out = capsys.readouterr().out
    assert "w.bin" in out and "SHA-256" in out and "all verified" not in out


def test_verify_says_missing_and_wrong_size(tiny_model: tuple[Path, Path], capsys: Any) -> None:
    cache, path = tiny_model
    path.write_bytes(b"short")
    assert models.main(["verify", "tiny", "--cache-dir", str(cache)]) == 1
    assert "size 5" in capsys.readouterr().out
    path.unlink()
    assert models.main(["verify", "tiny", "--cache-dir", str(cache)]) == 1
    assert "missing" in capsys.readouterr().out


def test_install_rehashes_instead_of_trusting_the_stamp(tiny_model: tuple[Path, Path], monkeypatch: Any) -> None:
    cache, path = tiny_model
    st = path.stat()
    with path.open("r+b") as fh:
        fh.write(b"\0" * 1000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fetched: list[tuple[str, ...]] = []

    def no_wheels(requirements: tuple[str, ...], download_dir: Path, *_log: object) -> dict[str, Path]:
        fetched.append(requirements)
        raise BackendUnavailable("offline in this test")

    monkeypatch.setattr(models, "fetch_wheels", no_wheels)
    models.install("tiny", cache, trust_stamp=True)  # setup's fast path: the stamp matches, nothing to do
    assert not fetched
    with pytest.raises(BackendUnavailable):
        models.install("tiny", cache)  # a user's install: the corrupt file is found and re-assembled
    assert fetched == [("none==0",)]


# -- 3. an unwritable output path is found before the work ------------------------------------------------------

def _no_engines(monkeypatch: Any) -> None:
    from attune.agent import speech_source
    from attune.pipeline import stack

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the engines were built before the output path was checked")

    monkeypatch.setattr(stack, "build_backends", refuse)
    monkeypatch.setattr(speech_source, "render_speech", refuse)
    monkeypatch.setattr(speech_source, "speech_router", refuse)


@pytest.mark.parametrize("kind", ["missing-folder", "directory"])
def test_file_and_speak_check_the_output_first(tmp_path: Path, monkeypatch: Any, capsys: Any, kind: str) -> None:
    _no_engines(monkeypatch)
    target = tmp_path / "no" / "such" / "o.wav" if kind == "missing-folder" else tmp_path
    wav = tmp_path / "in.wav"
    sf.write(str(wav), np.zeros(RATE, np.float32), RATE)
    for argv in (["file", "--input", str(wav), "--output", str(target)],
                 ["speak", "--text", "Hello.", "--output", str(target)]):
        assert run_agent.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(target) in err
        assert ("does not exist" in err) if kind == "missing-folder" else ("is a directory" in err)


def test_writable_output_accepts_a_new_file_and_refuses_a_read_only_folder(tmp_path: Path) -> None:
    from attune.core.errors import OutputPathError
    from attune.core.paths import writable_output

    assert writable_output(tmp_path / "new.wav") == tmp_path / "new.wav"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(OutputPathError, match="cannot write"):
            writable_output(locked / "o.wav")
    finally:
        locked.chmod(0o700)


# -- 4. speak normalises text like the live pipeline ---------------------------------------------------------

class _RecordingRouter:
    """Stands in for the TTS router: records the text it is asked to speak."""

    sample_rate = 22050
    last_provider = "piper"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize_speech(self, text: str, prosody: Any = None, **_: Any) -> Any:
        self.texts.append(text)
        yield SpeechAudio(AudioChunk(np.zeros(2205, np.float32), self.sample_rate), self.last_provider, ())


def test_render_speech_speaks_normalised_text() -> None:
    from attune.agent.speech_source import render_speech

    router = _RecordingRouter()
    render_speech("**Great** news 🎉 see https://example.com/x", router=router, apply_dsp=False)  # type: ignore[arg-type]
    assert router.texts == ["Great news see example dot com"]


def test_render_speech_refuses_text_with_nothing_speakable() -> None:
    from attune.agent.speech_source import render_speech
    from attune.core.errors import TTSError

    with pytest.raises(TTSError, match="nothing speakable"):
        render_speech("🎉 **", router=_RecordingRouter(), apply_dsp=False)  # type: ignore[arg-type]


# -- 5. non-speech gets no confident answer ------------------------------------------------------------------

def test_whisper_drops_segments_it_flags_as_no_speech() -> None:
    from attune.backends.asr.faster_whisper_backend import FasterWhisperASR

    asr = FasterWhisperASR(installed_model("whisper-tiny.en"), encoder_window_s=6.0)
    result = asr.transcribe(AudioChunk(np.zeros(60 * RATE, np.float32), RATE))
    assert result.text == "" and result.segments == ()
    assert result.no_speech_prob >= 0.6  # 0.950 here and with CT2_FORCE_CPU_ISA=AVX2


def test_speech_segments_keeps_speech_and_drops_flagged_segments() -> None:
    from attune.backends.asr.asr_common import speech_segments

    seg = types.SimpleNamespace
    raw = [seg(text=" you", no_speech_prob=0.95), seg(text=" hello there", no_speech_prob=0.02)]
    assert [s.text for s in speech_segments(raw, 0.6)] == [" hello there"]


def test_white_noise_is_no_speech_not_sadness() -> None:
    from attune.backends.emotion.detector import VoiceEmotionDetector

    noise = (0.1 * np.random.default_rng(0).standard_normal(10 * RATE)).astype(np.float32)
    result = VoiceEmotionDetector().analyze(noise, RATE)
    assert "no speech found" in result.quality.issues
    assert result.confidence < 0.05 and not result.reliable
    assert "no speech found" in result.to_context_string()


def test_voiced_speech_is_still_read() -> None:
    """The no-speech gate must not silence a person: real read speech (LibriVox) keeps a real reading. (A
    synthetic harmonic tone is no test of this any more: the detector rightly gives non-human voices ~0.)"""
    from attune.backends.emotion.detector import VoiceEmotionDetector

    wav, _ = librivox_clips()[0]
    result = VoiceEmotionDetector().analyze(wav)
    # confidence 0.61 here and with numpy's and OpenBLAS's AVX-512 paths turned off: a wide margin over 0.1
    assert "no speech found" not in result.quality.issues and result.confidence > 0.1


# -- 6. smaller ones -------------------------------------------------------------------------------------------

def test_a_directory_as_input_says_so(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(AudioInputError, match="is a directory"):
        load_wav(tmp_path)
    assert run_agent.main(["analyze", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_non_finite_fraction_is_reported_as_it_arrived(tmp_path: Path) -> None:
    from attune.backends.emotion.detector import VoiceEmotionDetector

    t = np.arange(2 * RATE) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    audio[::10] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), audio, RATE, subtype="FLOAT")
    result = VoiceEmotionDetector().analyze(path)
    assert result.quality.non_finite_fraction == pytest.approx(0.1, abs=0.001)
    assert "non-finite samples replaced" in result.quality.issues


@pytest.mark.parametrize("value", ["5", "-0.1", "nan", "inf", "loud"])
def test_speak_intensity_outside_0_to_1_is_refused(value: str, tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        run_agent.main(["speak", "--text", "Hi.", "--intensity", value, "--output", str(tmp_path / "o.wav")])
    assert info.value.code == 2 and "--intensity" in capsys.readouterr().err


def test_an_environment_variable_naming_a_whole_section_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ATTUNE_LLM") as info:
        load_config(environ={"ATTUNE_LLM": "5"})
    assert "ATTUNE_LLM__" in str(info.value)
    load_config(environ={"ATTUNE_MODELS": "piper-joe", "ATTUNE_EMODB_DIR": "/x"})  # setup's and the tests' own


async def test_file_with_no_turn_writes_silence_as_long_as_the_input() -> None:
    from attune.transports.file import stream_file
    from tests.fakes import Harness

    h = Harness()
    silence = np.zeros(3 * RATE, np.float32)
    async with h.session() as session:
        run = await stream_file(session, silence, speed=0.0, tail_max_s=0.5)
    assert not session.turns
    assert len(run.output) >= 3 * run.output_rate and not run.output.any()


def test_no_audio_device_says_why_instead_of_install_portaudio(monkeypatch: Any) -> None:
    from attune.transports import microphone

    class NoDevices:
        @staticmethod
        def query_devices(device: Any = None, kind: str | None = None) -> Any:
            if kind is None:
                return []
            raise RuntimeError("Error querying device -1")

    monkeypatch.setattr(microphone, "import_sounddevice", lambda: NoDevices)
    with pytest.raises(BackendUnavailable) as info:
        microphone.check_devices()
    message = str(info.value)
    assert "no audio device" in message and "libportaudio2" not in message and "file --input" in message


def test_missing_portaudio_still_gives_the_install_command(monkeypatch: Any) -> None:
    from attune.transports import microphone

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as without the package
    with pytest.raises(BackendUnavailable, match="libportaudio2"):
        microphone.check_devices()


def test_demo_utterances_speak_through_a_given_router(monkeypatch: Any) -> None:
    """The demo's user side can use voices already loaded instead of a second copy of each model."""
    from attune.agent import speech_source
    from attune.commands import conversation

    seen: list[Any] = []

    def render(text: str, prosody: Any = None, **kw: Any) -> Any:
        seen.append(kw.get("router"))
        return speech_source.RenderedSpeech(np.zeros(RATE, np.float32), RATE, "piper", ())

    monkeypatch.setattr(speech_source, "render_speech", render)
    router = object()
    conversation.demo_utterances(load_config(), router)
    assert seen and all(r is router for r in seen)


# -- a corrupt persona database stops `serve` with one line and keeps the file ---------------------------------

def test_serve_with_a_corrupt_persona_database_says_so_and_keeps_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = os.urandom(4096)
    (tmp_path / "personas.sqlite3").write_bytes(garbage)
    monkeypatch.setenv("ATTUNE_PERSONAS__DATA_DIR", str(tmp_path))
    code = run_agent.main(["serve", "--port", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(tmp_path / "personas.sqlite3") in err
    assert (tmp_path / "personas.sqlite3").read_bytes() == garbage


def test_serve_with_an_unknown_default_persona_names_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``personas.default_id`` naming no stored persona stops ``serve`` before the engines load, in one line."""
    monkeypatch.setenv("ATTUNE_PERSONAS__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ATTUNE_PERSONAS__DEFAULT_ID", "ghost")
    code = run_agent.main(["serve", "--port", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "personas.default_id" in err and "'ghost'" in err and "default" in err
