"""The prosody applicator: closed-loop checks with the emotion analyzer on real speech (the embedded Piper
voice through the TTS router), streaming joins, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from attune.agent.prosody_dsp import ProsodyApplicator, apply_to_audio, scale_pauses
from attune.agent.speech_dsp import frame_db, silent_runs, speech_level_db
from attune.backends.emotion.features import C_F0, compute_track, extract_markers
from attune.core.audio import resample
from attune.core.errors import AudioInputError
from attune.core.prosody import PROFILES, ProsodyParameters
from tests.engines_util import tts_speech

LAYER = "real"  # STYLE.md layer 4: real models on real audio

TEXT = ("The weather was lovely today, and we walked along the river for an hour. "
        "Then we went home and had some tea.")


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    return tts_speech(TEXT)


def speech_level(x: np.ndarray, rate: int) -> float:
    db, _ = frame_db(x, rate)
    loud = db > speech_level_db(db) - 30
    return float(10 * np.log10(np.mean(10 ** (db[loud] / 10))))


def test_pitch_shift_raises_pitch_mean_and_keeps_duration(speech):
    x, sr = speech
    before = extract_markers(x, sr)
    # Piper's joe voice sits near 90 Hz; at -3 st its low tail falls under the analyzer's 60 Hz F0 floor, the
    # dropped frames bias the mean up (measured 0.872 for 0.841, median 0.849), so the downward check is -2 st
    # (unseeded renders: 0.906..0.918 for 0.891, the floor still trims a little).
    for semis, want in ((2.0, 1.1225), (-2.0, 0.8909)):
        y = apply_to_audio(x, sr, ProsodyParameters(pitch_shift_semitones=semis))
        after = extract_markers(y, sr)
        assert after.pitch_mean_hz / before.pitch_mean_hz == pytest.approx(want, rel=0.03)
        assert len(y) == pytest.approx(len(x), rel=0.01)


@pytest.mark.parametrize("rate", [0.75, 1.3])
def test_rate_scales_duration_and_keeps_pitch(speech, rate):
    x, sr = speech
    y = apply_to_audio(x, sr, ProsodyParameters(speech_rate=rate))
    assert len(y) / len(x) == pytest.approx(1.0 / rate, rel=0.02)
    before, after = extract_markers(x, sr), extract_markers(y, sr)
    # On Piper's ~90 Hz voice rate 1.3 reads +1.0..+3.0 % over seven unseeded renders (the F0 median moves the
    # same), rate 0.75 within 1.2 %: a small real bias of the stretch on a low voice, inside the 3 % asked.
    assert after.pitch_mean_hz == pytest.approx(before.pitch_mean_hz, rel=0.03)
    assert (after.speech_rate_sps - before.speech_rate_sps) * (rate - 1.0) > 0


@pytest.mark.parametrize("db", [-5.0, 4.0])
def test_volume_moves_level_by_the_db_asked(speech, db):
    x, sr = speech
    y = apply_to_audio(x, sr, ProsodyParameters(volume_db=db))
    assert speech_level(y, sr) - speech_level(x, sr) == pytest.approx(db, abs=0.3)


def test_longer_pauses_raise_pause_ratio_and_shorter_lower_it(speech):
    x, sr = speech
    base = extract_markers(x, sr).pause_ratio
    longer = extract_markers(apply_to_audio(x, sr, ProsodyParameters(pause_multiplier=2.0)), sr).pause_ratio
    assert longer > base + 0.04
    # Shorter: Piper leaves few pauses (pause ratio about 0.09), and as they shrink the analyzer's adaptive
    # silence threshold (10th level percentile) rises, so its pause ratio does not fall reliably (three renders:
    # 0.12, 0.088, 0.080 against 0.090, 0.108, 0.095). What is cut is measured instead: half of the pause time.
    runs = sum(e - s for s, e in silent_runs(x, sr, 0.08))
    for y in (scale_pauses(x, sr, 0.5), apply_to_audio(x, sr, ProsodyParameters(pause_multiplier=0.5))):
        assert len(x) - len(y) == pytest.approx(0.5 * runs, rel=0.1)


def test_pitch_variance_expands_and_flattens_the_contour(speech):
    x, sr = speech
    wide, flat = (apply_to_audio(x, sr, ProsodyParameters(pitch_variance=v)) for v in (1.8, 0.5))
    assert extract_markers(wide, sr).pitch_std_hz > 1.2 * extract_markers(x, sr).pitch_std_hz
    # The amount: Piper's joe voice (about 90 Hz) gives YIN octave errors that dominate a Hz standard deviation
    # (its 95th F0 percentile is ~207 Hz), and the 60 Hz floor and octave gate clip an expanded contour; so
    # the spread is the interquartile range in semitones over the frames voiced in both (duration is kept).
    f0_in = compute_track(resample(x, sr, 16000))[:, C_F0]
    for y, want in ((wide, 1.8), (flat, 0.5)):
        f0_out = compute_track(resample(y, sr, 16000))[:, C_F0]
        n = min(len(f0_in), len(f0_out))
        both = (f0_in[:n] > 0) & (f0_out[:n] > 0)
        iqr = [np.subtract(*np.percentile(12 * np.log2(f[:n][both]), [75, 25])) for f in (f0_in, f0_out)]
        assert iqr[1] / iqr[0] == pytest.approx(want, rel=0.15)


def test_dynamic_range_scales_level_differences_at_the_same_level(speech):
    x, sr = speech
    db_in, _ = frame_db(x, sr)
    speechy = db_in > speech_level_db(db_in) - 20

    def slope(y: np.ndarray) -> float:
        db_out, _ = frame_db(y, sr)  # same length, so frames line up
        return float(np.polyfit(db_in[speechy], db_out[speechy], 1)[0])

    wide = apply_to_audio(x, sr, ProsodyParameters(dynamic_range=1.5))
    narrow = apply_to_audio(x, sr, ProsodyParameters(dynamic_range=0.5))
    assert slope(wide) == pytest.approx(1.5, abs=0.15)
    assert slope(narrow) == pytest.approx(0.5, abs=0.15)
    assert abs(speech_level(narrow, sr) - speech_level(x, sr)) < 1.5


def test_breathiness_adds_high_band_noise(speech):
    x, sr = speech
    y = apply_to_audio(x, sr, ProsodyParameters(breathiness=1.0))
    assert extract_markers(y, sr).breathiness > extract_markers(x, sr).breathiness


def test_tremolo_modulates_level_at_about_5_hz(speech):
    x, sr = speech
    y = apply_to_audio(x, sr, ProsodyParameters(tremolo_amount=1.0))
    n = min(len(x), len(y))  # the vibrato's warp may leave a few samples more or fewer
    ratio = np.abs(y[:n]) / np.maximum(np.abs(x[:n]), 1e-4)
    voiced = np.abs(x[:n]) > 0.5 * np.sqrt(np.mean(np.square(x)))
    # Amplitude modulation: the level ratio swings by about +-30 % where the voice is loud.
    assert np.percentile(ratio[voiced], 95) - np.percentile(ratio[voiced], 5) > 0.3


def test_profiles_move_markers_the_way_the_literature_says(speech):
    x, sr = speech
    base = extract_markers(x, sr)
    sad = extract_markers(apply_to_audio(x, sr, PROFILES["sad"]), sr)
    panicked = extract_markers(apply_to_audio(x, sr, PROFILES["panicked"]), sr)
    assert sad.pitch_mean_hz < base.pitch_mean_hz < panicked.pitch_mean_hz
    assert sad.speech_rate_sps < base.speech_rate_sps < panicked.speech_rate_sps
    assert sad.level_dbfs < base.level_dbfs < panicked.level_dbfs


def test_neutral_parameters_leave_audio_unchanged(speech):
    x, sr = speech
    assert np.allclose(apply_to_audio(x, sr, ProsodyParameters()), x, atol=1e-6)


def join_spikes(pieces: list[np.ndarray]) -> float:
    """The largest step between consecutive samples at the joins, relative to the largest step anywhere."""
    whole = np.concatenate(pieces)
    steps = np.abs(np.diff(whole))
    joins = np.cumsum([len(p) for p in pieces[:-1] if len(p)]) - 1
    joins = joins[(joins >= 0) & (joins < len(steps))]
    return float(steps[joins].max() / steps.max()) if len(joins) else 0.0


@pytest.mark.parametrize("emotion", ["happy", "sad", "panicked"])
def test_streaming_sentence_by_sentence_has_no_clicks_at_joins(speech, emotion):
    x, sr = speech
    sentences = [x[: len(x) // 2], x[len(x) // 2:]]
    more, _ = tts_speech("Goodbye for now.")
    sentences.append(more)
    app = ProsodyApplicator(sr, PROFILES[emotion])
    pieces = [app.push(s) for s in sentences] + [app.flush()]
    out = np.concatenate(pieces)
    assert len(out) == pytest.approx(sum(map(len, sentences)) / PROFILES[emotion].speech_rate, rel=0.15)
    assert sum(len(p) > 0 for p in pieces[:-1]) >= 2  # sentences came out before the flush
    assert join_spikes([p for p in pieces if len(p)]) < 0.2
    assert np.max(np.abs(out)) <= 1.0


def test_flush_after_every_sentence_gives_each_at_once_without_clicks(speech):
    x, sr = speech
    half = len(x) // 2
    app = ProsodyApplicator(sr, PROFILES["angry"])
    pieces = []
    for sentence in (x[:half], x[half:]):
        pieces += [app.push(sentence), app.flush()]
    got = [p for p in pieces if len(p)]
    assert sum(len(p) for p in got) == pytest.approx(len(x) / PROFILES["angry"].speech_rate, rel=0.1)
    assert join_spikes(got) < 0.2


def test_streaming_in_20ms_chunks_matches_the_whole_length(speech):
    x, sr = speech
    app = ProsodyApplicator(sr, PROFILES["excited"])
    hop = sr // 50
    pieces = [app.push(x[i:i + hop]) for i in range(0, len(x), hop)] + [app.flush()]
    out = np.concatenate(pieces)
    assert len(out) == pytest.approx(len(x) / PROFILES["excited"].speech_rate, rel=0.1)
    assert sum(len(p) > 0 for p in pieces) >= 2
    assert join_spikes([p for p in pieces if len(p)]) < 0.2


def test_stream_cuts_fall_in_pauses_and_keep_noise_and_tremolo_running(speech):
    x, sr = speech
    params = ProsodyParameters(volume_db=2.0, breathiness=0.6, dynamic_range=1.2)  # no warp: lengths equal
    app = ProsodyApplicator(sr, params)
    hop = sr // 50
    pieces = [p for p in [app.push(x[i:i + hop]) for i in range(0, len(x), hop)] + [app.flush()] if len(p)]
    streamed = np.concatenate(pieces)
    whole = apply_to_audio(x, sr, params)
    assert len(pieces) >= 2 and len(streamed) == len(whole)
    voiced = np.abs(whole) > 0.2 * np.sqrt(np.mean(np.square(x)))  # 0.02 at the old -20 dBFS fixture
    # espeak-ng speech gave > 0.999; six Piper renders gave 0.9984..0.9999 (cause not isolated: the streamed
    # and whole runs see the same DSP, so a lost noise or tremolo state would fall far lower than this).
    assert np.corrcoef(streamed[voiced], whole[voiced])[0, 1] > 0.997
    level = speech_level(x, sr)
    for join in np.cumsum([len(p) for p in pieces[:-1]]):
        around = x[max(0, join - sr // 100):join + sr // 100]
        # A cut inside a pause. Piper's pauses are not digital silence: one unseeded render cut where the level
        # was 24 dB under speech (espeak-ng: always far below).
        assert 20 * np.log10(np.sqrt(np.mean(around**2)) + 1e-9) < level - 25


def test_join_metric_detects_a_hard_cut(speech):
    x, _ = speech
    loud = int(np.argmax(np.abs(x)))
    assert join_spikes([x[:loud - 200], x[loud:]]) > 0.2  # the metric the stream tests rely on can fail


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_pitch_and_rate_hold_at_other_sample_rates(speech, rate):
    from attune.core.audio import resample

    x, sr = speech
    y_in = resample(x, sr, rate)
    y = apply_to_audio(y_in, rate, ProsodyParameters(pitch_shift_semitones=2.0, speech_rate=1.2))
    assert len(y) / len(y_in) == pytest.approx(1 / 1.2, rel=0.02)
    assert extract_markers(y, rate).pitch_mean_hz / extract_markers(y_in, rate).pitch_mean_hz == pytest.approx(
        1.1225, rel=0.03)


def test_extreme_settings_stay_finite_and_in_range(speech):
    x, sr = speech
    loud = (x * 4.0).astype(np.float32)  # -8 dBFS RMS: the limiter has work to do
    for params in (ProsodyParameters(6.0, 2.0, 1.5, 0.5, 6.0, 1.5, 1.0, 1.0),
                   ProsodyParameters(-6.0, 0.5, 0.7, 2.0, -6.0, 0.5, 0.0, 0.0)):
        y = apply_to_audio(loud, sr, params)
        assert np.isfinite(y).all() and np.max(np.abs(y)) <= 1.0
        assert len(y) > 0.5 * len(loud)


def test_accepts_int16_and_stereo(speech):
    x, sr = speech
    pcm = (np.stack([x, x], axis=1) * 32767).astype(np.int16)
    y = apply_to_audio(pcm, sr, PROFILES["calm"])
    assert y.ndim == 1 and y.dtype == np.float32


def test_bad_input_is_a_clear_error():
    with pytest.raises(AudioInputError):
        apply_to_audio(np.zeros(0, np.float32), 16000, ProsodyParameters())
    with pytest.raises(AudioInputError):
        apply_to_audio(np.zeros(100, np.float32), 0, ProsodyParameters())
    with pytest.raises(AudioInputError):
        apply_to_audio(np.full(100, np.nan, np.float32), 16000, ProsodyParameters())
    assert len(ProsodyApplicator(16000, ProsodyParameters()).push(np.zeros(0, np.float32))) == 0


def test_short_audio_and_silence_survive_every_profile():
    rng = np.random.default_rng(0)
    for params in PROFILES.values():
        for audio in (np.zeros(4000, np.float32), (0.1 * rng.standard_normal(300)).astype(np.float32)):
            y = apply_to_audio(audio, 16000, params)
            assert np.isfinite(y).all() and len(y) > 0
