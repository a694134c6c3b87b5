"""Loop-free unit tests of the DSP features on synthetic signals with known pitch, rate, pauses and level."""

from __future__ import annotations

import numpy as np
import pytest

from attune.backends.emotion import features as F
from attune.core.errors import AudioInputError
from tests.emotion_signals import RATE, harmonic, syllables

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


@pytest.mark.parametrize("f0", [90.0, 150.0, 220.0, 330.0, 450.0])
def test_pitch_of_harmonic_tone(f0: float) -> None:
    m = F.extract_markers(harmonic(f0, 1.0), RATE)
    assert m.pitch_mean_hz == pytest.approx(f0, rel=0.02)
    assert m.pitch_std_hz < 0.02 * f0


def test_pitch_at_other_sample_rates_and_int16() -> None:
    x = harmonic(220.0, 1.0, rate=44100)
    assert F.extract_markers(x, 44100).pitch_mean_hz == pytest.approx(220.0, rel=0.02)
    pcm = (harmonic(220.0, 1.0, rate=8000) * 32767).astype(np.int16)
    assert F.extract_markers(pcm, 8000).pitch_mean_hz == pytest.approx(220.0, rel=0.02)


def test_pitch_shift_moves_pitch_mean() -> None:
    low = F.extract_markers(syllables(f0_hz=180.0), RATE).pitch_mean_hz
    high = F.extract_markers(syllables(f0_hz=240.0), RATE).pitch_mean_hz
    assert high / low == pytest.approx(240.0 / 180.0, rel=0.03)


def test_speech_rate_follows_syllable_rate() -> None:
    # sin^2 envelope at per_s=4 has 4 peaks a second
    slow = F.extract_markers(syllables(per_s=3.0), RATE).speech_rate_sps
    fast = F.extract_markers(syllables(per_s=6.0), RATE).speech_rate_sps
    assert slow == pytest.approx(3.0, rel=0.25)
    assert fast == pytest.approx(6.0, rel=0.25)


def test_longer_pause_raises_pause_ratio_and_counts_hesitation() -> None:
    base = F.extract_markers(syllables(per_s=4.0), RATE)
    paused = F.extract_markers(syllables(per_s=4.0, pause_at_s=1.5, pause_s=1.0), RATE)
    short = F.extract_markers(syllables(per_s=4.0, pause_at_s=1.5, pause_s=0.25), RATE)
    assert base.pause_ratio < 0.1
    assert paused.pause_ratio > base.pause_ratio + 0.2
    assert short.hesitation_count >= 1 and base.hesitation_count == 0


def test_level_follows_gain() -> None:
    x = syllables()
    loud, quiet = F.extract_markers(x, RATE).level_dbfs, F.extract_markers(0.1 * x, RATE).level_dbfs
    assert loud - quiet == pytest.approx(20.0, abs=1.0)


def test_tremor_and_breathiness_move_with_jitter_and_noise() -> None:
    clean = F.extract_markers(harmonic(200.0, 1.5), RATE)
    shaky = F.extract_markers(harmonic(200.0, 1.5, jitter=0.08), RATE)
    assert shaky.voice_tremor > clean.voice_tremor + 0.1
    noise = np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.2
    breathy = F.extract_markers(harmonic(200.0, 1.5) + noise, RATE)
    assert breathy.breathiness > clean.breathiness + 0.2


def test_feature_vector_shape_and_silence() -> None:
    v = F.extract_features(syllables(), RATE)
    assert v.shape == (F.N_FEATURES,) and np.isfinite(v).all()
    assert len(set(F.FEATURE_NAMES)) == F.N_FEATURES
    silent = F.extract_features(np.zeros(RATE, np.float32), RATE)
    assert not silent.any()
    assert F.extract_markers(np.zeros(RATE, np.float32), RATE).pitch_mean_hz == 0.0


def test_chunked_tracks_concatenate_like_the_whole() -> None:
    x = syllables(seconds=1.0)
    whole = F.compute_track(x)
    parts = np.concatenate([F.compute_track(x[:8000]), F.compute_track(x[8000:], left_context=x[:8000])])
    assert parts.shape == whole.shape
    # frames away from the seam are identical; near it only the zero-padded right edge differs
    np.testing.assert_allclose(parts[:45], whole[:45], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(parts[52:], whole[52:], rtol=1e-3, atol=1e-3)


def test_autocorrelation_fallback_finds_pitch() -> None:
    frames = np.lib.stride_tricks.sliding_window_view(harmonic(200.0, 0.2, rate=F.PITCH_RATE), F.PITCH_FRAME)[::80]
    f0 = F.autocorrelation_pitch(frames)
    assert np.median(f0) == pytest.approx(200.0, rel=0.03)


def test_baseline_changes_elevated_and_rate_category() -> None:
    base = F.SpeakerBaseline(pitch_hz=120.0, rate_sps=3.0)
    assert base.pitch_elevated(160.0) and not F.SpeakerBaseline().pitch_elevated(160.0)
    assert base.rate_category(4.5) == "fast" and F.SpeakerBaseline(rate_sps=5.0).rate_category(4.5) == "normal"


@pytest.mark.parametrize("bad", [np.array([], np.float32), np.full(1000, np.nan, np.float32)])
def test_bad_input_is_a_clear_error(bad: np.ndarray) -> None:
    with pytest.raises(AudioInputError):
        F.extract_markers(bad, RATE)


def test_long_audio_is_tracked_in_blocks_like_short_audio() -> None:
    x = syllables(seconds=65.0)
    track = F.track_with_fallback(x)
    assert len(track) == len(x) // F.HOP
    m = F.extract_markers(x, RATE)
    assert m.pitch_mean_hz == pytest.approx(220.0, rel=0.02) and m.speech_rate_sps == pytest.approx(4.0, rel=0.25)


def test_a_soft_talker_keeps_their_rhythm() -> None:
    """The same speech 30 and 40 dB softer (peaks near -50 dBFS, as RAVDESS's soft sadness): pauses and rate are
    read as at full level, not eaten by the silence floor (at -60 dBFS the pause ratio tripled at -40 dB)."""
    x = syllables(amp=0.3, seconds=3.0, pause_at_s=1.5, pause_s=0.5)
    x = np.concatenate([np.zeros(RATE // 2, np.float32), x, np.zeros(RATE // 2, np.float32)])
    loud = F.extract_features(x, RATE)
    pause, rate = F.FEATURE_NAMES.index("pause_ratio"), F.FEATURE_NAMES.index("speech_rate_sps")
    for gain_db in (-30.0, -40.0):
        soft = F.extract_features(x * np.float32(10 ** (gain_db / 20)), RATE)
        assert abs(soft[pause] - loud[pause]) < 0.03 and abs(soft[rate] - loud[rate]) < 0.2, gain_db
