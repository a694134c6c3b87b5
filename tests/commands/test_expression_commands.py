"""The expression subcommands end to end through run_agent.main (real Piper and espeak-ng through the TTS router,
real DSP)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attune.backends.emotion.features import extract_markers
from attune.core.audio import load_wav
from run_agent import main
from tests.engines_util import installed_model, piper_seed

LAYER = "real"  # STYLE.md layer 4: real models on real audio


@pytest.fixture(autouse=True)
def _piper() -> None:
    installed_model("piper-joe")
    import onnxruntime

    onnxruntime.set_seed(piper_seed())  # Piper's VITS samples noise: the same renders on every run


def test_speak_writes_speech_with_the_emotions_prosody(tmp_path: Path, capsys):
    """Piper (the default) gives the rate through length_scale, the DSP the pitch: both must show."""
    text = "I can't believe it, this is the best day of my whole life."
    paths = {e: tmp_path / f"{e}.wav" for e in ("neutral", "excited", "sad")}
    for emotion, path in paths.items():
        assert main(["speak", "--text", text, "--emotion", emotion, "--output", str(path)]) == 0
    assert "tts piper; native: speech_rate" in capsys.readouterr().out
    audio = {e: load_wav(p) for e, p in paths.items()}
    length = {e: len(a) / sr for e, (a, sr) in audio.items()}
    pitch = {e: extract_markers(a, sr).pitch_mean_hz for e, (a, sr) in audio.items()}
    assert length["excited"] < length["neutral"] < length["sad"]
    assert pitch["sad"] < pitch["neutral"] < pitch["excited"]


def test_speak_with_espeak_through_the_router(tmp_path: Path, capsys):
    """espeak-ng does rate, pitch and volume natively; happy must still come out higher than sad."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    text = "I can't believe it, this is the best day of my whole life."
    pitch = {}
    for emotion in ("happy", "sad"):
        out = tmp_path / f"{emotion}.wav"
        assert main(["speak", "--text", text, "--emotion", emotion, "--tts", "espeak", "--output", str(out)]) == 0
        audio, sr = load_wav(out)
        pitch[emotion] = extract_markers(audio, sr).pitch_mean_hz
    assert "tts espeak; native: speech_rate, pitch_shift_semitones, volume_db" in capsys.readouterr().out
    assert pitch["happy"] > 1.15 * pitch["sad"]


def test_speak_rejects_unknown_emotion_and_empty_text(tmp_path: Path, capsys):
    assert main(["speak", "--text", "hi", "--emotion", "grumpy", "--output", str(tmp_path / "x.wav")]) == 1
    assert "unknown emotion 'grumpy'" in capsys.readouterr().err
    assert main(["speak", "--text", "  ", "--output", str(tmp_path / "x.wav")]) == 1
    assert main(["speak", "--text", "hi", "--tts", "nope", "--output", str(tmp_path / "x.wav")]) == 1
    assert not (tmp_path / "x.wav").exists()


def test_bench_prosody_prints_rtf(capsys):
    assert main(["bench-prosody", "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["per_emotion"]) == 26 and 0 < out["summary"]["rtf_max"] < 1.0


def test_build_references_command(tmp_path: Path):
    assert main(["build-references", "--output", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tts"] == "piper" and len(manifest["references"]) == 8
    assert {e["tts"] for e in manifest["references"]} == {"piper"}


def test_emotion_axis_command(emodb_dir: Path, tmp_path: Path):
    out = tmp_path / "axis.json"
    assert main(["emotion-axis", "--data", str(emodb_dir), "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["axis"]["pitch_semitones"] > 0 and len(data["per_speaker"]) >= 3
    assert np.isfinite(list(data["axis"].values())[:5]).all()
