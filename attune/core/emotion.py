"""The emotion vocabulary: 26 categories in 5 groups, the three primary dimensions, prosodic markers and results.

Every emotion backend returns an ``EmotionResult``; the agent reads its ``to_context_string()`` into the prompt and
the server sends ``to_dict()`` to clients. Dimension conventions: valence -1..1, arousal 0..1, dominance 0..1.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum

from attune.core.audio import AudioQuality


class EmotionGroup(StrEnum):
    NEGATIVE_ACTIVATED = "negative_activated"
    NEGATIVE_DEACTIVATED = "negative_deactivated"
    POSITIVE_ACTIVATED = "positive_activated"
    POSITIVE_DEACTIVATED = "positive_deactivated"
    NEUTRAL = "neutral"


class EmotionCategory(StrEnum):
    # negative-activated
    ANXIOUS = "anxious"
    NERVOUS = "nervous"
    FRUSTRATED = "frustrated"
    ANGRY = "angry"
    STRESSED = "stressed"
    PANICKED = "panicked"
    IMPATIENT = "impatient"
    # negative-deactivated
    SAD = "sad"
    TIRED = "tired"
    BORED = "bored"
    DISAPPOINTED = "disappointed"
    LONELY = "lonely"
    HOPELESS = "hopeless"
    # positive-activated
    EXCITED = "excited"
    HAPPY = "happy"
    PLAYFUL = "playful"
    FLIRTY = "flirty"
    CURIOUS = "curious"
    CONFIDENT = "confident"
    AMUSED = "amused"
    # positive-deactivated
    CALM = "calm"
    CONTENT = "content"
    THOUGHTFUL = "thoughtful"
    AFFECTIONATE = "affectionate"
    # neutral
    NEUTRAL = "neutral"
    CONFUSED = "confused"


E = EmotionCategory
G = EmotionGroup

CATEGORY_GROUP: dict[EmotionCategory, EmotionGroup] = {
    **{c: G.NEGATIVE_ACTIVATED for c in (E.ANXIOUS, E.NERVOUS, E.FRUSTRATED, E.ANGRY, E.STRESSED, E.PANICKED,
                                         E.IMPATIENT)},
    **{c: G.NEGATIVE_DEACTIVATED for c in (E.SAD, E.TIRED, E.BORED, E.DISAPPOINTED, E.LONELY, E.HOPELESS)},
    **{c: G.POSITIVE_ACTIVATED for c in (E.EXCITED, E.HAPPY, E.PLAYFUL, E.FLIRTY, E.CURIOUS, E.CONFIDENT,
                                         E.AMUSED)},
    **{c: G.POSITIVE_DEACTIVATED for c in (E.CALM, E.CONTENT, E.THOUGHTFUL, E.AFFECTIONATE)},
    **{c: G.NEUTRAL for c in (E.NEUTRAL, E.CONFUSED)},
}

# (valence -1..1, arousal 0..1, dominance 0..1) for each category, after Russell's circumplex and the
# Warriner et al. (2013) affective norms, rescaled to these ranges. Anxious and angry share valence and
# arousal and differ in dominance, which is what the dominance refinement uses.
CATEGORY_VAD: dict[EmotionCategory, tuple[float, float, float]] = {
    E.ANXIOUS: (-0.55, 0.72, 0.25),
    E.NERVOUS: (-0.40, 0.65, 0.30),
    E.FRUSTRATED: (-0.55, 0.68, 0.55),
    E.ANGRY: (-0.70, 0.85, 0.80),
    E.STRESSED: (-0.50, 0.75, 0.40),
    E.PANICKED: (-0.75, 0.95, 0.15),
    E.IMPATIENT: (-0.35, 0.62, 0.65),
    E.SAD: (-0.70, 0.25, 0.25),
    E.TIRED: (-0.25, 0.10, 0.30),
    E.BORED: (-0.30, 0.15, 0.45),
    E.DISAPPOINTED: (-0.55, 0.35, 0.35),
    E.LONELY: (-0.60, 0.20, 0.20),
    E.HOPELESS: (-0.85, 0.20, 0.10),
    E.EXCITED: (0.70, 0.90, 0.65),
    E.HAPPY: (0.80, 0.65, 0.65),
    E.PLAYFUL: (0.60, 0.70, 0.60),
    E.FLIRTY: (0.55, 0.60, 0.60),
    E.CURIOUS: (0.35, 0.60, 0.50),
    E.CONFIDENT: (0.50, 0.60, 0.85),
    E.AMUSED: (0.65, 0.62, 0.60),
    E.CALM: (0.35, 0.15, 0.55),
    E.CONTENT: (0.60, 0.25, 0.60),
    E.THOUGHTFUL: (0.20, 0.30, 0.50),
    E.AFFECTIONATE: (0.70, 0.35, 0.50),
    E.NEUTRAL: (0.00, 0.40, 0.50),
    E.CONFUSED: (-0.15, 0.50, 0.25),
}

RELIABLE_CONFIDENCE = 0.4  # below this the strategy answers plainly (held out, such readings were mostly wrong)
NEUTRAL_BAND = 0.15  # |valence| below this, with mid arousal, reads as the neutral group
AROUSAL_SPLIT = 0.5  # arousal at or above this is "activated"


class Intensity(StrEnum):
    SLIGHT = "slight"
    MODERATE = "moderate"
    STRONG = "strong"
    INTENSE = "intense"

    @classmethod
    def from_score(cls, score: float) -> Intensity:
        """Map a 0..1 strength to a label: <0.3 slight, <0.55 moderate, <0.8 strong, else intense."""
        s = min(max(float(score), 0.0), 1.0)
        if s < 0.3:
            return cls.SLIGHT
        if s < 0.55:
            return cls.MODERATE
        if s < 0.8:
            return cls.STRONG
        return cls.INTENSE

    @property
    def typical_score(self) -> float:
        """A representative 0..1 strength inside this label's band (the inverse of ``from_score``)."""
        return {"slight": 0.2, "moderate": 0.45, "strong": 0.7, "intense": 0.9}[self.value]

    @property
    def adverb(self) -> str:
        return {"slight": "slightly", "moderate": "moderately", "strong": "strongly", "intense": "intensely"}[
            self.value
        ]


def _clamp(x: float, lo: float, hi: float) -> float:
    if not math.isfinite(x):
        return (lo + hi) / 2.0
    return min(max(x, lo), hi)


@dataclass(frozen=True)
class PrimaryDimensions:
    """Valence -1..1, arousal 0..1, dominance 0..1; out-of-range values are clamped on construction."""

    valence: float = 0.0
    arousal: float = 0.4
    dominance: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "valence", _clamp(float(self.valence), -1.0, 1.0))
        object.__setattr__(self, "arousal", _clamp(float(self.arousal), 0.0, 1.0))
        object.__setattr__(self, "dominance", _clamp(float(self.dominance), 0.0, 1.0))

    @property
    def quadrant(self) -> EmotionGroup:
        """The group these dimensions fall in: neutral near zero valence with mid arousal, else by sign/level."""
        if abs(self.valence) < NEUTRAL_BAND and 0.3 <= self.arousal <= 0.6:
            return EmotionGroup.NEUTRAL
        activated = self.arousal >= AROUSAL_SPLIT
        if self.valence < 0:
            return EmotionGroup.NEGATIVE_ACTIVATED if activated else EmotionGroup.NEGATIVE_DEACTIVATED
        return EmotionGroup.POSITIVE_ACTIVATED if activated else EmotionGroup.POSITIVE_DEACTIVATED

    def to_dict(self) -> dict[str, float]:
        return {"valence": round(self.valence, 3), "arousal": round(self.arousal, 3),
                "dominance": round(self.dominance, 3)}


def dimensions_to_likely_emotions(
    dims: PrimaryDimensions, k: int = 3, temperature: float = 0.05
) -> list[tuple[EmotionCategory, float]]:
    """The ``k`` most likely categories for a point in valence-arousal-dominance space, with scores summing to 1.

    Categories in the point's quadrant are preferred (their distance is halved); within a quadrant dominance
    separates, for example, anxious (low) from angry (high) at high arousal and negative valence.
    """
    group = dims.quadrant
    scored: list[tuple[EmotionCategory, float]] = []
    for cat, (v, a, d) in CATEGORY_VAD.items():
        # Valence spans 2 units, arousal and dominance 1: halve valence so each axis weighs alike.
        dist2 = ((dims.valence - v) / 2.0) ** 2 + (dims.arousal - a) ** 2 + 0.7 * (dims.dominance - d) ** 2
        if CATEGORY_GROUP[cat] is group:
            dist2 *= 0.5
        scored.append((cat, -dist2 / temperature))
    top = max(s for _, s in scored)
    weights = [(c, math.exp(s - top)) for c, s in scored]
    total = sum(w for _, w in weights)
    ranked = sorted(((c, w / total) for c, w in weights), key=lambda cw: cw[1], reverse=True)
    return ranked[:k]


@dataclass(frozen=True)
class ProsodicMarkers:
    """Measured voice features. Pitch in Hz, rate in syllables per second, ratios 0..1."""

    pitch_mean_hz: float = 0.0
    pitch_std_hz: float = 0.0
    pitch_elevated: bool = False
    speech_rate_sps: float = 0.0
    speech_rate_category: str = "normal"  # slow | normal | fast
    pause_ratio: float = 0.0
    voice_tremor: float = 0.0  # 0..1, from jitter
    breathiness: float = 0.0  # 0..1, from spectral flatness / harmonicity
    hesitation_count: int = 0
    energy_variance: float = 0.0  # variance of the speech frames' amplitude relative to its mean
    level_dbfs: float = -200.0  # RMS level of the speech frames in dBFS (-200 = no speech found)

    def descriptions(self) -> list[str]:
        """Short human phrases for the notable markers, most telling first."""
        out = []
        if self.pitch_elevated:
            out.append("elevated pitch")
        if self.speech_rate_category == "fast":
            out.append("speaking quickly")
        elif self.speech_rate_category == "slow":
            out.append("speaking slowly")
        if self.voice_tremor >= 0.5:
            out.append("shaky voice")
        if self.breathiness >= 0.5:
            out.append("breathy voice")
        if self.hesitation_count >= 3:
            out.append("hesitant")
        if self.pause_ratio >= 0.4:
            out.append("long pauses")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "pitch_mean_hz": round(self.pitch_mean_hz, 1),
            "pitch_std_hz": round(self.pitch_std_hz, 1),
            "pitch_elevated": self.pitch_elevated,
            "speech_rate_sps": round(self.speech_rate_sps, 2),
            "speech_rate_category": self.speech_rate_category,
            "pause_ratio": round(self.pause_ratio, 3),
            "voice_tremor": round(self.voice_tremor, 3),
            "breathiness": round(self.breathiness, 3),
            "hesitation_count": self.hesitation_count,
            "energy_variance": round(self.energy_variance, 4),
            "level_dbfs": round(self.level_dbfs, 2),
        }


@dataclass(frozen=True)
class EmotionPrediction:
    emotion: EmotionCategory
    confidence: float  # 0..1
    intensity: Intensity

    @property
    def group(self) -> EmotionGroup:
        return CATEGORY_GROUP[self.emotion]

    def to_dict(self) -> dict[str, object]:
        return {"emotion": self.emotion.value, "confidence": round(self.confidence, 3),
                "intensity": self.intensity.value}


@dataclass(frozen=True)
class EmotionResult:
    """One emotion estimate for a stretch of audio.

    ``predictions`` holds the top three categories, most likely first. ``confidence`` is the backend's honest
    belief in the top prediction (the prosodic backend caps it). ``stream_start_s``/``stream_end_s`` place a
    streaming result on the stream's clock; ``created_at`` is wall-clock time (``time.time()``).
    """

    dimensions: PrimaryDimensions
    predictions: tuple[EmotionPrediction, ...]
    markers: ProsodicMarkers
    quality: AudioQuality
    duration_s: float
    backend: str
    confidence: float
    stream_start_s: float | None = None
    stream_end_s: float | None = None
    created_at: float = field(default_factory=time.time)
    embedding: tuple[float, ...] | None = None

    @property
    def primary(self) -> EmotionPrediction:
        return self.predictions[0]

    @property
    def reliable(self) -> bool:
        """Whether the result is worth acting on: usable audio and a confidence above chance."""
        return self.quality.usable and self.confidence >= RELIABLE_CONFIDENCE

    def to_context_string(self) -> str:
        """LLM-ready text, e.g. ``[Voice sounds moderately anxious (elevated pitch, speaking quickly),
        possibly also stressed]``; says plainly when the voice could not be read."""
        if not self.quality.usable:
            return f"[Voice emotion unclear ({', '.join(self.quality.issues) or 'unusable audio'})]"
        if self.confidence < RELIABLE_CONFIDENCE:
            return "[Voice emotion unclear (low confidence)]"
        top = self.primary
        text = f"Voice sounds {top.intensity.adverb} {top.emotion.value}"
        cues = self.markers.descriptions()[:3]
        if cues:
            text += f" ({', '.join(cues)})"
        if len(self.predictions) > 1 and self.predictions[1].confidence >= 0.5 * top.confidence:
            text += f", possibly also {self.predictions[1].emotion.value}"
        return f"[{text}]"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "backend": self.backend,
            "confidence": round(self.confidence, 3),
            "dimensions": self.dimensions.to_dict(),
            "quadrant": self.dimensions.quadrant.value,
            "predictions": [p.to_dict() for p in self.predictions],
            "markers": self.markers.to_dict(),
            "quality": self.quality.to_dict(),
            "duration_s": round(self.duration_s, 3),
            "created_at": self.created_at,
            "context": self.to_context_string(),
        }
        if self.stream_start_s is not None and self.stream_end_s is not None:
            out["audio_start_ms"] = int(round(self.stream_start_s * 1000))
            out["audio_end_ms"] = int(round(self.stream_end_s * 1000))
        return out


def predictions_from_scores(
    scores: list[tuple[EmotionCategory, float]], strength: float, confidence_cap: float = 1.0
) -> tuple[EmotionPrediction, ...]:
    """Top-3 predictions from (category, probability) pairs; ``strength`` (0..1) sets the intensity labels."""
    ranked = sorted(scores, key=lambda cs: cs[1], reverse=True)[:3]
    return tuple(
        EmotionPrediction(c, min(float(p), confidence_cap), Intensity.from_score(strength * (1.0 if i == 0 else 0.8)))
        for i, (c, p) in enumerate(ranked)
    )
