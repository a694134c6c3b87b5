"""Openings: the situation from the words, the choice against the plan (layer 1), and the speech cache."""

from __future__ import annotations

import numpy as np
import pytest

from attune.agent.brain import NeutralPlan
from attune.agent.openings import CHEERFUL, OPENINGS, choose_opening, situation_of
from attune.backends.tts.cache import SpeechCache, SpeechKey
from attune.core.emotion import EmotionCategory
from attune.core.prosody import ProsodyParameters, profile_for

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def plan(emotion: EmotionCategory) -> NeutralPlan:
    return NeutralPlan(strategy="complement", expressed_emotion=emotion, prosody=profile_for(emotion, 0.7))


@pytest.mark.parametrize(("text", "situation"), [
    ("My grandfather passed away last night.", "bad_news"),
    ("The train was late again and I missed my meeting.", "bad_news"),
    ("I just got the job I wanted, I am so happy!", "good_news"),
    ("Thanks, that really helps.", "thanks"),
    ("What should I cook for dinner tonight?", "question"),
    ("I finally finished painting the kitchen.", "statement"),
])
def test_situation_from_the_words(text: str, situation: str) -> None:
    assert situation_of(text) == situation


def test_never_cheerful_to_bad_news_and_neutral_when_unsure() -> None:
    sad_words = "My dog died this morning."
    for emotion in EmotionCategory:
        opening = choose_opening(sad_words, plan(emotion))
        assert opening is not None and opening.situation not in CHEERFUL
    # A plan that sounds happy on bad words: the reading is unsure, so the neutral opening, neutral prosody.
    unsure = choose_opening(sad_words, plan(EmotionCategory.EXCITED))
    assert unsure is not None and unsure.text == OPENINGS["statement"] and unsure.emotion is EmotionCategory.NEUTRAL
    comforting = choose_opening(sad_words, plan(EmotionCategory.AFFECTIONATE))
    assert comforting is not None and comforting.text == OPENINGS["bad_news"]


def test_good_news_with_a_sombre_plan_gets_no_cheer() -> None:
    opening = choose_opening("I won the lottery, it is great!", plan(EmotionCategory.SAD))
    assert opening is not None and opening.situation == "statement"
    assert choose_opening("   ", plan(EmotionCategory.NEUTRAL)) is None


def test_speech_cache_keys_on_everything_that_changes_the_sound() -> None:
    cache = SpeechCache(max_items=2)
    calm = profile_for(EmotionCategory.CALM, 0.7)
    k1 = SpeechKey.of("Oh  no.", voice="joe", provider="piper", emotion="calm", prosody=calm)
    assert k1 == SpeechKey.of("Oh no.", voice="joe", provider="piper", emotion="calm", prosody=calm)
    assert k1 != SpeechKey.of("Oh no.", voice="joe", provider="espeak", emotion="calm", prosody=calm)
    assert k1 != SpeechKey.of("Oh no.", voice="joe", provider="piper", emotion="calm", prosody=ProsodyParameters())
    assert cache.get(k1) is None and cache.misses == 1
    item = cache.put(k1, np.ones(2400), 24000)
    assert cache.get(k1) is item and item.duration_s == pytest.approx(0.1) and not item.samples.flags.writeable
    k2 = SpeechKey.of("I see.", voice="joe", provider="piper", emotion="calm", prosody=calm)
    k3 = SpeechKey.of("Hmm.", voice="joe", provider="piper", emotion="calm", prosody=calm)
    cache.put(k2, np.ones(10), 24000)
    cache.get(k1)  # k1 is now the most recently used
    cache.put(k3, np.ones(10), 24000)
    assert cache.get(k2) is None and cache.get(k1) is not None and len(cache) == 2
    with pytest.raises(ValueError):
        cache.put(k1, np.zeros(0), 24000)
