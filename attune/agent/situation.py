"""The turn's situation from its words alone (bad news, good news, thanks, a question, a statement): what the first
sound answers (``pipeline.acknowledgement`` chooses its words by it, made safe against the plan there).

Pure: ``situation_of(transcript)`` reads the words' valence (``agent.text_affect``) and their form.
"""

from __future__ import annotations

import re

from attune.agent.text_affect import text_valence

SITUATIONS = ("bad_news", "good_news", "thanks", "question", "statement")
NEGATIVE_VALENCE = -0.25  # the words' valence at or below which a turn is bad news
POSITIVE_VALENCE = 0.25
_QUESTION_OPENERS = frozenset("what why how when where who which can could would should will do does did is are "
                              "am was were have has shall may".split())
_THANKS = re.compile(r"\b(thanks|thank you|cheers)\b")
_WORD = re.compile(r"[a-z']+")


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
