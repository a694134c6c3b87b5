"""emotion2vec backend: the official speech-emotion model (data2vec 2.0 audio, 9-class head) from weights the
user supplies (no registry ships them), run in MLX where it is installed and in numpy otherwise.

``emotion.model_path`` names either a converted ``.npz`` (``python -m attune.backends.emotion.e2v_weights
model.pt out.npz``) or an official checkpoint, converted on load (``.pt`` needs torch). Without the file the
backend raises ``BackendUnavailable`` with the reason, and the registry falls back to prosodic. The mapping
from logits to an ``EmotionResult`` (``result_from_logits``) is plain numpy.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from attune.backends.emotion.features import extract_markers
from attune.config import Config, EmotionConfig
from attune.core.audio import SAMPLE_RATE, AudioQuality, measure_quality, prepare
from attune.core.emotion import (
    EmotionCategory,
    EmotionResult,
    PrimaryDimensions,
    ProsodicMarkers,
    predictions_from_scores,
)
from attune.core.errors import BackendUnavailable, EmotionError

log = logging.getLogger("attune.emotion.emotion2vec")

INSTALL_HINT = ("python -m attune.backends.emotion.e2v_weights model.pt weights.npz  # then set emotion.model_path; "
                "pip install \"mlx[cpu]==0.32.4\" for MLX (numpy otherwise)")
MIN_SAMPLES = 400  # the conv stack needs 25 ms of audio for one frame
CONFIDENCE_CAP = 0.95
E = EmotionCategory
# emotion2vec+ label order, with each label's taxonomy category and (valence, arousal, dominance).
E2V_LABELS: tuple[tuple[str, EmotionCategory | None, tuple[float, float, float]], ...] = (
    ("angry", E.ANGRY, (-0.65, 0.85, 0.8)),
    ("disgusted", E.FRUSTRATED, (-0.6, 0.45, 0.6)),
    ("fearful", E.ANXIOUS, (-0.6, 0.8, 0.2)),
    ("happy", E.HAPPY, (0.75, 0.7, 0.65)),
    ("neutral", E.NEUTRAL, (0.0, 0.4, 0.5)),
    ("other", None, (0.0, 0.4, 0.5)),
    ("sad", E.SAD, (-0.7, 0.2, 0.25)),
    ("surprised", E.EXCITED, (0.3, 0.8, 0.5)),
    ("unknown", None, (0.0, 0.4, 0.5)),
)


def result_from_logits(logits: np.ndarray, quality: AudioQuality, duration_s: float, backend: str = "emotion2vec",
                       markers: ProsodicMarkers | None = None) -> EmotionResult:
    """EmotionResult from one row of nine emotion2vec+ logits (softmax, VAD as the posterior-weighted mean)."""
    z = np.asarray(logits, np.float64).reshape(-1)
    if z.size != len(E2V_LABELS) or not np.isfinite(z).all():
        raise EmotionError(f"emotion2vec model returned {z.size} logits, expected {len(E2V_LABELS)} finite values",
                           backend=backend)
    p = np.exp(z - z.max())
    p /= p.sum()
    vad = np.array([v for _, _, v in E2V_LABELS]).T @ p
    dims = PrimaryDimensions(float(vad[0]), float(vad[1]), float(vad[2]))
    scores = [(cat, float(pi)) for (_, cat, _), pi in zip(E2V_LABELS, p, strict=True) if cat is not None]
    confidence = min(float(max(s for _, s in scores)), CONFIDENCE_CAP)
    preds = predictions_from_scores(scores, confidence, confidence_cap=confidence)
    return EmotionResult(dims, preds, markers or ProsodicMarkers(), quality, duration_s, backend, confidence)


class Emotion2VecBackend:
    """emotion2vec on the CPU (or Apple's GPU through MLX); ``engine`` says which implementation runs."""

    name = "emotion2vec"

    def __init__(self, config: EmotionConfig | None = None, *, prefer_mlx: bool = True) -> None:
        from attune.backends.emotion.e2v_weights import E2VConfig, load_converted

        self.config = config or EmotionConfig()
        if not self.config.model_path:
            raise BackendUnavailable("emotion2vec needs weights: set emotion.model_path to a converted .npz or an "
                                     "official checkpoint (no registry ships them)", install_hint=INSTALL_HINT,
                                     backend=self.name)
        path = Path(self.config.model_path).expanduser()
        if not path.is_file():
            raise BackendUnavailable(f"emotion2vec weights not found at {path}", install_hint=INSTALL_HINT,
                                     backend=self.name)
        try:
            self.weights = load_converted(path)
            self.cfg = E2VConfig.from_weights(self.weights)
        except EmotionError as exc:
            raise BackendUnavailable(f"cannot load emotion2vec weights {path}: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        if self.cfg.n_classes != len(E2V_LABELS):
            raise BackendUnavailable(f"emotion2vec head has {self.cfg.n_classes} classes, expected "
                                     f"{len(E2V_LABELS)}", backend=self.name)
        self.engine = "numpy"
        self._mlx = None
        if prefer_mlx:
            try:
                from attune.backends.emotion.e2v_mlx import E2VModel

                self._mlx = E2VModel(self.weights, self.cfg)
                self.engine = "mlx"
            except ImportError as exc:
                log.info("MLX not available (%s); emotion2vec runs on the numpy reference", exc)

    def logits(self, audio16k: np.ndarray) -> np.ndarray:
        if self._mlx is not None:
            return self._mlx.logits(audio16k)
        from attune.backends.emotion import e2v_numpy

        return e2v_numpy.logits(self.weights, self.cfg, audio16k)

    @classmethod
    def from_config(cls, config: Config) -> Emotion2VecBackend:
        return cls(config.emotion)

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        x, bad = prepare(audio, sample_rate)
        quality = measure_quality(x, SAMPLE_RATE, non_finite_fraction=bad, min_duration_s=self.config.min_duration_s)
        markers = extract_markers(x, SAMPLE_RATE)
        if len(x) < MIN_SAMPLES:
            return replace(result_from_logits(np.zeros(len(E2V_LABELS)), quality, len(x) / SAMPLE_RATE, self.name,
                                              markers), confidence=0.0)
        result = result_from_logits(self.logits(x), quality, len(x) / SAMPLE_RATE, self.name, markers)
        if not quality.usable:
            result = replace(result, confidence=0.0)
        return result
