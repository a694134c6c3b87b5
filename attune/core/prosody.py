"""Prosody parameters: the eight clamped dimensions that describe how a reply should sound.

The strategy chooses them, the TTS backends map what they can natively (rate, variation), and the prosody
applicator (DSP) implements every dimension on the audio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from xml.sax.saxutils import escape as xml_escape

from attune.core.emotion import CATEGORY_VAD, EmotionCategory

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
        for name, raw in asdict(self).items():
            lo, hi, neutral = RANGES[name]
            value = float(raw)
            object.__setattr__(self, name, neutral if not math.isfinite(value) else min(max(value, lo), hi))

    @property
    def is_neutral(self) -> bool:
        values = asdict(self)
        return all(values[name] == neutral for name, (_, _, neutral) in RANGES.items())

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}

    def neutralized(self, *names: str) -> ProsodyParameters:
        """A copy with the named dimensions set to neutral: what is left for the DSP after an engine has
        applied those natively (e.g. Piper's length_scale already gave the rate: ``neutralized("speech_rate")``).
        Raises ValueError for an unknown dimension name."""
        unknown = [n for n in names if n not in RANGES]
        if unknown:
            raise ValueError(f"unknown prosody dimension {unknown[0]!r} (known: {', '.join(RANGES)})")
        return replace(self, **{n: RANGES[n][2] for n in names})

    def scaled(self, intensity: float) -> ProsodyParameters:
        """This profile moved toward neutral: intensity 0 is neutral, 1 is the profile itself (clamped 0..1)."""
        k = min(max(float(intensity), 0.0), 1.0) if math.isfinite(float(intensity)) else 0.0
        values = asdict(self)
        return ProsodyParameters(**{
            name: neutral + k * (values[name] - neutral) for name, (_, _, neutral) in RANGES.items()
        })


def blend(weighted: Sequence[tuple[ProsodyParameters, float]]) -> ProsodyParameters:
    """The weighted mean of several parameter sets (weights need not sum to 1; negative weights are an error)."""
    if not weighted:
        return ProsodyParameters()
    if any(w < 0 or not math.isfinite(w) for _, w in weighted):
        raise ValueError("blend weights must be finite and non-negative")
    total = sum(w for _, w in weighted)
    if total <= 0:
        return ProsodyParameters()
    rows = [(asdict(p), w) for p, w in weighted]
    return ProsodyParameters(**{name: sum(v[name] * w for v, w in rows) / total for name in RANGES})


E = EmotionCategory


def _p(pitch: float, var: float, rate: float, pause: float, vol: float, dyn: float, breath: float = 0.0,
       trem: float = 0.0) -> ProsodyParameters:
    return ProsodyParameters(pitch, var, rate, pause, vol, dyn, breath, trem)


# One profile per category, at full intensity, in the field order
# (pitch st, pitch variance, rate, pause multiplier, volume dB, dynamic range, breathiness, tremolo).
# Directions follow the cue tables of Juslin & Laukka (2003, Psychological Bulletin 129:770, table 7: F0 mean,
# F0 variability, speech rate, intensity, intensity variability, voice quality per emotion) and Scherer (2003,
# Speech Communication 40:227, table 6: predicted and observed changes for each emotion family).
PROFILES: dict[EmotionCategory, ProsodyParameters] = {
    # Fear family (J&L: high F0, fast rate, irregular voice / jitter; Scherer: F0 up, rate up, tremor).
    E.ANXIOUS: _p(2.0, 1.15, 1.12, 0.8, 1.0, 1.1, 0.2, 0.35),
    E.NERVOUS: _p(1.5, 1.15, 1.08, 1.2, 0.0, 1.0, 0.2, 0.3),  # plus hesitations: more pauses
    E.PANICKED: _p(5.0, 1.5, 1.35, 0.5, 4.0, 1.3, 0.3, 0.7),  # extreme fear: much higher, fast, loud, tremor
    E.STRESSED: _p(1.5, 1.1, 1.12, 0.75, 1.5, 1.1, 0.1, 0.2),  # Scherer: stress raises F0 and rate
    # Anger family (J&L "anger": high F0 mean and variability, fast, loud, wide intensity range, few pauses).
    E.ANGRY: _p(2.5, 1.4, 1.15, 0.7, 4.5, 1.35),
    E.FRUSTRATED: _p(1.0, 1.2, 1.08, 0.85, 2.0, 1.2),  # Scherer: irritation, a milder cold anger
    E.IMPATIENT: _p(1.0, 1.1, 1.2, 0.6, 2.0, 1.15),  # fast rate and clipped pauses dominate
    # Sadness family (J&L "sadness": low F0, low F0 variability, slow, quiet, narrow intensity range,
    # lax / breathy voice; longer pauses; Scherer: sadness lowers F0, energy and rate).
    E.SAD: _p(-2.5, 0.65, 0.82, 1.5, -3.5, 0.8, 0.4, 0.1),
    E.HOPELESS: _p(-3.0, 0.55, 0.78, 1.7, -4.5, 0.7, 0.45, 0.1),  # despair in its quiet form: strongest sad cues
    E.LONELY: _p(-2.0, 0.7, 0.85, 1.45, -3.0, 0.8, 0.35, 0.05),
    E.DISAPPOINTED: _p(-1.5, 0.75, 0.9, 1.3, -2.0, 0.85, 0.2),
    E.TIRED: _p(-2.0, 0.6, 0.8, 1.4, -3.0, 0.75, 0.35),  # low arousal: slow, quiet, lax voice
    E.BORED: _p(-1.5, 0.55, 0.88, 1.2, -2.0, 0.8, 0.1),  # Scherer "boredom": low F0, monotone, slow
    # Joy family (J&L "happiness": high F0 mean and variability, fast, loud, bright voice).
    E.EXCITED: _p(4.0, 1.6, 1.2, 0.7, 3.5, 1.3, 0.05),  # elation: the strongest joy cues
    E.HAPPY: _p(2.5, 1.4, 1.1, 0.85, 2.0, 1.15, 0.05),
    E.PLAYFUL: _p(3.0, 1.55, 1.1, 0.9, 1.5, 1.2, 0.1),  # wide, "sing-song" F0 range
    E.AMUSED: _p(2.0, 1.35, 1.05, 0.95, 1.0, 1.15, 0.15, 0.1),  # light laughter: breath and tremor
    E.CURIOUS: _p(1.5, 1.3, 1.0, 1.0, 0.5, 1.05),  # interest: raised, more varied F0 (rising contours)
    E.FLIRTY: _p(1.0, 1.3, 0.92, 1.15, -1.0, 1.05, 0.35),  # tenderness-like softness with a varied F0
    E.CONFIDENT: _p(-0.5, 1.1, 0.97, 1.0, 2.5, 1.1),  # dominance: slightly lower F0, louder, steady rate
    # Tenderness / contentment (J&L "tenderness": low F0, low F0 variability, slow, quiet, soft breathy voice).
    E.AFFECTIONATE: _p(-1.0, 0.9, 0.9, 1.2, -2.0, 0.85, 0.3),
    E.CALM: _p(-1.2, 0.8, 0.9, 1.25, -2.0, 0.85, 0.15),  # Scherer "relaxation": lower, slower, softer
    E.CONTENT: _p(-0.5, 0.9, 0.95, 1.1, -1.0, 0.9, 0.1),
    E.THOUGHTFUL: _p(-0.8, 0.85, 0.88, 1.4, -1.5, 0.9, 0.1),  # deliberate: slow with long pauses
    # Neutral group.
    E.NEUTRAL: ProsodyParameters(),
    E.CONFUSED: _p(1.0, 1.2, 0.93, 1.3, 0.0, 1.0),  # uncertainty: raised, rising F0, slower, hesitant pauses
}


def profile_for(emotion: EmotionCategory | str, intensity: float = 1.0) -> ProsodyParameters:
    """The profile of ``emotion`` scaled by ``intensity`` (0..1). Raises ValueError for an unknown emotion name."""
    return PROFILES[_category(emotion)].scaled(intensity)


def _category(emotion: EmotionCategory | str) -> EmotionCategory:
    try:
        return EmotionCategory(str(emotion).lower())
    except ValueError:
        names = ", ".join(c.value for c in EmotionCategory)
        raise ValueError(f"unknown emotion {emotion!r} (known: {names})") from None


# ---- engine mappings ---------------------------------------------------------------------------------------

def to_ssml(text: str, params: ProsodyParameters) -> str:
    """SSML 1.1 for engines that take it: <prosody> pitch (st), range, rate (%), volume (dB); pauses as a
    leading <break> scale are not expressible, so the pause multiplier sets the sentence-final break."""
    pitch = f"{params.pitch_shift_semitones:+.1f}st"
    rng = f"{(params.pitch_variance - 1.0) * 100:+.0f}%"
    rate = f"{params.speech_rate * 100:.0f}%"
    volume = f"{params.volume_db:+.1f}dB"
    brk = int(round(250 * params.pause_multiplier))
    return (f'<speak><prosody pitch="{pitch}" range="{rng}" rate="{rate}" volume="{volume}">'
            f'{xml_escape(text)}</prosody><break time="{brk}ms"/></speak>')


def get_rvc_params(params: ProsodyParameters) -> dict[str, float | int]:
    """Voice-conversion (RVC) controls: ``f0_up_key`` in whole semitones and the playback ``rate``."""
    return {"f0_up_key": int(round(params.pitch_shift_semitones)), "rate": round(params.speech_rate, 3)}


# CSM sampling: more arousal, more varied sampling. The original deployment's values are kept where it gave them.
_CSM_FIXED: dict[EmotionCategory, tuple[float, int]] = {E.HAPPY: (0.8, 30), E.CALM: (0.5, 20), E.EXCITED: (0.9, 35)}


def csm_sampling(emotion: EmotionCategory | str) -> tuple[float, int]:
    """(temperature, top_k) for CSM generation in ``emotion``; others interpolate on the category's arousal."""
    cat = _category(emotion)
    if cat in _CSM_FIXED:
        return _CSM_FIXED[cat]
    arousal = CATEGORY_VAD[cat][1]
    return round(0.45 + 0.5 * arousal, 2), int(round(18 + 18 * arousal))
