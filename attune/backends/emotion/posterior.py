"""From class posteriors to an ``EmotionResult``: the nine classes spread over the 26-category taxonomy, their
valence/arousal/dominance, and the confidence every learned backend reports.

The strategy acts on the group of the primary category, so the primary is taken from the group with the
highest summed posterior (the group5 decision the benchmarks score) and ``confidence`` is that group's
posterior, discounted for poor audio and for voices unlike the training data. Shared by the prosodic, Whisper
and hybrid backends.
"""

from __future__ import annotations

import numpy as np

from attune.backends.emotion.labels import CLASSES, GROUP5, grouping_matrix
from attune.core.audio import AudioQuality
from attune.core.emotion import (
    CATEGORY_GROUP,
    CATEGORY_VAD,
    EmotionCategory,
    EmotionPrediction,
    EmotionResult,
    Intensity,
    PrimaryDimensions,
    ProsodicMarkers,
    dimensions_to_likely_emotions,
)

CONFIDENCE_CAP = 0.95  # acted-speech training data: leave room for what it has not heard
E = EmotionCategory

# Each class spread over the taxonomy categories it reads as.
CLASS_CATEGORIES: dict[str, dict[EmotionCategory, float]] = {
    "anger": {E.ANGRY: 0.6, E.FRUSTRATED: 0.3, E.IMPATIENT: 0.1},
    "fear": {E.ANXIOUS: 0.45, E.NERVOUS: 0.35, E.PANICKED: 0.2},
    "happiness": {E.HAPPY: 0.6, E.AMUSED: 0.2, E.PLAYFUL: 0.2},
    "boredom": {E.BORED: 0.6, E.TIRED: 0.4},
    "sadness": {E.SAD: 0.6, E.DISAPPOINTED: 0.25, E.HOPELESS: 0.15},
    "disgust": {E.FRUSTRATED: 0.5, E.IMPATIENT: 0.2, E.STRESSED: 0.3},
    "neutral": {E.NEUTRAL: 0.8, E.THOUGHTFUL: 0.2},
    "calm": {E.CALM: 0.6, E.CONTENT: 0.4},
    "surprise": {E.EXCITED: 0.6, E.CURIOUS: 0.4},
}
# (valence, arousal, dominance) of each class.
CLASS_VAD: dict[str, tuple[float, float, float]] = {
    "anger": (-0.65, 0.85, 0.8),
    "fear": (-0.6, 0.8, 0.2),
    "happiness": (0.75, 0.72, 0.65),
    "boredom": (-0.3, 0.15, 0.45),
    "sadness": (-0.7, 0.2, 0.25),
    "disgust": (-0.6, 0.55, 0.6),
    "neutral": (0.0, 0.4, 0.5),
    "calm": (0.35, 0.15, 0.55),
    "surprise": (0.45, 0.85, 0.5),
}
VAD_MATRIX = np.array([CLASS_VAD[c] for c in CLASSES])  # (len(CLASSES), 3)
_GROUPS = tuple(GROUP5)
_G5 = grouping_matrix(GROUP5)


def dimensions_from_probs(probs: np.ndarray) -> PrimaryDimensions:
    v, a, d = np.asarray(probs, np.float64) @ VAD_MATRIX
    return PrimaryDimensions(float(v), float(a), float(d))


def group_posteriors(probs: np.ndarray) -> np.ndarray:
    """Posterior of each of the five groups (GROUP5 order) for one row of class posteriors."""
    return np.asarray(probs, np.float64) @ _G5


def category_scores(probs: np.ndarray, dims: PrimaryDimensions) -> list[tuple[EmotionCategory, float]]:
    """26-category scores (sum 1) from class posteriors, blended with the dimension-space neighbours; the
    categories of the most probable group rank first, so the primary carries the group5 decision."""
    scores = dict.fromkeys(CATEGORY_VAD, 0.0)
    for cls, p in zip(CLASSES, probs, strict=True):
        for cat, share in CLASS_CATEGORIES[cls].items():
            scores[cat] += 0.85 * float(p) * share
    for cat, p in dimensions_to_likely_emotions(dims, k=len(CATEGORY_VAD)):
        scores[cat] += 0.15 * p
    top_group = _GROUPS[int(group_posteriors(probs).argmax())]
    return sorted(scores.items(), key=lambda cs: (CATEGORY_GROUP[cs[0]].value == top_group, cs[1]), reverse=True)


def result_from_probs(probs: np.ndarray, *, markers: ProsodicMarkers, quality: AudioQuality, duration_s: float,
                      backend: str, trust: float = 1.0, dims: PrimaryDimensions | None = None) -> EmotionResult:
    """The EmotionResult of calibrated class posteriors ``probs`` (len(CLASSES),).

    ``trust`` (0..1) multiplies the confidence: audio quality, little speech, an unfamiliar voice.
    ``dims`` overrides the dimensions read from the posteriors.
    """
    p = np.asarray(probs, np.float64)
    dims = dims or dimensions_from_probs(p)
    confidence = min(float(group_posteriors(p).max()), CONFIDENCE_CAP) * min(max(trust, 0.0), 1.0)
    strength = min(1.0, float(np.hypot(dims.valence, 2.0 * (dims.arousal - 0.4))) * float(p.max()) * 1.3)
    ranked = category_scores(p, dims)[:3]  # ordered by group first: not re-sorted by score
    preds = tuple(EmotionPrediction(c, min(float(s), confidence), Intensity.from_score(strength * (1.0 if i == 0
                                                                                                   else 0.8)))
                  for i, (c, s) in enumerate(ranked))
    return EmotionResult(dims, preds, markers, quality, duration_s, backend, confidence)
