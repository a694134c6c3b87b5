"""The learned part of the prosodic backend: per-speaker feature normalisation and a 7-class logistic model.

``SpeakerNormalizer`` z-scores feature vectors against a speaker's statistics (a population prior blended with
a running estimate). ``EmotionModel`` is an L2-regularised, class-balanced multinomial logistic regression over
normalised features, trained with numpy/scipy (``train_model``) and shipped as JSON (``prosodic_model.json``);
it predicts the seven EmoDB classes, which ``prosodic.py`` maps onto the 26-category taxonomy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from attune.backends.emotion.features import FEATURE_NAMES, N_FEATURES
from attune.core.errors import EmotionError

MODEL_PATH = Path(__file__).with_name("prosodic_model.json")
EMODB_CODES = "WLEAFTN"  # EmoDB letter of each class, in CLASSES order
CLASSES = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral")
HIGH_AROUSAL = ("anger", "fear", "happiness")  # W, A, F
LOW_AROUSAL = ("boredom", "sadness")  # L, T
PRIOR_WEIGHT = 8.0  # the population prior counts as this many utterances of the speaker
STD_FLOOR = 1e-3


class SpeakerNormalizer:
    """Z-scores features against one speaker: population prior blended with a running (Welford) estimate.

    ``update(x)`` adds an observation; ``normalize(x)`` uses the blend, so a fresh normaliser is pure prior and
    after many observations it is the speaker's own statistics. ``fit(rows)`` replaces the estimate at once.
    """

    def __init__(self, prior_mean: np.ndarray, prior_std: np.ndarray, prior_weight: float = PRIOR_WEIGHT) -> None:
        self.prior_mean = np.asarray(prior_mean, np.float64)
        self.prior_std = np.maximum(np.asarray(prior_std, np.float64), STD_FLOOR)
        self.prior_weight = float(prior_weight)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self._mean = np.zeros_like(self.prior_mean)
        self._m2 = np.zeros_like(self.prior_mean)

    def update(self, x: np.ndarray) -> None:
        self.count += 1
        delta = x - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (x - self._mean)

    def fit(self, rows: np.ndarray) -> None:
        self.reset()
        for row in np.asarray(rows, np.float64):
            self.update(row)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        n, w = float(self.count), self.prior_weight
        mean = (w * self.prior_mean + n * self._mean) / (w + n)
        var = (w * self.prior_std ** 2 + self._m2) / (w + n)  # own scatter around its own mean, prior as pseudo-data
        return mean, np.maximum(np.sqrt(var), STD_FLOOR)

    @property
    def familiarity(self) -> float:
        """0 for a stranger (pure prior) rising towards 1 as the speaker's own statistics take over."""
        return self.count / (self.count + self.prior_weight)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        mean, std = self.stats()
        return np.clip((np.asarray(x, np.float64) - mean) / std, -6.0, 6.0)


def normalize_by_speaker(features: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """Z-score each speaker's rows against that speaker's own mean and std (unsupervised, no labels used)."""
    out = np.zeros_like(features, dtype=np.float64)
    spk = np.asarray(speakers)
    for s in np.unique(spk):
        rows = features[spk == s]
        out[spk == s] = np.clip((rows - rows.mean(0)) / np.maximum(rows.std(0), STD_FLOOR), -6.0, 6.0)
    return out


@dataclass(frozen=True)
class EmotionModel:
    """Multinomial logistic regression: ``probabilities(z)`` for normalised features z, shape (N_FEATURES,)."""

    weights: np.ndarray  # (N_FEATURES, len(CLASSES))
    bias: np.ndarray  # (len(CLASSES),)
    prior_mean: np.ndarray  # population mean of the raw features
    prior_std: np.ndarray  # pooled within-speaker std of the raw features
    info: dict[str, object]
    temperature_known: float = 1.0  # softmax temperature fitted on held-out speakers with their own statistics
    temperature_stranger: float = 1.0  # ... and on held-out speakers normalised by the population prior only

    def temperature(self, familiarity: float) -> float:
        """Calibration temperature for a speaker the normaliser knows this well (0 stranger .. 1 known)."""
        f = min(max(familiarity, 0.0), 1.0)
        return self.temperature_stranger + (self.temperature_known - self.temperature_stranger) * f

    def logits(self, z: np.ndarray) -> np.ndarray:
        return np.atleast_2d(z) @ self.weights + self.bias

    def probabilities(self, z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Class posteriors for normalised features z of shape (N_FEATURES,) or (n, N_FEATURES)."""
        s = self.logits(z) / temperature
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        return p[0] if np.ndim(z) == 1 else p

    def normalizer(self) -> SpeakerNormalizer:
        return SpeakerNormalizer(self.prior_mean, self.prior_std)

    def to_json(self) -> dict[str, object]:
        return {
            "format": "attune-prosodic-logreg-1",
            "feature_names": list(FEATURE_NAMES),
            "classes": list(CLASSES),
            "weights": np.round(self.weights, 6).tolist(),
            "bias": np.round(self.bias, 6).tolist(),
            "prior_mean": np.round(self.prior_mean, 6).tolist(),
            "prior_std": np.round(self.prior_std, 6).tolist(),
            "temperature_known": round(self.temperature_known, 4),
            "temperature_stranger": round(self.temperature_stranger, 4),
            "info": self.info,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> EmotionModel:
        """Read a model file; raises EmotionError when it is unreadable or made for other features."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EmotionError(f"cannot read emotion model {path}: {exc}") from exc
        if data.get("feature_names") != list(FEATURE_NAMES) or data.get("classes") != list(CLASSES):
            raise EmotionError(f"emotion model {path} was trained on other features or classes; retrain it "
                               "with `run_agent.py train-emotion`")
        w = np.asarray(data["weights"], np.float64)
        if w.shape != (N_FEATURES, len(CLASSES)):
            raise EmotionError(f"emotion model {path} has weights of shape {w.shape}")
        return cls(w, np.asarray(data["bias"], np.float64), np.asarray(data["prior_mean"], np.float64),
                   np.asarray(data["prior_std"], np.float64), dict(data.get("info", {})),
                   float(data.get("temperature_known", 1.0)), float(data.get("temperature_stranger", 1.0)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature that minimises held-out negative log-likelihood (Guo et al. 2017)."""
    rows = np.arange(len(labels))

    def nll(t: float) -> float:
        s = logits / t
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-np.mean(logp[rows, labels]))

    return float(minimize_scalar(nll, bounds=(0.25, 10.0), method="bounded").x)


def train_model(features: np.ndarray, labels: np.ndarray, speakers: Sequence[str], *, l2: float = 0.003,
                info: dict[str, object] | None = None) -> EmotionModel:
    """Fit the logistic model on raw feature rows, class indices (into CLASSES) and speaker ids.

    Features are z-scored per speaker first; classes are weighted inversely to their frequency so the loss
    matches the unweighted average recall the model is judged by.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, int)
    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(y) != len(x) or len(x) == 0:
        raise EmotionError(f"training data must be (n, {N_FEATURES}) features with n labels, got {x.shape}")
    z = normalize_by_speaker(x, speakers)
    k = len(CLASSES)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sample_w = (len(y) / (k * np.maximum(counts, 1.0)))[y]
    onehot = np.eye(k)[y]
    p = N_FEATURES

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: p * k].reshape(p, k), theta[p * k:]
        s = z @ w + b
        s -= s.max(axis=1, keepdims=True)
        prob = np.exp(s)
        prob /= prob.sum(axis=1, keepdims=True)
        nll = -np.sum(sample_w * np.log(np.sum(onehot * prob, axis=1) + 1e-12)) / len(y)
        g = (prob - onehot) * sample_w[:, None] / len(y)
        grad = np.concatenate([(z.T @ g + 2.0 * l2 * w).ravel(), g.sum(axis=0)])
        return float(nll + l2 * np.sum(w * w)), grad

    res = minimize(loss, np.zeros(p * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    spk = np.asarray(speakers)
    within = np.sqrt(np.mean([x[spk == s].var(axis=0) for s in np.unique(spk)], axis=0))
    meta = {"l2": l2, "n_files": len(y), "speakers": sorted(map(str, np.unique(spk))), **(info or {})}
    return EmotionModel(res.x[: p * k].reshape(p, k), res.x[p * k:], x.mean(axis=0), within, meta)
