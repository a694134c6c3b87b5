"""Response strategy: how to answer a feeling. Chosen in one place and handed on as a value (``ResponsePlan``).

The agent aggregates the user's turn into an ``EmotionResult`` and calls ``choose_response(user, strategy)``; the
plan's prosody goes to the TTS router and the DSP, and ``to_dict()`` goes to the log and to clients
(``response.created``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from attune.core.emotion import CATEGORY_GROUP, EmotionCategory, EmotionGroup, EmotionResult
from attune.core.errors import ConfigError
from attune.core.prosody import ProsodyParameters, profile_for

log = logging.getLogger(__name__)

STRATEGIES = ("match", "complement", "amplify", "neutral")
MATCH_FACTOR = 0.8  # "match" mirrors the user's emotion at 80% of the detector's confidence
AMPLIFY_FACTOR = 1.3  # "amplify" pushes past the user's own intensity (capped at 1)
COMPLEMENT_INTENSITY = 0.7  # how strongly the complementary emotion is expressed
NEUTRAL_INTENSITY = 1.0

# What "complement" answers with, by the user's group: calm for agitation, warmth for low moods;
# positive feelings are matched.
COMPLEMENT_OF: dict[EmotionGroup, EmotionCategory] = {
    EmotionGroup.NEGATIVE_ACTIVATED: EmotionCategory.CALM,
    EmotionGroup.NEGATIVE_DEACTIVATED: EmotionCategory.AFFECTIONATE,
}


@dataclass(frozen=True)
class ResponsePlan:
    """How the next reply should sound: the emotion to express, how strongly (0..1), its prosody, and why."""

    strategy: str
    expressed_emotion: EmotionCategory
    intensity: float
    prosody: ProsodyParameters
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"strategy": self.strategy, "expressed_emotion": self.expressed_emotion.value,
                "intensity": round(self.intensity, 3), "prosody": self.prosody.to_dict(), "reason": self.reason}


def check_strategy(name: str) -> str:
    """``name`` if it is a known strategy, else a ConfigError listing the known ones."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown response strategy {name!r} (known: {', '.join(STRATEGIES)})")
    return name


def _plan(strategy: str, emotion: EmotionCategory, intensity: float, reason: str) -> ResponsePlan:
    k = min(max(intensity, 0.0), 1.0)
    plan = ResponsePlan(strategy, emotion, k, profile_for(emotion, k), reason)
    log.info("response plan: %s %s at %.2f (%s)", strategy, emotion.value, k, reason)
    return plan


def choose_response(user: EmotionResult | None, strategy: str) -> ResponsePlan:
    """The plan for answering ``user`` (None or an unreliable reading -> neutral) under ``strategy``.

    Raises ConfigError for an unknown strategy name.
    """
    check_strategy(strategy)
    if strategy == "neutral":
        return _plan(strategy, EmotionCategory.NEUTRAL, NEUTRAL_INTENSITY, "neutral strategy: plain delivery")
    if user is None or not user.reliable:
        why = "no reading of the user's voice" if user is None else "the user's emotion is unclear"
        return _plan(strategy, EmotionCategory.NEUTRAL, NEUTRAL_INTENSITY, f"{why}: neutral delivery")
    top = user.primary
    felt, conf = top.emotion, min(max(user.confidence, 0.0), 1.0)
    group = CATEGORY_GROUP[felt]
    if strategy == "match":
        return _plan(strategy, felt, MATCH_FACTOR * conf,
                     f"user sounds {felt.value}: mirror it at {MATCH_FACTOR:.0%} of confidence {conf:.2f}")
    if strategy == "amplify":
        return _plan(strategy, felt, AMPLIFY_FACTOR * conf, f"user sounds {felt.value}: amplify it")
    answer = COMPLEMENT_OF.get(group)
    if answer is None:  # positive or neutral: meet the user where they are
        return _plan(strategy, felt, MATCH_FACTOR * conf,
                     f"user sounds {felt.value} ({group.value}): match it")
    return _plan(strategy, answer, COMPLEMENT_INTENSITY,
                 f"user sounds {felt.value} ({group.value}): answer {answer.value}")
