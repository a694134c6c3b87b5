"""The default emotion backend: DSP features -> speaker-normalised -> 7-class model -> dimensions and top-3.

``ProsodicBackend.analyze`` takes any audio array; ``result_from_track`` is the cheap path the streaming
detector uses with frame tracks it has already computed. With the shipped model (``prosodic_model.json``)
class posteriors map onto the 26-category taxonomy and the valence/arousal/dominance space; without it a
rule-based mapping from a few normalised features is used and confidence is capped at 0.75.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from attune.backends.emotion.features import (
    FEATURE_NAMES,
    HOP,
    SpeakerBaseline,
    analyze_track,
    track_with_fallback,
)
from attune.backends.emotion.model import MODEL_PATH, EmotionModel, SpeakerNormalizer
from attune.backends.emotion.posterior import (  # noqa: F401  (re-exported: the class mapping lives there)
    CLASS_CATEGORIES,
    CLASS_VAD,
    CONFIDENCE_CAP,
    category_scores,
    result_from_probs,
)
from attune.config import Config, EmotionConfig
from attune.core.audio import SAMPLE_RATE, AudioQuality, measure_quality, prepare
from attune.core.emotion import (
    EmotionResult,
    PrimaryDimensions,
    ProsodicMarkers,
    dimensions_to_likely_emotions,
    predictions_from_scores,
)
from attune.core.errors import EmotionError

log = logging.getLogger("attune.emotion.prosodic")

RULE_CONFIDENCE_CAP = 0.75  # without a learned model the estimate is a heuristic; never claim more
MODEL_CONFIDENCE_CAP = 0.9  # acted-speech training data: leave room for what it has not heard

# Rule fallback: population means and within-speaker stds of the features it reads (EmoDB dev speakers).
RULE_PRIOR: dict[str, tuple[float, float]] = {
    "f0_mean_st": (10.1, 5.0), "f0_std_st": (2.8, 0.9), "f0_range_st": (7.2, 2.7),
    "energy_std_db": (6.8, 1.8), "speech_rate_sps": (4.5, 1.0), "alpha_ratio_db": (-10.8, 5.0),
    "hammarberg_db": (20.5, 5.1), "hnr_db": (10.2, 1.9), "centroid_khz": (1.05, 0.34),
}


@functools.lru_cache(maxsize=4)
def _load_model(path: str) -> EmotionModel:
    """One shared, read-only copy of each model file (a server builds one backend per session)."""
    return EmotionModel.load(path)


def _rule_normalizer() -> SpeakerNormalizer:
    mean = np.zeros(len(FEATURE_NAMES))
    std = np.ones(len(FEATURE_NAMES))
    for name, (m, s) in RULE_PRIOR.items():
        i = FEATURE_NAMES.index(name)
        mean[i], std[i] = m, s
    return SpeakerNormalizer(mean, std)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 30.0), -30.0)))


def rule_dimensions(z: np.ndarray) -> tuple[PrimaryDimensions, float]:
    """Dimensions from normalised features by fixed rules (loud, high, bright, fast = aroused); and a strength."""
    f = dict(zip(FEATURE_NAMES, z, strict=True))
    arousal_z = (0.5 * f["f0_mean_st"] + 0.3 * f["f0_std_st"] + 0.2 * f["energy_std_db"] + 0.4 * f["alpha_ratio_db"]
                 - 0.3 * f["hammarberg_db"] + 0.3 * f["centroid_khz"] + 0.2 * f["speech_rate_sps"])
    # Varied pitch with a clear voice reads positive; flat, breathy, slow speech negative (weak cues).
    valence_z = 0.3 * f["f0_range_st"] + 0.2 * f["hnr_db"] + 0.1 * f["speech_rate_sps"] - 0.1 * abs(arousal_z)
    dominance_z = 0.3 * f["energy_std_db"] - 0.3 * f["f0_mean_st"] + 0.2 * f["alpha_ratio_db"]
    dims = PrimaryDimensions(
        valence=math.tanh(0.5 * valence_z),
        arousal=_sigmoid(0.8 * arousal_z - 0.4),
        dominance=_sigmoid(0.8 * dominance_z),
    )
    return dims, min(1.0, abs(arousal_z) / 3.0 + abs(valence_z) / 4.0)


def quality_factor(quality: AudioQuality, speech_s: float) -> float:
    """How much to trust an estimate from this audio: clipping, low level and little speech lower it."""
    factor = 1.0
    if quality.is_clipped:
        factor *= 0.7
    if quality.rms_dbfs < -45.0:
        factor *= 0.7
    if quality.non_finite_fraction > 0:
        factor *= 0.8
    return factor * min(1.0, 0.4 + speech_s / 1.0)


class ProsodicBackend:
    """Pure-DSP emotion backend. Keeps one speaker's running normalisation and baseline between calls."""

    name = "prosodic"

    def __init__(self, config: EmotionConfig | None = None, model_path: str | Path | None = MODEL_PATH) -> None:
        self.config = config or EmotionConfig()
        self.model: EmotionModel | None = None
        if model_path is not None:
            try:
                self.model = _load_model(str(Path(model_path).resolve()))
            except EmotionError as exc:
                log.warning("prosodic backend falls back to rules: %s", exc)
        self.normalizer = self.model.normalizer() if self.model else _rule_normalizer()
        self.baseline = SpeakerBaseline()
        self.adapt = True  # fold each analysed utterance into the speaker's running statistics
        self.last_probs: np.ndarray | None = None  # class posteriors of the last learned estimate (for fusion)
        self.last_familiar = 1.0  # the model's familiar_factor of those features (for fusion)

    @classmethod
    def from_config(cls, config: Config) -> ProsodicBackend:
        return cls(config.emotion)

    @property
    def learned(self) -> bool:
        return self.model is not None

    def calibrate(self, features: np.ndarray | None, baseline: SpeakerBaseline | None) -> None:
        """Seed the speaker's normalisation with one neutral recording's features; set the pitch/rate baseline."""
        if features is not None and features.any():
            self.normalizer.update(features)
        if baseline is not None:
            self.baseline = baseline

    def reset_speaker(self) -> None:
        self.normalizer.reset()
        self.baseline = SpeakerBaseline()

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        """Emotion of one stretch of audio (any rate, int or float, mono or stereo; bad input raises)."""
        x, bad = prepare(audio, sample_rate)
        quality = measure_quality(x, SAMPLE_RATE, non_finite_fraction=bad,
                                  min_duration_s=self.config.min_duration_s)
        if quality.is_silent or quality.too_short:
            return self.unusable_result(quality, len(x) / SAMPLE_RATE)
        return self.result_from_track(track_with_fallback(x), quality, len(x) / SAMPLE_RATE)

    def unusable_result(self, quality: AudioQuality, duration_s: float, markers: ProsodicMarkers | None = None
                        ) -> EmotionResult:
        return unusable_result(self.name, quality, duration_s, markers)

    def class_probabilities(self, features: np.ndarray, normalizer: SpeakerNormalizer | None = None) -> np.ndarray:
        """Posteriors over CLASSES for one raw feature vector (requires the model)."""
        if self.model is None:
            raise EmotionError("the prosodic model file is missing; class posteriors need it", backend=self.name)
        return self.model.probabilities((normalizer or self.normalizer).normalize(features))

    def result_from_track(self, track: np.ndarray, quality: AudioQuality, duration_s: float) -> EmotionResult:
        """The result for a frame track already computed (the streaming detector's cheap path)."""
        features, markers = analyze_track(track, self.baseline)
        if not features.any():
            return self.unusable_result(quality, duration_s, markers)
        if markers.pitch_mean_hz <= 0:  # sound without a single voiced frame: noise, not a voice to read
            return self.unusable_result(replace(quality, no_speech=True), duration_s, markers)
        speech_s = markers_speech_s(track, features)
        z = self.normalizer.normalize(features)
        familiarity = self.normalizer.familiarity
        if self.adapt:
            self.normalizer.update(features)
        factor = quality_factor(quality, speech_s)
        if self.model is not None:
            # Held-out calibration: a stranger's posteriors are flatter than a familiar speaker's.
            probs = self.model.probabilities(z, self.model.temperature(familiarity))
            self.last_probs = probs
            self.last_familiar = self.model.familiar_factor(features)
            trust = factor * self.last_familiar
            return result_from_probs(probs, markers=markers, quality=quality, duration_s=duration_s,
                                     backend=self.name, trust=min(trust, MODEL_CONFIDENCE_CAP / CONFIDENCE_CAP))
        dims, strength = rule_dimensions(z)
        scores = dimensions_to_likely_emotions(dims, k=3)
        confidence = RULE_CONFIDENCE_CAP * min(1.0, 0.35 + strength) * factor
        preds = predictions_from_scores(scores, strength, confidence_cap=confidence)
        return EmotionResult(dims, preds, markers, quality, duration_s, self.name, confidence)


def unusable_result(backend: str, quality: AudioQuality, duration_s: float,
                    markers: ProsodicMarkers | None = None) -> EmotionResult:
    """A neutral, zero-confidence result for audio that cannot be read (silent, too short, no speech)."""
    dims = PrimaryDimensions()
    preds = predictions_from_scores(dimensions_to_likely_emotions(dims), 0.0, confidence_cap=0.0)
    return EmotionResult(dims, preds, markers or ProsodicMarkers(), quality, duration_s, backend, 0.0)


def markers_speech_s(track: np.ndarray, features: np.ndarray) -> float:
    """Seconds of speech in a track, from its voiced fraction and span (cheap; features already computed)."""
    pause = features[FEATURE_NAMES.index("pause_ratio")]
    return float(len(track) * HOP / SAMPLE_RATE * (1.0 - pause))
