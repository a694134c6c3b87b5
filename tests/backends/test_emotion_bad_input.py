"""Bad audio everywhere: a clear AudioInputError or a low-confidence result flagged by its quality."""

from __future__ import annotations

import json

import numpy as np
import pytest

import run_agent
from attune.backends.emotion.detector import VoiceEmotionDetector
from attune.core.errors import AudioInputError
from tests.emotion_signals import RATE, syllables

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


@pytest.fixture(scope="module")
def det() -> VoiceEmotionDetector:
    return VoiceEmotionDetector()


@pytest.mark.parametrize("audio", [
    np.zeros(0, np.float32),
    np.full(RATE, np.nan, np.float32),
    np.full(RATE, np.inf, np.float32),
    np.zeros((2, 3, 4), np.float32),
    np.array(["a", "b"]),
])
def test_unusable_arrays_raise_audio_input_error(det: VoiceEmotionDetector, audio: np.ndarray) -> None:
    with pytest.raises(AudioInputError):
        det.analyze(audio, RATE)


@pytest.mark.parametrize("rate", [0, -16000, 1e9, float("nan"), "16k", None])
def test_bad_sample_rates_raise(det: VoiceEmotionDetector, rate: object) -> None:
    with pytest.raises(AudioInputError):
        det.analyze(syllables(), rate)  # type: ignore[arg-type]


def test_formats_and_rates_agree(det: VoiceEmotionDetector) -> None:
    x = syllables(f0_hz=200.0)
    ref = det.analyze(x, RATE).markers.pitch_mean_hz
    pcm = (x * 32767).astype(np.int16)
    stereo = np.stack([x, x], axis=1)
    from attune.core.audio import resample

    for audio, rate in [(pcm, RATE), (stereo, RATE), (stereo.T.copy(), RATE), (resample(x, RATE, 44100), 44100),
                        (resample(x, RATE, 8000), 8000), (x.astype(np.float64), RATE)]:
        assert det.analyze(audio, rate).markers.pitch_mean_hz == pytest.approx(ref, rel=0.03)


def test_partly_nan_audio_is_flagged_not_fatal(det: VoiceEmotionDetector) -> None:
    x = syllables()
    x[1000:1100] = np.nan
    r = det.analyze(x, RATE)
    assert r.quality.non_finite_fraction > 0 and "non-finite samples replaced" in r.quality.issues


def test_silence_and_short_audio_give_zero_confidence(det: VoiceEmotionDetector) -> None:
    for audio, issue in [(np.zeros(RATE, np.float32), "silent"), (syllables()[:800], "too short")]:
        r = det.analyze(audio, RATE)
        assert r.confidence == 0.0 and not r.reliable and issue in r.quality.issues
        assert r.to_context_string().startswith("[Voice emotion unclear")


def test_a_quiet_talker_between_silences_is_read_not_silent(det: VoiceEmotionDetector) -> None:
    """Soft speech at about -50 dBFS with a second of digital silence each side: the clip's RMS is below the
    -60 dBFS silence level, its words are not (RAVDESS's soft sadness sounds like this)."""
    words = syllables(amp=0.3, seconds=1.0) * 10 ** (-38 / 20)
    words -= words.mean()
    x = np.concatenate([np.zeros(2 * RATE, np.float32), words, np.zeros(2 * RATE, np.float32)])
    r = det.analyze(x, RATE)
    assert r.quality.rms_dbfs < -60.0
    assert not r.quality.is_silent and r.confidence > 0.0 and r.markers.pitch_mean_hz > 150.0
    assert det.analyze(np.zeros(5 * RATE, np.float32), RATE).quality.is_silent


def test_clipped_audio_is_flagged_and_less_confident(det: VoiceEmotionDetector) -> None:
    x = syllables()
    clean = det.analyze(x, RATE)
    clipped = det.analyze(np.clip(x * 20.0, -1.0, 1.0), RATE)
    assert clipped.quality.is_clipped and "clipped" in clipped.quality.issues
    assert clipped.confidence < clean.confidence or clipped.confidence <= 0.7 * 0.9


def test_noise_only_audio_is_not_an_exception(det: VoiceEmotionDetector) -> None:
    noise = 0.1 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    r = det.analyze(noise, RATE)
    assert r.markers.pitch_mean_hz == 0.0 or r.markers.pitch_mean_hz > 0  # decided, finite
    assert np.isfinite(r.confidence)


def test_cli_analyze_reports_bad_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    assert run_agent.main(["analyze", str(bad)]) == 1
    assert "cannot read audio file" in capsys.readouterr().err
    assert run_agent.main(["analyze", str(tmp_path / "none.wav")]) == 1


def test_cli_analyze_json(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from attune.core.audio import write_wav

    path = tmp_path / "v.wav"
    write_wav(path, syllables(f0_hz=180.0), RATE)
    assert run_agent.main(["analyze", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] in ("hybrid", "prosodic") and len(out["predictions"]) == 3  # prosodic: no Whisper model
    assert out["context"].startswith("[")
    assert out["markers"]["pitch_mean_hz"] == pytest.approx(180.0, rel=0.03)
    assert run_agent.main(["analyze", str(path)]) == 0
    assert "valence" in capsys.readouterr().out


def test_cli_demo_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_agent.main(["analyze", "--demo"]) == 0
    assert "Voice" in capsys.readouterr().out
    assert run_agent.main(["analyze", "--demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["duration_s"] > 1.0


def test_cli_demo_without_espeak_says_so(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert run_agent.main(["analyze", "--demo", "--json"]) == 0
    captured = capsys.readouterr()
    assert "espeak-ng is not installed" in captured.err
    assert json.loads(captured.out)["markers"]["pitch_mean_hz"] == pytest.approx(180.0, rel=0.03)


def test_cli_bench_falls_back_to_synthetic_speech(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_agent.main(["bench-emotion", "--seconds", "3", "--data", str(tmp_path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["source"] == "synthetic speech" and figures["hops"] == 6 and figures["results"] == 5


def test_cli_eval_rejects_a_folder_without_emodb_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_agent.main(["eval-emotion", "--data", str(tmp_path)]) == 1
    assert "no EmoDB (SSTTTEV.wav) or RAVDESS" in capsys.readouterr().err
