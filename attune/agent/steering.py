"""Steering speech along a measured emotion axis, in the prosodic domain.

The original work found an "emotion axis" in a speech model's latent space (angry minus calm, averaged per
speaker). Here the same idea is measured where it can be: per speaker of an EmoDB-layout folder, the difference
between the prosodic markers of anger (W) and neutral (N) recordings, averaged over speakers. ``steer`` moves
speech along that axis by ``delta`` in -1..1 through ``ProsodyParameters`` and the prosody DSP.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from attune.core.audio import load_wav
from attune.core.errors import AttuneError, AudioInputError
from attune.core.prosody import ProsodyParameters

DEFAULT_AXIS_PATH = Path(__file__).resolve().parents[1] / "references" / "emotion_axis.json"
ANGER, NEUTRAL = "W", "N"  # EmoDB emotion letters: W = Wut (anger), N = neutral
PAUSE_FLOOR = 0.02  # added to pause ratios before taking their log ratio (some clips have no pauses)


@dataclass(frozen=True)
class EmotionAxis:
    """Anger minus neutral, in the units ProsodyParameters uses: semitones, log ratios and dB."""

    pitch_semitones: float
    log_pitch_variance: float  # log of the ratio of relative F0 spreads (std / mean)
    log_rate: float
    level_db: float
    log_pause: float
    log_energy_spread: float = 0.0  # log ratio of the amplitude envelope's variance (squared coefficient)
    speakers: tuple[str, ...] = ()

    def params(self, delta: float) -> ProsodyParameters:
        """The prosody that moves speech ``delta`` (-1..1, clamped) along the axis: +1 toward anger.

        ``level_db`` is recorded but not applied: EmoDB's files are peak-normalised one by one, so their RMS
        difference reflects anger's higher crest factor, not vocal effort (measured: anger -3.8 dB RMS).
        """
        d = min(max(float(delta), -1.0), 1.0) if math.isfinite(float(delta)) else 0.0
        return ProsodyParameters(
            pitch_shift_semitones=d * self.pitch_semitones,
            pitch_variance=math.exp(d * self.log_pitch_variance),
            speech_rate=math.exp(d * self.log_rate),
            pause_multiplier=math.exp(d * self.log_pause),
            # The envelope's variance grows with the square of the level spread the DSP scales.
            dynamic_range=math.exp(d * 0.5 * self.log_energy_spread),
        )

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["speakers"] = list(self.speakers)
        return out


def _marker_vector(path: Path) -> np.ndarray:
    from attune.backends.emotion.features import extract_markers

    audio, rate = load_wav(path)
    m = extract_markers(audio, rate)
    return np.array([m.pitch_mean_hz, m.pitch_std_hz, m.speech_rate_sps, m.level_dbfs, m.pause_ratio,
                     m.energy_variance])


def _difference(anger: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """One speaker's axis from the mean marker vectors of its anger and neutral clips."""
    (pw, sw, rw, lw, qw, ew), (pn, sn, rn, ln, qn, en) = anger, neutral
    return np.array([
        12.0 * math.log2(pw / pn),
        math.log((sw / pw) / (sn / pn)),
        math.log(rw / rn),
        lw - ln,
        math.log((qw + PAUSE_FLOOR) / (qn + PAUSE_FLOOR)),
        math.log(ew / en),
    ])


def compute_axis(data_dir: str | Path) -> tuple[EmotionAxis, dict[str, list[float]]]:
    """The axis averaged over every speaker with both anger and neutral clips, and each speaker's own.

    File names follow EmoDB: speaker = first two characters, emotion letter = sixth. Raises AttuneError when no
    speaker has both.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise AudioInputError(f"data folder not found: {folder}")
    groups: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for path in sorted(folder.glob("*.wav")):
        if len(path.stem) >= 6 and path.stem[5] in (ANGER, NEUTRAL):
            groups[(path.stem[:2], path.stem[5])].append(_marker_vector(path))
    per_speaker: dict[str, list[float]] = {}
    for speaker in sorted({s for s, _ in groups}):
        anger, neutral = groups.get((speaker, ANGER)), groups.get((speaker, NEUTRAL))
        if anger and neutral:
            diff = _difference(np.mean(anger, axis=0), np.mean(neutral, axis=0))
            if np.all(np.isfinite(diff)):
                per_speaker[speaker] = [round(float(v), 4) for v in diff]
    if not per_speaker:
        raise AttuneError(f"no speaker in {folder} has both anger (W) and neutral (N) recordings")
    mean = np.mean(list(per_speaker.values()), axis=0)
    p, v, r, level, q, e = (round(float(x), 4) for x in mean)
    axis = EmotionAxis(p, v, r, level, q, e, speakers=tuple(per_speaker))
    return axis, per_speaker


def save_axis(axis: EmotionAxis, per_speaker: dict[str, list[float]], path: str | Path, source: str) -> None:
    data = {"axis": axis.to_dict(), "per_speaker": per_speaker, "source": source,
            "order": ["pitch_semitones", "log_pitch_variance", "log_rate", "level_db", "log_pause",
                      "log_energy_spread"],
            "measured_with": "attune.backends.emotion.features.extract_markers"}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_axis(path: str | Path = DEFAULT_AXIS_PATH) -> EmotionAxis:
    """The axis saved by ``emotion-axis``; raises AttuneError for a missing or malformed file."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))["axis"]
        return EmotionAxis(float(raw["pitch_semitones"]), float(raw["log_pitch_variance"]), float(raw["log_rate"]),
                           float(raw["level_db"]), float(raw["log_pause"]), float(raw.get("log_energy_spread", 0.0)),
                           tuple(raw.get("speakers", ())))
    except FileNotFoundError:
        raise AttuneError(f"emotion axis file not found: {p}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise AttuneError(f"emotion axis file {p} is malformed: {exc}") from exc


@functools.lru_cache(maxsize=1)
def _shipped_axis() -> EmotionAxis:
    return load_axis()


def steer(audio: np.ndarray, sample_rate: int, delta: float, axis: EmotionAxis | None = None) -> np.ndarray:
    """``audio`` moved ``delta`` (-1..1) along the axis (default: the shipped one, read once): +1 toward anger,
    -1 away."""
    from attune.agent.prosody_dsp import apply_to_audio

    return apply_to_audio(audio, sample_rate, (axis or _shipped_axis()).params(delta))


def measure_steering(data_dir: str | Path, axis: EmotionAxis | None = None) -> dict[str, float]:
    """Arousal read by the prosodic emotion backend on the neutral (N) clips of an EmoDB-layout folder, steered
    -1, 0 and +1, with the backend's speaker adaptation off so every clip is read against the same population
    statistics. Returns the mean arousal per delta and the fraction of clips that +1 raises and -1 lowers."""
    from attune.backends.emotion.prosodic import ProsodicBackend

    backend = ProsodicBackend()
    backend.adapt = False
    clips = sorted(q for q in Path(data_dir).glob("*.wav") if len(q.stem) >= 6 and q.stem[5] == "N")
    if not clips:
        raise AudioInputError(f"no neutral (N) EmoDB clips in {data_dir}")
    arousal: dict[float, list[float]] = {-1.0: [], 0.0: [], 1.0: []}
    for path in clips:
        x, sr = load_wav(path)
        for delta in arousal:
            arousal[delta].append(backend.analyze(steer(x, sr, delta, axis), sr).dimensions.arousal)
    low, mid, high = (np.array(arousal[d]) for d in (-1.0, 0.0, 1.0))
    return {"clips": float(len(clips)), "arousal_minus1": float(low.mean()), "arousal_0": float(mid.mean()),
            "arousal_plus1": float(high.mean()), "raised_by_plus1": float(np.mean(high > mid)),
            "lowered_by_minus1": float(np.mean(low < mid))}
