"""VoiceEmotionDetector: streaming stamps and cost-saving paths, history bound, trajectory, calibration, aggregation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from attune.backends.emotion.detector import VoiceEmotionDetector, aggregate_results, trajectory
from attune.backends.emotion.features import SpeakerBaseline, compute_track
from attune.backends.emotion.prosodic import ProsodicBackend
from attune.config import EmotionConfig
from attune.core.emotion import EmotionResult, PrimaryDimensions
from attune.core.errors import AudioInputError
from tests.emotion_signals import RATE, syllables

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def test_streaming_results_are_stamped_on_the_stream_clock() -> None:
    det = VoiceEmotionDetector()
    audio = syllables(seconds=3.0)
    results = []
    for start in range(0, len(audio), 3200):  # 200 ms chunks: hops complete across chunk boundaries
        results += det.analyze_streaming(audio[start:start + 3200])
    assert [(r.stream_start_s, r.stream_end_s) for r in results] == [
        (pytest.approx(e - 1.0), pytest.approx(e)) for e in (1.0, 1.5, 2.0, 2.5, 3.0)]
    assert all(r.backend == "prosodic" and r.quality.usable for r in results)
    assert results[-1].markers.pitch_mean_hz == pytest.approx(220.0, rel=0.03)
    det.reset_stream()
    assert det.analyze_streaming(audio[:RATE])[0].stream_end_s == pytest.approx(1.0)


def test_streaming_matches_whole_window_analysis() -> None:
    """The per-hop track reuse gives (nearly) the features of analysing the 1 s window directly."""
    audio = syllables(seconds=1.5)
    streamed = VoiceEmotionDetector().analyze_streaming(audio)[-1]
    backend = ProsodicBackend()
    backend.adapt = False
    direct = backend.result_from_track(compute_track(audio[RATE // 2:]), streamed.quality, 1.0)
    assert streamed.markers.pitch_mean_hz == pytest.approx(direct.markers.pitch_mean_hz, rel=0.01)
    assert streamed.markers.speech_rate_sps == pytest.approx(direct.markers.speech_rate_sps, abs=1.1)


def test_streaming_accepts_other_rates_and_flags_silence() -> None:
    det = VoiceEmotionDetector()
    silent = det.analyze_streaming(np.zeros(2 * 8000, np.int16), sample_rate=8000)
    assert len(silent) == 3 and all(r.quality.is_silent and r.confidence == 0.0 for r in silent)
    assert "silent" in silent[0].to_context_string()
    with pytest.raises(AudioInputError):
        det.analyze_streaming(np.array([np.nan] * 100, np.float32))


def test_history_is_bounded_and_windowed() -> None:
    det = VoiceEmotionDetector(EmotionConfig(history_size=5))
    det.analyze_streaming(syllables(seconds=5.0))
    history = det.get_history()
    assert len(history) == 5 and history[-1].stream_end_s == pytest.approx(5.0)
    assert [r.stream_end_s for r in det.get_history(window_s=1.0)] == [pytest.approx(4.0), pytest.approx(4.5),
                                                                       pytest.approx(5.0)]


def _at(t: float, valence: float, arousal: float = 0.5) -> EmotionResult:
    base = VoiceEmotionDetector().analyze(syllables(seconds=1.0), RATE)
    return replace(base, dimensions=PrimaryDimensions(valence, arousal), stream_end_s=t, confidence=0.6)


def test_trajectory_labels() -> None:
    ts = np.arange(0.0, 60.0, 5.0)
    assert trajectory([_at(t, -0.5 + t / 60.0) for t in ts]) == "improving"
    assert trajectory([_at(t, 0.5 - t / 60.0) for t in ts]) == "declining"
    assert trajectory([_at(t, 0.1) for t in ts]) == "stable"
    assert trajectory([_at(t, 0.8 if i % 2 else -0.8) for i, t in enumerate(ts)]) == "volatile"
    assert trajectory([_at(0.0, 0.5)]) == "stable"


def test_get_trajectory_reads_recent_history() -> None:
    det = VoiceEmotionDetector()
    for i, t in enumerate(np.arange(0.0, 60.0, 5.0)):
        det._history.append(_at(t, 0.8 if i % 2 else -0.8))
    assert det.get_trajectory() == "volatile"


def test_calibrate_baseline_changes_pitch_elevated() -> None:
    det = VoiceEmotionDetector()
    probe = syllables(f0_hz=160.0)
    assert not det.analyze(probe, RATE).markers.pitch_elevated
    baseline = det.calibrate_baseline([syllables(f0_hz=f, seed=i) for i, f in enumerate((115.0, 120.0, 125.0))])
    assert baseline.pitch_hz == pytest.approx(120.0, rel=0.03)
    assert det.analyze(probe, RATE).markers.pitch_elevated
    assert not det.analyze(syllables(f0_hz=125.0), RATE).markers.pitch_elevated
    with pytest.raises(AudioInputError):
        det.calibrate_baseline([np.zeros(RATE, np.float32)])


def test_calibrated_rate_changes_rate_category() -> None:
    det = VoiceEmotionDetector()
    det.calibrate_baseline([syllables(per_s=2.0, seed=i) for i in range(3)])
    assert det.baseline.rate_sps == pytest.approx(2.0, rel=0.3)
    assert det.analyze(syllables(per_s=5.0), RATE).markers.speech_rate_category == "fast"
    assert SpeakerBaseline(rate_sps=6.0).rate_category(5.0) == "normal"


def test_aggregate_results_weights_by_confidence() -> None:
    a = replace(_at(1.0, -0.8, 0.8), confidence=0.8, stream_start_s=0.0)
    b = replace(_at(1.5, 0.8, 0.2), confidence=0.2, stream_start_s=0.5)
    agg = aggregate_results([a, b])
    assert agg is not None
    assert agg.dimensions.valence == pytest.approx(0.8 * -0.8 + 0.2 * 0.8)
    assert (agg.stream_start_s, agg.stream_end_s) == (0.0, 1.5)
    assert agg.confidence == pytest.approx(0.8 * 0.8 + 0.2 * 0.2)
    assert agg.primary.confidence <= agg.confidence
    assert aggregate_results([]) is None
    assert aggregate_results([replace(a, confidence=0.0)]) is None


def test_analyze_file_path_and_array_need_rate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from attune.core.audio import write_wav

    path = tmp_path / "voice.wav"
    write_wav(path, syllables(f0_hz=200.0), RATE)
    det = VoiceEmotionDetector()
    assert det.analyze(path).markers.pitch_mean_hz == pytest.approx(200.0, rel=0.03)
    assert det.analyze(str(path)).duration_s == pytest.approx(3.0)
    with pytest.raises(AudioInputError):
        det.analyze(syllables())
    with pytest.raises(AudioInputError):
        det.analyze(tmp_path / "missing.wav")


class _WindowRecorder:
    """A fake backend (its real counterparts are built in test_emotion_registry): records the windows it gets."""

    name = "recorder"

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []
        self.real = ProsodicBackend()

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        self.windows.append(np.asarray(audio))
        return replace(self.real.analyze(audio, sample_rate), backend=self.name)


def test_streaming_with_any_backend_passes_whole_windows() -> None:
    fake = _WindowRecorder()
    det = VoiceEmotionDetector(backend=fake)
    audio = syllables(seconds=2.0)
    results = det.analyze_streaming(audio)
    assert [r.stream_end_s for r in results] == [pytest.approx(1.0), pytest.approx(1.5), pytest.approx(2.0)]
    assert all(r.backend == "recorder" for r in results)
    assert [len(w) for w in fake.windows] == [RATE] * 3
    np.testing.assert_array_equal(fake.windows[-1], audio[RATE:])


def test_calibrate_baseline_from_files_seeds_the_normaliser(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from attune.core.audio import write_wav

    paths = []
    for i, f in enumerate((140.0, 150.0, 145.0)):
        paths.append(tmp_path / f"n{i}.wav")
        rate = 22050 if i else RATE  # any rate
        write_wav(paths[-1], syllables(f0_hz=f, seed=i, rate=rate), rate)
    det = VoiceEmotionDetector()
    backend = det.backend
    assert isinstance(backend, ProsodicBackend) and backend.normalizer.count == 0
    assert det.calibrate_baseline(paths).pitch_hz == pytest.approx(145.0, rel=0.03)
    assert backend.normalizer.count == 3
