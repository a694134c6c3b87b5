"""Prosody parameters: the eight clamped dimensions that describe how a reply should sound.

The strategy chooses them, the TTS backends map what they can natively (rate, variation), and the prosody
applicator (DSP) implements every dimension on the audio.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

# (low, high, neutral) per dimension. Units: semitones, multipliers, dB, 0..1 amounts.
RANGES: dict[str, tuple[float, float, float]] = {
    "pitch_shift_semitones": (-6.0, 6.0, 0.0),
    "pitch_variance": (0.5, 2.0, 1.0),
    "speech_rate": (0.7, 1.5, 1.0),
    "pause_multiplier": (0.5, 2.0, 1.0),
    "volume_db": (-6.0, 6.0, 0.0),
    "dynamic_range": (0.5, 1.5, 1.0),
    "breathiness": (0.0, 1.0, 0.0),
    "tremolo_amount": (0.0, 1.0, 0.0),
}


@dataclass(frozen=True)
class ProsodyParameters:
    """How a reply should sound; every value is clamped to its range on construction (NaN -> neutral)."""

    pitch_shift_semitones: float = 0.0
    pitch_variance: float = 1.0
    speech_rate: float = 1.0
    pause_multiplier: float = 1.0
    volume_db: float = 0.0
    dynamic_range: float = 1.0
    breathiness: float = 0.0
    tremolo_amount: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            lo, hi, neutral = RANGES[f.name]
            value = float(getattr(self, f.name))
            object.__setattr__(self, f.name, neutral if not math.isfinite(value) else min(max(value, lo), hi))

    @property
    def is_neutral(self) -> bool:
        return all(getattr(self, name) == neutral for name, (_, _, neutral) in RANGES.items())

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}
