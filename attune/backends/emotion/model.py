"""The learned part of the emotion backends: per-speaker feature normalisation and a logistic model.

``SpeakerNormalizer`` z-scores feature vectors against a speaker's statistics (a population prior blended with
a running estimate). ``EmotionModel`` is an L2-regularised, class-balanced multinomial logistic regression over
normalised features, trained with numpy/scipy (``train_model``) over the nine classes of both dev corpora
(``labels.CLASSES``). The prosodic backend ships one over the DSP features as JSON (``prosodic_model.json``);
the Whisper head one over pooled encoder states as NPZ (``whisper_head.npz``); ``feature_kind`` says which.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attune.backends.emotion.features import FEATURE_NAMES, N_FEATURES
from attune.backends.emotion.labels import AROUSAL, CLASSES
from attune.core.errors import EmotionError

MODEL_PATH = Path(__file__).with_name("prosodic_model.json")
HIGH_AROUSAL = AROUSAL["high"]
LOW_AROUSAL = AROUSAL["low"]
PROSODIC = "prosodic"  # feature_kind of the DSP feature vector (FEATURE_NAMES)
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
    """Multinomial logistic regression: ``probabilities(z)`` for normalised features z, shape (d,) or (n, d).

    ``feature_kind`` names the feature vector (``"prosodic"``: FEATURE_NAMES; ``"whisper-tiny.en-meanstd"``:
    pooled encoder states). ``ood_scale`` is the 95th percentile, over the training rows, of the mean squared
    population z-score: rows far beyond it are unlike anything the model was trained on.
    """

    weights: np.ndarray  # (d, len(CLASSES))
    bias: np.ndarray  # (len(CLASSES),)
    prior_mean: np.ndarray  # population mean of the raw features
    prior_std: np.ndarray  # pooled within-speaker std of the raw features
    info: dict[str, object]
    temperature_known: float = 1.0  # softmax temperature fitted on held-out speakers with their own statistics
    temperature_stranger: float = 1.0  # ... and on held-out speakers normalised by the population prior only
    feature_kind: str = PROSODIC
    ood_scale: float = 0.0  # 0 = not measured (no out-of-distribution discount)
    human_weights: np.ndarray | None = None  # logistic "a human voice, not a synthetic one" on population z
    human_bias: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def temperature(self, familiarity: float) -> float:
        """Calibration temperature for a speaker the normaliser knows this well (0 stranger .. 1 known)."""
        f = min(max(familiarity, 0.0), 1.0)
        return self.temperature_stranger + (self.temperature_known - self.temperature_stranger) * f

    def logits(self, z: np.ndarray) -> np.ndarray:
        return np.atleast_2d(z) @ self.weights + self.bias

    def probabilities(self, z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Class posteriors for normalised features z of shape (d,) or (n, d)."""
        p = softmax(self.logits(z) / temperature)
        return p[0] if np.ndim(z) == 1 else p

    def normalizer(self) -> SpeakerNormalizer:
        return SpeakerNormalizer(self.prior_mean, self.prior_std)

    def familiar_factor(self, x: np.ndarray) -> float:
        """1 for features like the training rows, falling towards 0 far outside them (noise: the distance;
        synthetic voices: the human-voice detector, where the model has one)."""
        z = (np.asarray(x, np.float64) - self.prior_mean) / self.prior_std
        factor = 1.0
        if self.ood_scale > 0:
            excess = float(np.mean(z * z)) / self.ood_scale
            factor = 1.0 if excess <= 1.0 else float(np.exp(-(excess - 1.0) * 2.0))
        if self.human_weights is not None:
            factor *= self.human_probability(z)
        return factor

    def human_probability(self, z: np.ndarray) -> float:
        """P(a human voice) for population z-scores (1.0 without a detector)."""
        if self.human_weights is None:
            return 1.0
        s = float(np.clip(np.clip(z, -6.0, 6.0) @ self.human_weights + self.human_bias, -30.0, 30.0))
        return 1.0 / (1.0 + float(np.exp(-s)))

    def to_json(self) -> dict[str, object]:
        names = list(FEATURE_NAMES) if self.feature_kind == PROSODIC else None
        return {
            "format": "attune-emotion-logreg-2",
            "feature_kind": self.feature_kind,
            "feature_names": names,
            "classes": list(CLASSES),
            "weights": np.round(self.weights, 6).tolist(),
            "bias": np.round(self.bias, 6).tolist(),
            "prior_mean": np.round(self.prior_mean, 6).tolist(),
            "prior_std": np.round(self.prior_std, 6).tolist(),
            "temperature_known": round(self.temperature_known, 4),
            "temperature_stranger": round(self.temperature_stranger, 4),
            "ood_scale": round(self.ood_scale, 4),
            "human_weights": None if self.human_weights is None else np.round(self.human_weights, 6).tolist(),
            "human_bias": round(self.human_bias, 6),
            "info": self.info,
        }

    def save(self, path: str | Path) -> None:
        """JSON for ``.json`` paths; for ``.npz`` float32 arrays plus the same header as JSON text (smaller)."""
        path = Path(path)
        if path.suffix == ".npz":
            header = {k: v for k, v in self.to_json().items()
                      if k not in ("weights", "bias", "prior_mean", "prior_std", "human_weights")}
            human = np.zeros(0) if self.human_weights is None else self.human_weights
            np.savez_compressed(path, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                                prior_mean=self.prior_mean.astype(np.float32),
                                prior_std=self.prior_std.astype(np.float32), human_weights=human.astype(np.float32),
                                header=np.array(json.dumps(header)))
            return
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH, feature_kind: str | None = PROSODIC) -> EmotionModel:
        """Read a model file (JSON or NPZ); EmotionError when it is unreadable or made for other features.

        ``feature_kind`` (None: any) is what the caller will feed it.
        """
        try:
            if Path(path).suffix == ".npz":
                with np.load(path, allow_pickle=False) as npz:
                    data: dict[str, Any] = json.loads(str(npz["header"]))
                    arrays = {k: np.asarray(npz[k], np.float64) for k in ("weights", "bias", "prior_mean",
                                                                          "prior_std")}
                    if "human_weights" in npz.files and npz["human_weights"].size:
                        data["human_weights"] = np.asarray(npz["human_weights"], np.float64)
            else:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
                arrays = {k: np.asarray(data[k], np.float64) for k in ("weights", "bias", "prior_mean",
                                                                       "prior_std")}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmotionError(f"cannot read emotion model {path}: {exc}") from exc
        kind = str(data.get("feature_kind", PROSODIC))
        retrain = "; retrain it with `run_agent.py train-emotion`"
        if data.get("classes") != list(CLASSES) or (feature_kind is not None and kind != feature_kind):
            raise EmotionError(f"emotion model {path} was trained on other features or classes{retrain}")
        if kind == PROSODIC and data.get("feature_names") != list(FEATURE_NAMES):
            raise EmotionError(f"emotion model {path} was trained on other features{retrain}")
        w = arrays["weights"]
        d = N_FEATURES if kind == PROSODIC else len(arrays["prior_mean"])
        if w.shape != (d, len(CLASSES)) or arrays["prior_mean"].shape != (d,):
            raise EmotionError(f"emotion model {path} has weights of shape {w.shape}")
        human = data.get("human_weights")
        human_w = None if human is None else np.asarray(human, np.float64)
        if human_w is not None and human_w.shape != (d,):
            raise EmotionError(f"emotion model {path} has a human-voice detector of shape {human_w.shape}")
        return cls(w, arrays["bias"], arrays["prior_mean"], arrays["prior_std"], dict(data.get("info") or {}),
                   float(data.get("temperature_known", 1.0)), float(data.get("temperature_stranger", 1.0)),
                   kind, float(data.get("ood_scale", 0.0)), human_w, float(data.get("human_bias", 0.0)))


def softmax(logits: np.ndarray) -> np.ndarray:
    s = np.atleast_2d(logits)
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature that minimises held-out negative log-likelihood (Guo et al. 2017)."""
    rows = np.arange(len(labels))

    def nll(t: float) -> float:
        s = logits / t
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-np.mean(logp[rows, labels]))

    from scipy.optimize import minimize_scalar  # training only: scipy.optimize stays off the runtime path

    return float(minimize_scalar(nll, bounds=(0.25, 10.0), method="bounded").x)


def fit_logreg(z: np.ndarray, y: np.ndarray, l2: float, k: int = len(CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced, L2-penalised multinomial logistic regression: (weights (d, k), bias (k,)).

    Classes are weighted inversely to their frequency so the loss matches the unweighted average recall the
    models are judged by; classes absent from ``y`` get no weight and a low bias.
    """
    n, p = z.shape
    counts = np.bincount(y, minlength=k).astype(np.float64)
    present = counts > 0
    sample_w = (n / (int(present.sum()) * np.maximum(counts, 1.0)))[y]
    onehot = np.eye(k)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: p * k].reshape(p, k), theta[p * k:]
        prob = softmax(z @ w + b)
        nll = -np.sum(sample_w * np.log(np.sum(onehot * prob, axis=1) + 1e-12)) / n
        g = (prob - onehot) * sample_w[:, None] / n
        grad = np.concatenate([(z.T @ g + 2.0 * l2 * w).ravel(), g.sum(axis=0)])
        return float(nll + l2 * np.sum(w * w)), grad

    theta0 = np.zeros(p * k + k)
    theta0[p * k:] = np.where(present, 0.0, -8.0)
    from scipy.optimize import minimize  # training only: scipy.optimize stays off the runtime path

    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x[: p * k].reshape(p, k), res.x[p * k:]


def train_model(features: np.ndarray, labels: np.ndarray, speakers: Sequence[str], *, l2: float = 0.003,
                info: dict[str, object] | None = None, feature_kind: str = PROSODIC) -> EmotionModel:
    """Fit the logistic model on raw feature rows, class indices (into CLASSES) and speaker ids.

    Each row is seen twice: z-scored against its speaker's own statistics (how a warm detector reads a known
    voice) and against the population prior (how a fresh detector reads a stranger's first turn), so one model
    serves both; the normaliser's blend moves between the two as a call goes on.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, int)
    d = N_FEATURES if feature_kind == PROSODIC else x.shape[-1]
    if x.ndim != 2 or x.shape[1] != d or len(y) != len(x) or len(x) == 0:
        raise EmotionError(f"training data must be (n, {d}) features with n labels, got {x.shape}")
    spk = np.asarray(speakers)
    within = np.sqrt(np.mean([x[spk == s].var(axis=0) for s in np.unique(spk)], axis=0))
    within = np.maximum(within, STD_FLOOR)
    mean = x.mean(axis=0)
    z_pop = np.clip((x - mean) / within, -6.0, 6.0)
    z = np.vstack([normalize_by_speaker(x, speakers), z_pop])
    w, b = fit_logreg(z, np.concatenate([y, y]), l2)
    ood = float(np.percentile(np.mean(((x - mean) / within) ** 2, axis=1), 95))
    meta = {"l2": l2, "n_files": len(y), "speakers": sorted(map(str, np.unique(spk))), **(info or {})}
    return EmotionModel(w, b, mean, within, meta, feature_kind=feature_kind, ood_scale=ood)


def fit_human_detector(model: EmotionModel, human: np.ndarray, synthetic: np.ndarray, l2: float = 0.01
                       ) -> tuple[np.ndarray, float]:
    """(weights, bias) of a class-balanced logistic "human, not synthetic" detector on population z-scores."""
    z = np.clip((np.vstack([human, synthetic]) - model.prior_mean) / model.prior_std, -6.0, 6.0)
    y = np.r_[np.ones(len(human), int), np.zeros(len(synthetic), int)]
    w, b = fit_logreg(z, y, l2, k=2)
    return w[:, 1] - w[:, 0], float(b[1] - b[0])
