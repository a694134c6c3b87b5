"""The learned part: speaker normalisation, the logistic model, temperature calibration and the JSON file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attune.backends.emotion.features import N_FEATURES
from attune.backends.emotion.model import (
    CLASSES,
    MODEL_PATH,
    EmotionModel,
    SpeakerNormalizer,
    fit_temperature,
    normalize_by_speaker,
    train_model,
)

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def test_normalizer_moves_from_prior_to_the_speaker() -> None:
    norm = SpeakerNormalizer(np.zeros(2), np.ones(2), prior_weight=4.0)
    x = np.array([10.0, -10.0])
    assert norm.familiarity == 0.0
    np.testing.assert_allclose(norm.normalize(x), [6.0, -6.0])  # clipped z-scores against the prior
    rng = np.random.default_rng(0)
    norm.fit(rng.normal([10.0, -10.0], 2.0, size=(400, 2)))
    assert norm.familiarity > 0.98
    mean, std = norm.stats()
    np.testing.assert_allclose(mean, [10.0, -10.0], atol=0.3)
    np.testing.assert_allclose(std, [2.0, 2.0], atol=0.2)
    assert np.abs(norm.normalize(x)).max() < 0.3


def test_normalize_by_speaker_removes_speaker_offsets() -> None:
    rows = np.array([[1.0], [3.0], [101.0], [103.0]])
    z = normalize_by_speaker(rows, ["a", "a", "b", "b"])
    np.testing.assert_allclose(z[:, 0], [-1.0, 1.0, -1.0, 1.0])


def _toy(n_per: int = 20, speakers: tuple[str, ...] = ("s1", "s2", "s3")) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(1)
    feats, labels, spk = [], [], []
    for s_i, s in enumerate(speakers):
        for k in range(len(CLASSES)):
            centre = np.zeros(N_FEATURES)
            centre[k] = 3.0
            centre += 50.0 * s_i  # a speaker offset that normalisation must remove
            feats.append(centre + rng.normal(0, 1.0, size=(n_per, N_FEATURES)))
            labels += [k] * n_per
            spk += [s] * n_per
    return np.vstack(feats), np.array(labels), spk


def test_logistic_model_learns_and_roundtrips(tmp_path: Path) -> None:
    x, y, spk = _toy()
    model = train_model(x, y, spk)
    pred = model.probabilities(normalize_by_speaker(x, spk)).argmax(axis=1)
    assert np.mean(pred == y) > 0.9
    path = tmp_path / "m.json"
    model.save(path)
    again = EmotionModel.load(path)
    np.testing.assert_allclose(again.weights, model.weights, atol=1e-5)
    npz = tmp_path / "m.npz"  # the Whisper heads' format: float32 arrays plus the JSON header
    model.save(npz)
    small = EmotionModel.load(npz)
    np.testing.assert_allclose(small.weights, model.weights, atol=1e-5)
    assert small.ood_scale == pytest.approx(model.ood_scale, abs=1e-3) and small.human_weights is None


def test_temperature_fixes_overconfidence() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 500)
    logits = rng.normal(0, 1, (500, 3))
    logits[np.arange(500), labels] += 1.0  # some signal ...
    assert fit_temperature(logits * 8.0, labels) > 4.0  # ... hugely overstated: flatten it
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.6)


@pytest.mark.real
def test_shipped_model_is_calibrated_for_strangers() -> None:
    model = EmotionModel.load(MODEL_PATH)
    assert model.temperature_stranger >= model.temperature_known >= 0.5
    assert model.temperature(0.0) == model.temperature_stranger and model.temperature(1.0) == model.temperature_known
    assert float(model.info["loso_cold_uar"]) > 0.45  # type: ignore[arg-type]
    assert model.info["corpora"] == ["emodb", "ravdess"]
