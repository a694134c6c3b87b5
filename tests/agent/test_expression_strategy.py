"""Prosody profiles, engine mappings and response strategies (pure, loop-free)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from attune.agent.strategy import STRATEGIES, ResponsePlan, choose_response
from attune.config import load_config
from attune.core.audio import AudioQuality
from attune.core.emotion import (
    CATEGORY_GROUP,
    EmotionCategory,
    EmotionGroup,
    EmotionResult,
    Intensity,
    PrimaryDimensions,
    ProsodicMarkers,
    predictions_from_scores,
)
from attune.core.errors import ConfigError
from attune.core.prosody import (
    PROFILES,
    RANGES,
    blend,
    csm_sampling,
    get_rvc_params,
    profile_for,
    to_ssml,
)

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

E = EmotionCategory
GOOD = AudioQuality(-20.0, -3.0, 17.0, 0.0, False, False, False)
SILENT = AudioQuality(-90.0, -80.0, 10.0, 0.0, True, False, False)


def result(emotion: E, confidence: float = 0.6, quality: AudioQuality = GOOD) -> EmotionResult:
    preds = predictions_from_scores([(emotion, confidence), (E.NEUTRAL, 0.2)], 0.6)
    return EmotionResult(PrimaryDimensions(), preds, ProsodicMarkers(), quality, 1.0, "test", confidence)


def test_every_category_has_a_profile_within_range():
    assert set(PROFILES) == set(EmotionCategory)
    for params in PROFILES.values():
        for name, (lo, hi, _) in RANGES.items():
            assert lo <= getattr(params, name) <= hi
    assert PROFILES[E.NEUTRAL].is_neutral


def test_profile_directions_follow_the_literature():
    sad, panicked, angry, happy, calm = (PROFILES[e] for e in (E.SAD, E.PANICKED, E.ANGRY, E.HAPPY, E.CALM))
    assert sad.pitch_shift_semitones < 0 and sad.speech_rate < 1 and sad.volume_db < 0
    assert sad.breathiness > 0 and sad.pause_multiplier > 1 and sad.pitch_variance < 1
    assert panicked.pitch_shift_semitones >= 4 and panicked.speech_rate > 1.2 and panicked.tremolo_amount > 0.5
    assert angry.volume_db > 3 and angry.dynamic_range > 1 and angry.pause_multiplier < 1
    assert happy.pitch_shift_semitones > 0 and happy.pitch_variance > 1
    assert calm.speech_rate < 1 and calm.volume_db < 0
    for cat, params in PROFILES.items():
        if CATEGORY_GROUP[cat] is EmotionGroup.NEGATIVE_DEACTIVATED:
            assert params.speech_rate < 1 and params.pitch_shift_semitones < 0


def test_intensity_scales_toward_neutral_and_blend_averages():
    sad = PROFILES[E.SAD]
    assert profile_for("sad", 0.0).is_neutral
    assert profile_for("sad", 1.0) == sad
    half = profile_for(E.SAD, 0.5)
    assert half.pitch_shift_semitones == pytest.approx(sad.pitch_shift_semitones / 2)
    assert half.speech_rate == pytest.approx(1 + (sad.speech_rate - 1) / 2)
    mix = blend([(PROFILES[E.HAPPY], 3.0), (sad, 1.0)])
    assert mix.pitch_shift_semitones == pytest.approx(
        (3 * PROFILES[E.HAPPY].pitch_shift_semitones + sad.pitch_shift_semitones) / 4)
    assert blend([]).is_neutral
    with pytest.raises(ValueError):
        blend([(sad, -1.0)])
    with pytest.raises(ValueError, match="unknown emotion"):
        profile_for("grumpy")


def test_neutralized_leaves_the_rest_for_the_dsp():
    sad = PROFILES[E.SAD]
    rest = sad.neutralized("speech_rate", "pitch_shift_semitones")
    assert rest.speech_rate == 1.0 and rest.pitch_shift_semitones == 0.0
    assert rest.volume_db == sad.volume_db and rest.breathiness == sad.breathiness
    with pytest.raises(ValueError, match="unknown prosody dimension"):
        sad.neutralized("loudness")


def test_engine_mappings():
    happy = PROFILES[E.HAPPY]
    ssml = to_ssml("fish & <chips>", happy)
    root = ET.fromstring(ssml)  # well-formed, text escaped
    prosody = root.find("prosody")
    assert prosody is not None and prosody.text == "fish & <chips>"
    assert prosody.get("pitch") == "+2.5st" and prosody.get("rate") == "110%"
    assert get_rvc_params(PROFILES[E.SAD]) == {"f0_up_key": -2, "rate": 0.82}
    assert csm_sampling("happy") == (0.8, 30)
    assert csm_sampling(E.CALM) == (0.5, 20)
    assert csm_sampling("excited") == (0.9, 35)
    assert csm_sampling("panicked")[0] > csm_sampling("tired")[0]


def test_match_mirrors_at_80_percent_of_confidence():
    plan = choose_response(result(E.ANXIOUS, 0.5), "match")
    assert plan.expressed_emotion is E.ANXIOUS and plan.intensity == pytest.approx(0.4)
    assert plan.prosody == profile_for(E.ANXIOUS, 0.4)


@pytest.mark.parametrize(("felt", "answer"), [
    (E.ANXIOUS, E.CALM), (E.ANGRY, E.CALM), (E.SAD, E.AFFECTIONATE), (E.LONELY, E.AFFECTIONATE),
    (E.HAPPY, E.HAPPY), (E.CONTENT, E.CONTENT)])
def test_complement(felt, answer):
    plan = choose_response(result(felt), "complement")
    assert plan.expressed_emotion is answer
    assert felt.value in plan.reason


def test_amplify_neutral_and_unclear_input():
    amp = choose_response(result(E.HAPPY, 0.6), "amplify")
    assert amp.expressed_emotion is E.HAPPY and amp.intensity > 0.6
    assert choose_response(result(E.ANGRY), "neutral").expressed_emotion is E.NEUTRAL
    assert choose_response(None, "match").expressed_emotion is E.NEUTRAL
    unclear = choose_response(result(E.SAD, quality=SILENT), "complement")
    assert unclear.expressed_emotion is E.NEUTRAL and "unclear" in unclear.reason


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown response strategy 'sulk'"):
        choose_response(None, "sulk")
    with pytest.raises(ConfigError):
        load_config(overrides={"expression": {"strategy": "sulk"}})
    assert load_config().expression.strategy == "complement" and "complement" in STRATEGIES


def test_plan_is_a_frozen_value_with_a_dict():
    plan = choose_response(result(E.SAD), "complement")
    assert isinstance(plan, ResponsePlan)
    d = plan.to_dict()
    assert d["strategy"] == "complement" and d["expressed_emotion"] == "affectionate"
    assert set(d["prosody"]) == set(RANGES) and isinstance(d["reason"], str)
    with pytest.raises(AttributeError):
        plan.intensity = 1.0  # type: ignore[misc]
    assert Intensity.from_score(plan.intensity)  # intensity is a 0..1 score
