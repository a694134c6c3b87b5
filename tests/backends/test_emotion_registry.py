"""The emotion backend table: every catalogued backend is built through it; unusable ones fall back to prosodic,
unknown names are configuration errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from attune.backends.base import EmotionBackend, FrameTrackBackend
from attune.backends.emotion import emotion_factory as registry
from attune.backends.emotion.emotion2vec import E2V_LABELS, result_from_logits
from attune.backends.emotion.prosodic import RULE_CONFIDENCE_CAP, ProsodicBackend
from attune.config import Config, EmotionConfig, load_config
from attune.core import catalog
from attune.core.audio import AudioQuality
from attune.core.emotion import EmotionCategory
from attune.core.errors import BackendUnavailable, ConfigError, EmotionError
from tests.emotion_signals import RATE, syllables

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

GOOD = AudioQuality(-20.0, -3.0, 17.0, 0.0, False, False, False)


@pytest.mark.parametrize("name", sorted(catalog.EMOTION))
def test_every_registered_backend_builds_or_says_why(name: str) -> None:
    try:
        backend = registry.build_emotion_backend(name, Config())
    except BackendUnavailable as exc:
        assert str(exc) and exc.backend
        return
    assert isinstance(backend, EmotionBackend) and backend.name == name
    result = backend.analyze(syllables(), RATE)
    assert result.backend == name and len(result.predictions) == 3
    # The catalogue's capability is what the detector will find: the frame-track protocol, or not.
    assert isinstance(backend, FrameTrackBackend) == catalog.EMOTION[name].capabilities.frame_tracks


def test_availability_report() -> None:
    report = registry.get_available_backends()
    assert set(report) == set(catalog.EMOTION)
    assert report["prosodic"][0] is True
    usable, reason = report["emotion2vec"]
    assert usable is False and "model_path" in reason and "e2v_weights" in reason
    for name in ("whisper", "hybrid"):
        assert report[name][0] is True, report[name]  # the shipped heads and the embedded tiny.en encoder


def test_unavailable_backend_falls_back_to_prosodic_with_a_logged_reason(caplog: pytest.LogCaptureFixture,
                                                                           tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = Config(emotion=EmotionConfig(backend="emotion2vec", model_path=str(tmp_path / "missing.pt")))
    with caplog.at_level(logging.WARNING):
        backend = registry.create_emotion_backend(cfg)
        again = registry.create_emotion_backend(cfg)  # the next session: same fallback, not logged again
    assert backend.name == "prosodic" and again.name == "prosodic" and again is not backend
    assert "emotion2vec" in caplog.text and "not found" in caplog.text
    assert caplog.text.count("cannot run here") == 1


def test_an_unknown_backend_name_is_a_configuration_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="emotion.backend.*bogus.*prosodic"):
        load_config(environ={"ATTUNE_EMOTION__BACKEND": "bogus"})
    with pytest.raises(ConfigError, match="emotion.backend.*no-such-backend"):
        registry.create_emotion_backend(Config(), "no-such-backend")
    with pytest.raises(ConfigError, match="emotion.backend"):
        registry.build_emotion_backend("no-such-backend")


def test_emotion2vec_with_an_unreadable_checkpoint_says_why(tmp_path) -> None:  # type: ignore[no-untyped-def]
    weights = tmp_path / "e2v.pt"
    weights.write_bytes(b"not a real checkpoint")
    with pytest.raises(BackendUnavailable, match="cannot load emotion2vec weights"):
        registry.build_emotion_backend("emotion2vec", Config(emotion=EmotionConfig(model_path=str(weights))))


def test_emotion2vec_logits_map_onto_the_taxonomy() -> None:
    logits = np.full(len(E2V_LABELS), -5.0)
    logits[0] = 5.0  # angry
    r = result_from_logits(logits, GOOD, 1.0)
    assert r.primary.emotion is EmotionCategory.ANGRY and r.dimensions.arousal > 0.7 and r.dimensions.valence < 0
    logits = np.full(len(E2V_LABELS), -5.0)
    logits[6] = 5.0  # sad
    assert result_from_logits(logits, GOOD, 1.0).dimensions.arousal < 0.35
    with pytest.raises(EmotionError):
        result_from_logits(np.zeros(3), GOOD, 1.0)


def test_prosodic_without_model_uses_capped_rules(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = ProsodicBackend(model_path=tmp_path / "absent.json")
    assert not backend.learned
    calm = backend.analyze(syllables(f0_hz=110.0, per_s=2.5, amp=0.1), RATE)
    excited = backend.analyze(syllables(f0_hz=300.0, per_s=6.0, amp=0.5) + 0.02 * np.random.default_rng(0)
                              .standard_normal(3 * RATE).astype(np.float32), RATE)
    for r in (calm, excited):
        assert 0.0 < r.confidence <= RULE_CONFIDENCE_CAP and all(p.confidence <= r.confidence for p in r.predictions)
    assert excited.dimensions.arousal > calm.dimensions.arousal + 0.2


def test_prosodic_model_file_for_other_features_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "model.json"
    bad.write_text('{"feature_names": ["x"], "classes": []}')
    assert not ProsodicBackend(model_path=bad).learned
    bad.write_text("{not json")
    assert not ProsodicBackend(model_path=bad).learned
