"""Fusing what the words say with how the voice sounds: the lexicon, negation, and the fused turn emotion."""

from __future__ import annotations

from attune.agent.text_affect import fuse_with_words, text_valence
from attune.core.emotion import CATEGORY_GROUP, EmotionCategory, EmotionGroup
from tests.fakes import make_result

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def test_text_valence_reads_clear_sentiment() -> None:
    assert text_valence("The delivery is late again and nobody answers the phone!")[0] < -0.5
    assert text_valence("I lost my grandmother last week and I just can't stop crying.")[0] < -0.5
    assert text_valence("I got the job! They called me this morning!")[0] > 0.5
    assert text_valence("What time is it in Tokyo?") == (0.0, 0)


def test_negation_flips_the_next_word_and_phrases_beat_words() -> None:
    assert text_valence("I am not happy with this")[0] < 0
    assert text_valence("that is not bad at all")[0] > 0
    assert text_valence("my grandfather passed away")[0] < 0
    assert text_valence("I passed the exam")[0] > 0


def test_angry_words_in_a_voice_read_as_happy_fuse_to_negative_activated() -> None:
    voice = make_result(EmotionCategory.HAPPY, 0.0, 2.0)
    assert voice.dimensions.valence > 0
    fused = fuse_with_words(voice, "The delivery is late again and nobody answers the phone!")
    assert fused is not None and fused.dimensions.valence < 0
    assert fused.dimensions.arousal == voice.dimensions.arousal  # arousal stays the voice's
    assert CATEGORY_GROUP[fused.primary.emotion] is EmotionGroup.NEGATIVE_ACTIVATED
    assert fused.confidence < voice.confidence  # words and voice disagreed
    assert fused.backend.endswith("+words")


def test_words_without_sentiment_or_an_unreadable_voice_leave_the_result_alone() -> None:
    voice = make_result(EmotionCategory.SAD, 0.0, 2.0)
    assert fuse_with_words(voice, "What time is it in Tokyo?") is voice
    assert fuse_with_words(None, "I am so happy") is None
