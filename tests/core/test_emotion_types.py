"""The emotion vocabulary: taxonomy, intensity, quadrants, dominance refinement and the LLM context string."""

from __future__ import annotations

import json

import pytest

from attune.core.audio import AudioQuality
from attune.core.emotion import (
    CATEGORY_GROUP,
    CATEGORY_VAD,
    EmotionCategory,
    EmotionGroup,
    EmotionPrediction,
    EmotionResult,
    Intensity,
    PrimaryDimensions,
    ProsodicMarkers,
    dimensions_to_likely_emotions,
    predictions_from_scores,
)

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

E = EmotionCategory
GOOD = AudioQuality(-20.0, -3.0, 17.0, 0.0, False, False, False)


def test_taxonomy_has_26_categories_in_5_groups() -> None:
    assert len(EmotionCategory) == 26 and set(CATEGORY_GROUP) == set(EmotionCategory) == set(CATEGORY_VAD)
    sizes = {g: sum(1 for c in CATEGORY_GROUP.values() if c is g) for g in EmotionGroup}
    assert sizes == {EmotionGroup.NEGATIVE_ACTIVATED: 7, EmotionGroup.NEGATIVE_DEACTIVATED: 6,
                     EmotionGroup.POSITIVE_ACTIVATED: 7, EmotionGroup.POSITIVE_DEACTIVATED: 4, EmotionGroup.NEUTRAL: 2}


@pytest.mark.parametrize(("score", "label"), [(0.0, "slight"), (0.29, "slight"), (0.3, "moderate"),
                                              (0.6, "strong"), (0.8, "intense"), (5.0, "intense"), (-1, "slight")])
def test_intensity_from_score(score: float, label: str) -> None:
    assert Intensity.from_score(score).value == label


def test_dimensions_are_clamped() -> None:
    d = PrimaryDimensions(valence=3.0, arousal=-1.0, dominance=float("nan"))
    assert (d.valence, d.arousal, d.dominance) == (1.0, 0.0, 0.5)


@pytest.mark.parametrize(("v", "a", "group"), [
    (0.0, 0.45, EmotionGroup.NEUTRAL), (0.7, 0.8, EmotionGroup.POSITIVE_ACTIVATED),
    (-0.7, 0.2, EmotionGroup.NEGATIVE_DEACTIVATED), (0.5, 0.2, EmotionGroup.POSITIVE_DEACTIVATED),
    (-0.6, 0.8, EmotionGroup.NEGATIVE_ACTIVATED)])
def test_quadrants(v: float, a: float, group: EmotionGroup) -> None:
    assert PrimaryDimensions(v, a).quadrant is group


def test_dominance_refinement_separates_anxious_from_angry() -> None:
    low = dimensions_to_likely_emotions(PrimaryDimensions(-0.6, 0.8, 0.1))
    high = dimensions_to_likely_emotions(PrimaryDimensions(-0.6, 0.8, 0.85))
    assert low[0][0] in (E.ANXIOUS, E.PANICKED) and high[0][0] is E.ANGRY
    assert sum(p for _, p in dimensions_to_likely_emotions(PrimaryDimensions(), k=26)) == pytest.approx(1.0)


def _result(markers: ProsodicMarkers, confidence: float = 0.6, quality: AudioQuality = GOOD) -> EmotionResult:
    preds = (EmotionPrediction(E.ANXIOUS, 0.5, Intensity.MODERATE), EmotionPrediction(E.STRESSED, 0.3,
                                                                                         Intensity.SLIGHT))
    return EmotionResult(PrimaryDimensions(-0.5, 0.75, 0.3), preds, markers, quality, 1.0, "test", confidence)


def test_context_string_format() -> None:
    text = _result(ProsodicMarkers(pitch_elevated=True, speech_rate_category="fast")).to_context_string()
    assert text == "[Voice sounds moderately anxious (elevated pitch, speaking quickly), possibly also stressed]"
    assert _result(ProsodicMarkers()).to_context_string() == "[Voice sounds moderately anxious, possibly also stressed]"
    assert _result(ProsodicMarkers(), confidence=0.1).to_context_string() == "[Voice emotion unclear (low confidence)]"
    silent = AudioQuality(-90.0, -80.0, 10.0, 0.0, True, False, False)
    assert _result(ProsodicMarkers(), quality=silent).to_context_string() == "[Voice emotion unclear (silent)]"


def test_to_dict_is_json_with_stream_stamps() -> None:
    from dataclasses import replace

    r = replace(_result(ProsodicMarkers()), stream_start_s=1.5, stream_end_s=2.5)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["audio_start_ms"] == 1500 and d["audio_end_ms"] == 2500
    assert d["predictions"][0]["emotion"] == "anxious" and d["quadrant"] == "negative_activated"
    assert "level_dbfs" in d["markers"]


def test_predictions_from_scores_caps_and_orders() -> None:
    preds = predictions_from_scores([(E.SAD, 0.2), (E.ANGRY, 0.9), (E.CALM, 0.5), (E.TIRED, 0.1)], 0.9, 0.6)
    assert [p.emotion for p in preds] == [E.ANGRY, E.CALM, E.SAD]
    assert max(p.confidence for p in preds) == 0.6


def test_typical_score_is_the_inverse_of_from_score() -> None:
    from attune.core.emotion import Intensity

    for label in Intensity:
        assert Intensity.from_score(label.typical_score) is label
