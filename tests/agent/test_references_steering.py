"""The emotion reference bank (controller, cache, SHA-256 checks, fallback) and the measured emotion axis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attune.agent.references import (
    REFERENCE_RATE,
    REFERENCES,
    ReferenceBank,
    build_bank,
    choose_reference,
    sha256_of,
)
from attune.agent.steering import DEFAULT_AXIS_PATH, compute_axis, load_axis, measure_steering, steer
from attune.backends.emotion.features import extract_markers
from attune.core.emotion import EmotionCategory
from attune.core.errors import AttuneError, ReferenceBankError
from tests.engines_util import tts_speech

LAYER = "real"  # STYLE.md layer 4: real models on real audio

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "attune" / "references"
EIGHT = {"calm_supportive", "empathetic_sad", "joyful_excited", "playful", "confident", "concerned_anxious",
         "angry_firm", "neutral"}


def needs_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")


def test_controller_maps_every_emotion_to_one_of_the_eight():
    assert set(REFERENCES) == EIGHT
    for cat in EmotionCategory:
        assert choose_reference(cat).reference in EIGHT
    calm = choose_reference("calm")
    assert (calm.reference, calm.pitch_scale, calm.rate_scale, calm.energy_scale) == (
        "calm_supportive", 0.93, 0.93, 0.86)
    assert choose_reference("angry").reference == "angry_firm"
    assert choose_reference("sad").reference == "empathetic_sad"
    assert choose_reference("excited").reference == "joyful_excited"
    assert choose_reference("anxious").reference == "concerned_anxious"
    half = choose_reference("calm", 0.5)
    assert half.pitch_scale == pytest.approx(0.965) and half.energy_scale == pytest.approx(0.93)
    with pytest.raises(ValueError):
        choose_reference("grumpy")


def test_shipped_bank_matches_its_manifest():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["tts"] == "piper" and manifest["sample_rate"] == REFERENCE_RATE
    assert {e["emotion"] for e in manifest["references"]} == EIGHT
    bank = ReferenceBank(SHIPPED)
    for entry in manifest["references"]:
        ref = bank.get(entry["emotion"])
        assert ref.sample_rate == REFERENCE_RATE and ref.audio.ndim == 1
        assert len(ref.audio) / REFERENCE_RATE == pytest.approx(entry["duration_s"], abs=0.01)
        assert 0.5 < entry["duration_s"] < 8.0 and entry["transcript"]
        assert (SHIPPED / entry["file"].replace(".wav", ".txt")).read_text().strip() == entry["transcript"]
        for key in ("pitch_scale", "rate_scale", "energy_scale"):
            assert key in entry
    assert bank.get("neutral") is bank.get("neutral")  # loaded once, cached


def test_reference_prosody_is_audible_in_the_clips():
    bank = ReferenceBank(SHIPPED)
    sad, excited = bank.get("empathetic_sad"), bank.get("joyful_excited")
    assert extract_markers(sad.audio, sad.sample_rate).pitch_mean_hz < extract_markers(
        excited.audio, excited.sample_rate).pitch_mean_hz


@pytest.fixture()
def bank_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "refs"
    shutil.copytree(SHIPPED, dest)
    return dest


def test_corrupt_reference_is_a_clear_error_and_falls_back_to_neutral(bank_copy: Path, caplog):
    wav = bank_copy / "calm_supportive.wav"
    data = bytearray(wav.read_bytes())
    data[5000] ^= 0xFF
    wav.write_bytes(bytes(data))
    bank = ReferenceBank(bank_copy)
    with pytest.raises(ReferenceBankError, match="SHA-256"):
        bank.get("calm_supportive")
    choice, ref = bank.for_emotion("calm")
    assert choice.reference == "neutral" and ref.name == "neutral" and "falling back" in caplog.text


def test_missing_reference_and_manifest(bank_copy: Path):
    (bank_copy / "angry_firm.wav").unlink()
    bank = ReferenceBank(bank_copy)
    with pytest.raises(ReferenceBankError, match="file missing"):
        bank.get("angry_firm")
    assert bank.for_emotion("angry")[1].name == "neutral"
    (bank_copy / "neutral.wav").unlink()
    assert bank.for_emotion("angry")[1].name == "neutral"  # already in memory: served from the cache
    with pytest.raises(ReferenceBankError):
        ReferenceBank(bank_copy).for_emotion("angry")
    with pytest.raises(ReferenceBankError, match="manifest not found"):
        ReferenceBank(bank_copy / "nowhere").get("neutral")
    (bank_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ReferenceBankError, match="malformed"):
        ReferenceBank(bank_copy).get("neutral")


def test_build_bank_writes_verified_24k_clips(tmp_path: Path):
    """Through espeak-ng here (fast; the build-references command test covers Piper): volume is held back from
    the engine and set after the level normalisation, so angry_firm stays louder than empathetic_sad."""
    needs_espeak()
    from attune.agent.speech_source import speech_router

    manifest = build_bank(tmp_path, speech_router(provider="espeak"))
    assert manifest["tts"] == "espeak"
    entries = manifest["references"]
    assert isinstance(entries, list) and len(entries) == 8
    for entry in entries:
        assert sha256_of(tmp_path / entry["file"]) == entry["sha256"]
    bank = ReferenceBank(tmp_path)
    ref = bank.get("joyful_excited")
    assert ref.sample_rate == REFERENCE_RATE and np.max(np.abs(ref.audio)) <= 1.0
    angry, sad = (extract_markers(bank.get(n).audio, REFERENCE_RATE) for n in ("angry_firm", "empathetic_sad"))
    assert angry.level_dbfs > sad.level_dbfs + 3


def test_csm_service_loads_the_shipped_bank():
    from attune.backends.tts.csm_service import load_reference_bank

    bank = load_reference_bank(SHIPPED, REFERENCE_RATE)
    assert set(bank) == EIGHT and all(seg.text for seg in bank.values())


# ---- the emotion axis ---------------------------------------------------------------------------------------

def test_shipped_axis_loads_and_maps_to_prosody():
    axis = load_axis()
    assert DEFAULT_AXIS_PATH.is_file() and len(axis.speakers) >= 3
    up, down = axis.params(1.0), axis.params(-1.0)
    assert up.pitch_shift_semitones > 0 > down.pitch_shift_semitones  # anger raises F0 (Scherer 2003)
    assert axis.params(0.0).is_neutral
    assert axis.params(5.0) == up  # delta is clamped to -1..1
    with pytest.raises(AttuneError):
        load_axis(REPO / "no_such_axis.json")


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    return tts_speech("I told you twice already, and I will not say it again. Please listen to me.")


def test_steering_moves_measured_pitch_along_the_axis(speech):
    x, sr = speech
    base = extract_markers(x, sr).pitch_mean_hz
    assert extract_markers(steer(x, sr, 1.0), sr).pitch_mean_hz > base * 1.1
    assert extract_markers(steer(x, sr, -1.0), sr).pitch_mean_hz < base * 0.9
    assert np.allclose(steer(x, sr, 0.0), x, atol=1e-6)


def test_steering_raises_and_lowers_measured_arousal(emodb_dir: Path):
    """Neutral EmoDB clips steered +1 / -1 along the shipped axis, read by the prosodic emotion backend.

    Measured on in-domain speech (the backend is calibrated on EmoDB; synthetic voices lie outside it), with
    the backend's speaker adaptation off so every clip is read against the same population statistics.
    """
    m = measure_steering(emodb_dir)
    # The prosodic model trained on EmoDB and RAVDESS (issue 9) reads arousal partly from loudness, which the
    # axis leaves alone (EmoDB is level-normalised), so steering moves it less than it moved the EmoDB-only
    # model (+0.13 then, +0.03 now; see README "Emotion axis").
    assert m["arousal_minus1"] < m["arousal_0"] - 0.01 and m["arousal_plus1"] > m["arousal_0"] + 0.02
    # More clips move the right way than the wrong way, not just the average. Measured: 23 of 43 raised by +1
    # (0.535), 31 lowered by -1 (0.721); mean arousal 0.364 / 0.388 / 0.421. The margin of the first is one
    # clip, but nothing here depends on the CPU's kernels: numpy DSP and a logistic model gave the same figures
    # to four decimals with numpy's and OpenBLAS's AVX-512 paths turned off (NPY_DISABLE_CPU_FEATURES,
    # OPENBLAS_CORETYPE=Haswell). The figure is what the axis does, not noise.
    assert m["raised_by_plus1"] > 0.5
    assert m["lowered_by_minus1"] > 0.6


def test_axis_from_emodb_agrees_with_the_shipped_one(emodb_dir: Path):
    axis, per_speaker = compute_axis(emodb_dir)
    shipped = load_axis()
    assert len(per_speaker) >= 3
    assert axis.pitch_semitones == pytest.approx(shipped.pitch_semitones, abs=0.5)
    # Every speaker's anger is higher-pitched than their neutral speech.
    assert all(v[0] > 0 for v in per_speaker.values())


def test_axis_needs_both_emotions(tmp_path: Path):
    with pytest.raises(AttuneError, match="both anger"):
        compute_axis(tmp_path)
    with pytest.raises(AttuneError):
        compute_axis(tmp_path / "missing")
