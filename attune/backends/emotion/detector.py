"""VoiceEmotionDetector: whole-utterance analysis, a streaming window (1 s buffer, 500 ms hop), history,
trajectory and speaker calibration, on top of any emotion backend.

The streaming path is a pure synchronous core: ``analyze_streaming(chunk)`` takes any amount of audio and
returns the results of every hop it completed, each stamped on the stream clock. The backend is any
``EmotionBackend`` (by default the one ``emotion.backend`` names, through the registry); one that implements
``FrameTrackBackend`` (prosodic) gets the cheap path: each hop computes the frame track of only its new 500 ms and
reuses the previous half window's track. Any other backend analyses the whole window every hop.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from attune.backends.base import EmotionBackend, FrameTrackBackend, TurnEmotion
from attune.backends.emotion.emotion_factory import create_emotion_backend
from attune.backends.emotion.features import (
    CONTEXT,
    HOP,
    SpeakerBaseline,
    analyze_track,
    compute_track,
    silent_track,
    track_with_fallback,
)
from attune.backends.emotion.prosodic import unusable_result
from attune.config import Config, EmotionConfig
from attune.core.audio import SAMPLE_RATE, load_wav, measure_quality, prepare, read_audio_file, rms
from attune.core.emotion import (
    EmotionCategory,
    EmotionResult,
    PrimaryDimensions,
    dimensions_to_likely_emotions,
    predictions_from_scores,
)
from attune.core.errors import AudioInputError

log = logging.getLogger("attune.emotion.detector")

SILENCE_DBFS = -60.0  # a hop quieter than this skips pitch and spectrum entirely
TREND_SLOPE = 0.002  # per second: |valence slope| beyond this (0.12 per minute) is a trend
VOLATILE_STD = 0.3  # valence std (or 0.6 x arousal std) beyond this is volatile


class VoiceEmotionDetector:
    """Emotion from a voice, one utterance at a time or streamed. Not thread-safe: one stream per instance."""

    def __init__(self, config: EmotionConfig | None = None, backend: EmotionBackend | None = None) -> None:
        """``backend`` defaults to ``config.backend`` built through the registry (prosodic where it cannot run);
        a whole-turn backend (whisper, hybrid: ``analyze_turn``) is read once per turn, not per hop, so the
        default streaming backend is then prosodic."""
        self.config = config or EmotionConfig()
        if backend is None:
            backend = create_emotion_backend(Config(emotion=self.config))
            if isinstance(backend, TurnEmotion):
                backend = create_emotion_backend(Config(emotion=self.config), "prosodic")
        self.backend: EmotionBackend = backend
        # The per-hop frame-track path, for backends that read tracks (a structural check: any such backend).
        self._framed: FrameTrackBackend | None = (self.backend if isinstance(self.backend, FrameTrackBackend)
                                                  else None)
        self.window = int(round(self.config.window_s * SAMPLE_RATE))  # samples per analysis window
        self.hop = int(round(self.config.hop_s * SAMPLE_RATE))  # samples between estimates
        self.hop -= self.hop % HOP  # whole 10 ms frames, so per-hop tracks concatenate
        self.hop = max(self.hop, HOP)
        self.baseline = SpeakerBaseline()
        self._history: deque[EmotionResult] = deque(maxlen=self.config.history_size)
        self.reset_stream()

    # -- whole utterances -------------------------------------------------------------------------------------
    def analyze(self, audio: np.ndarray | str | Path, sample_rate: int | None = None) -> EmotionResult:
        """Emotion of one recording: a file path, or an array with its ``sample_rate`` (required for arrays).

        A file's samples reach the backend as stored, so its quality report counts the NaN/Inf that arrived."""
        if isinstance(audio, (str, Path)):
            samples, rate = read_audio_file(audio)
        else:
            if sample_rate is None:
                raise AudioInputError("analyze(array) needs sample_rate (Hz)")
            samples, rate = np.asarray(audio), sample_rate
        return self.backend.analyze(samples, rate)

    def calibrate_baseline(self, samples: Sequence[np.ndarray | str | Path],
                           sample_rate: int = SAMPLE_RATE) -> SpeakerBaseline:
        """Set the speaker's neutral pitch and rate from a few (3-5) neutral recordings; returns the baseline.

        Items are arrays at ``sample_rate`` or audio file paths. Afterwards ``pitch_elevated`` and
        ``speech_rate_category`` are judged against it. With the prosodic backend the recordings also seed the
        speaker's feature normalisation (a ``FrameTrackBackend``'s ``calibrate``), so the classifier reads later
        speech relative to this voice.
        """
        if not samples:
            raise AudioInputError("calibrate_baseline needs at least one recording")
        pitches, rates = [], []
        for s in samples:
            audio, rate = load_wav(s) if isinstance(s, (str, Path)) else (np.asarray(s), sample_rate)
            x, _ = prepare(audio, rate)
            track = track_with_fallback(x)
            features, m = analyze_track(track)
            if self._framed is not None:
                self._framed.calibrate(features, None)
            if m.pitch_mean_hz > 0:
                pitches.append(m.pitch_mean_hz)
            if m.speech_rate_sps > 0:
                rates.append(m.speech_rate_sps)
        if not pitches:
            raise AudioInputError("no voiced speech in the calibration recordings")
        self.baseline = SpeakerBaseline(float(np.median(pitches)), float(np.median(rates)) if rates else 4.0)
        if self._framed is not None:
            self._framed.calibrate(None, self.baseline)
        log.info("speaker baseline: %.0f Hz, %.1f syllables/s", self.baseline.pitch_hz, self.baseline.rate_sps)
        return self.baseline

    # -- streaming ----------------------------------------------------------------------------------------------
    def reset_stream(self) -> None:
        """Start a new stream at time 0 (history is kept; use ``clear_history`` to drop it)."""
        self._pending = np.zeros(0, np.float32)  # samples not yet part of a completed hop
        self._window_audio = np.zeros(0, np.float32)  # the last `window` samples
        self._tracks: deque[np.ndarray] = deque()  # per-hop frame tracks covering the window
        self._stream_pos = 0  # samples consumed into completed hops

    def clear_history(self) -> None:
        self._history.clear()

    def hops_ready(self, n_samples: int) -> int:
        """How many hops feeding ``n_samples`` more (16 kHz) would complete: 0 means that call only buffers, cheap
        enough for the event loop (the session then skips the worker thread)."""
        return (len(self._pending) + n_samples) // self.hop

    def analyze_streaming(self, chunk: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[EmotionResult]:
        """Feed audio; returns one result per completed hop once the window is full (none before 1 s).

        Each result covers the last ``window_s`` of the stream, stamped ``stream_start_s``/``stream_end_s``.
        Silent windows yield a zero-confidence result flagged silent, computed without pitch or spectrum.
        """
        x, _ = prepare(chunk, sample_rate)
        self._pending = np.concatenate([self._pending, x])
        out = []
        while len(self._pending) >= self.hop:
            hop_audio, self._pending = self._pending[: self.hop], self._pending[self.hop:]
            result = self._process_hop(hop_audio)
            if result is not None:
                self._history.append(result)
                out.append(result)
        return out

    def _process_hop(self, hop_audio: np.ndarray) -> EmotionResult | None:
        context = self._window_audio[-CONTEXT:]
        silent = 20.0 * math.log10(rms(hop_audio) + 1e-10) < SILENCE_DBFS
        framed = self._framed
        if framed is not None:
            track = silent_track(hop_audio) if silent else compute_track(hop_audio, left_context=context)
            self._tracks.append(track)
        self._window_audio = np.concatenate([self._window_audio, hop_audio])[-self.window:]
        self._stream_pos += len(hop_audio)
        hops_per_window = max(1, self.window // self.hop)
        while len(self._tracks) > hops_per_window:
            self._tracks.popleft()
        if self._stream_pos < self.window:
            return None
        end_s = self._stream_pos / SAMPLE_RATE
        start_s = end_s - len(self._window_audio) / SAMPLE_RATE
        quality = measure_quality(self._window_audio, SAMPLE_RATE, min_duration_s=self.config.min_duration_s)
        if quality.is_silent:
            result = unusable_result(self.backend.name, quality, self.config.window_s)
        elif framed is not None:
            result = framed.result_from_track(np.concatenate(list(self._tracks)), quality, self.config.window_s)
        else:
            result = self.backend.analyze(self._window_audio, SAMPLE_RATE)
        return replace(result, stream_start_s=start_s, stream_end_s=end_s)

    # -- history and trajectory ---------------------------------------------------------------------------------
    def get_history(self, window_s: float | None = None) -> list[EmotionResult]:
        """Streaming results, oldest first; with ``window_s`` only those ending in the last ``window_s`` of stream."""
        items = list(self._history)
        if window_s is None or not items:
            return items
        latest = max(r.stream_end_s or 0.0 for r in items)
        return [r for r in items if (r.stream_end_s or 0.0) >= latest - window_s]

    def get_trajectory(self) -> str:
        """Where the speaker's emotion is heading over the last ``trajectory_window_s``."""
        return trajectory([r for r in self.get_history(self.config.trajectory_window_s) if r.reliable])


def trajectory(results: Sequence[EmotionResult]) -> str:
    """improving | declining | stable | volatile, from the valence and arousal of time-stamped results.

    Volatile: valence or arousal swings widely. Otherwise the valence slope (per second, least squares) decides:
    rising valence is improving, falling valence declining (rising arousal with negative valence also declines).
    """
    if len(results) < 3:
        return "stable"
    t = np.array([(r.stream_end_s if r.stream_end_s is not None else r.created_at) for r in results], float)
    v = np.array([r.dimensions.valence for r in results])
    a = np.array([r.dimensions.arousal for r in results])
    if v.std() > VOLATILE_STD or a.std() > 2 * VOLATILE_STD * 0.6:
        return "volatile"
    if np.ptp(t) <= 0:
        return "stable"
    v_slope = float(np.polyfit(t, v, 1)[0])
    a_slope = float(np.polyfit(t, a, 1)[0])
    if v_slope > TREND_SLOPE:
        return "improving"
    if v_slope < -TREND_SLOPE or (a_slope > TREND_SLOPE and v.mean() < -0.2):
        return "declining"
    return "stable"


def aggregate_results(results: Sequence[EmotionResult]) -> EmotionResult | None:
    """Confidence-weighted aggregate of a turn's window results (None when none is usable).

    Dimensions and category scores are confidence-weighted means; markers, quality and backend come from the
    most confident window; the span covers all windows; confidence is the weighted mean confidence.
    """
    usable = [r for r in results if r.quality.usable and r.confidence > 0]
    if not usable:
        return None
    w = np.array([r.confidence for r in usable])
    w = w / w.sum()
    dims = PrimaryDimensions(
        valence=float(np.dot(w, [r.dimensions.valence for r in usable])),
        arousal=float(np.dot(w, [r.dimensions.arousal for r in usable])),
        dominance=float(np.dot(w, [r.dimensions.dominance for r in usable])),
    )
    scores: dict[EmotionCategory, float] = {}
    for wi, r in zip(w, usable, strict=True):
        for p in r.predictions:
            scores[p.emotion] = scores.get(p.emotion, 0.0) + float(wi) * p.confidence
    for cat, share in dimensions_to_likely_emotions(dims):
        scores[cat] = scores.get(cat, 0.0) + 0.05 * share  # the aggregate's own position breaks ties
    confidence = float(np.dot(w, [r.confidence for r in usable]))
    best = max(usable, key=lambda r: r.confidence)
    preds = predictions_from_scores(list(scores.items()), _strength_of(best), confidence_cap=confidence)
    starts = [r.stream_start_s for r in usable if r.stream_start_s is not None]
    ends = [r.stream_end_s for r in usable if r.stream_end_s is not None]
    return replace(best, dimensions=dims, predictions=preds, confidence=confidence,
                   duration_s=float(sum(r.duration_s for r in usable)) if not starts else max(ends) - min(starts),
                   stream_start_s=min(starts) if starts else None, stream_end_s=max(ends) if ends else None,
                   embedding=None)


def _strength_of(result: EmotionResult) -> float:
    """Back out an intensity score from the label of the top prediction (slight .2 ... intense .9)."""
    return {"slight": 0.2, "moderate": 0.45, "strong": 0.7, "intense": 0.9}[result.primary.intensity.value]
