"""Openings: the few words a person says before they have composed the rest ("Oh no.", "Hmm, let me think."),
chosen per turn from the words' sentiment and the response plan, spoken from a cache at the moment the turn is
committed while the LLM goes on with the same reply from them.

Pure. ``choose_opening(transcript, plan)`` returns an ``Opening`` or None (no opening: when the words and the
plan disagree, or nothing fits). The one rule that matters most: never a cheerful opening to bad news; when
unsure, a neutral one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from attune.agent.brain import ResponsePlanLike
from attune.agent.text_affect import text_valence
from attune.core.emotion import CATEGORY_GROUP, EmotionCategory, EmotionGroup

SITUATIONS = ("bad_news", "good_news", "thanks", "question", "statement")
# One opening per situation: short (one Piper chunk, < 1 s), ending on a comma, so it is spoken as the start of
# a sentence and the model finishes that sentence: the reply keeps its length (with "Oh no." as a sentence of its
# own, eval-replies' length check failed 6 of 12 replies on the 1.5B, against 2 without openings).
OPENINGS: dict[str, str] = {
    "bad_news": "Oh no,",
    "good_news": "Oh, that's great,",
    "thanks": "You're welcome,",
    "question": "Hmm, let me think,",
    "statement": "I see,",
}
CHEERFUL = frozenset({"good_news"})
NEGATIVE_VALENCE = -0.25  # the words' valence at or below which a turn is bad news
POSITIVE_VALENCE = 0.25
_QUESTION_OPENERS = frozenset("what why how when where who which can could would should will do does did is are "
                              "am was were have has shall may".split())
_THANKS = re.compile(r"\b(thanks|thank you|cheers)\b")
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Opening:
    """An opening to speak: its words, the situation it answers, and the emotion it is spoken with."""

    text: str
    situation: str
    emotion: EmotionCategory


def situation_of(transcript: str) -> str:
    """bad_news | good_news | thanks | question | statement, from the words alone."""
    lowered = transcript.strip().lower()
    words = _WORD.findall(lowered)
    if not words:
        return "statement"
    valence, hits = text_valence(transcript)
    if hits and valence <= NEGATIVE_VALENCE:
        return "bad_news"
    if _THANKS.search(lowered):
        return "thanks"
    if lowered.endswith("?") or words[0] in _QUESTION_OPENERS:
        return "question"
    if hits and valence >= POSITIVE_VALENCE:
        return "good_news"
    return "statement"


def choose_opening(transcript: str, plan: ResponsePlanLike) -> Opening | None:
    """The opening for this turn, spoken with the plan's expressed emotion, or None.

    A cheerful opening needs a plan that expresses a positive feeling; bad news needs a plan that does not (a
    positive plan on bad words means the reading is unsure, so the neutral opening is used, with neutral
    prosody). An empty transcript has no opening.
    """
    if not transcript.strip():
        return None
    situation = situation_of(transcript)
    expressed = plan.expressed_emotion
    group = CATEGORY_GROUP.get(expressed, EmotionGroup.NEUTRAL)
    positive_plan = group in (EmotionGroup.POSITIVE_ACTIVATED, EmotionGroup.POSITIVE_DEACTIVATED)
    if situation in CHEERFUL and group in (EmotionGroup.NEGATIVE_ACTIVATED, EmotionGroup.NEGATIVE_DEACTIVATED):
        situation = "statement"
    if situation == "bad_news" and positive_plan and expressed not in _SOOTHING:
        return Opening(OPENINGS["statement"], "statement", EmotionCategory.NEUTRAL)
    return Opening(OPENINGS[situation], situation, expressed)


# Positive-deactivated emotions a bad-news reply may well be spoken with (complement answers sadness with them).
_SOOTHING = frozenset({EmotionCategory.CALM, EmotionCategory.AFFECTIONATE, EmotionCategory.CONTENT,
                       EmotionCategory.THOUGHTFUL})
