"""The turn's situation from its words (layer 1): what the first sound answers."""

from __future__ import annotations

import pytest

from attune.agent.situation import SITUATIONS, situation_of
from attune.pipeline.acknowledgement import CHOICES

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


@pytest.mark.parametrize(("text", "situation"), [
    ("My grandfather passed away last night.", "bad_news"),
    ("The train was late again and I missed my meeting.", "bad_news"),
    ("I just got the job I wanted, I am so happy!", "good_news"),
    ("Thanks, that really helps.", "thanks"),
    ("What should I cook for dinner tonight?", "question"),
    ("I finally finished painting the kitchen.", "statement"),
    ("   ", "statement"),
])
def test_situation_from_the_words(text: str, situation: str) -> None:
    assert situation_of(text) == situation


def test_every_situation_has_its_acknowledgements() -> None:
    assert set(CHOICES) == set(SITUATIONS)
