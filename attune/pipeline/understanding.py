"""Understanding a user's turn: its transcript and the session's context in, what to answer with out.

The step after ASR and before the LLM, pure and synchronous: the turn's emotion (the whole-turn reading where the
session has one, else its emotion windows aggregated) is fused with the words (``agent.fuse_words``), the strategy
plans the response, and the prompt is built on the history. Where the voice note and the tone were already
evaluated into the LLM's cache while the turn was spoken (``EarlyVoice``), the prompt keeps them when they agree
with the whole turn's (same tone, same side of the valence), so that only the last words remain to be evaluated;
the plan (the voice's prosody) and the trace follow the whole turn either way. A reply calls
``Understander.understand`` once per turn; a transport or a test can call it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from attune.agent.brain import Planner, PromptBuilder, ResponsePlanLike
from attune.agent.text_affect import fuse_with_words
from attune.backends.base import ChatMessage
from attune.core.emotion import NEUTRAL_BAND, EmotionResult
from attune.core.frames import Transcript

Aggregator = Callable[[list[EmotionResult]], EmotionResult | None]
Trajectory = Callable[[list[EmotionResult]], str]  # improving | declining | stable | volatile


def valence_side(emotion: EmotionResult | None) -> int:
    """-1, 0 or 1: which side of neutral a reading's valence falls (0 for none, an unreliable one, or within
    ``NEUTRAL_BAND``)."""
    if emotion is None or not emotion.reliable or abs(emotion.dimensions.valence) < NEUTRAL_BAND:
        return 0
    return 1 if emotion.dimensions.valence > 0 else -1


@dataclass(frozen=True)
class EarlyVoice:
    """The voice as heard when the turn's prefill began (None: not read), whose note and tone (the plan the
    strategy makes of it) the LLM's KV cache holds ahead of the words."""

    emotion: EmotionResult | None

    def agrees_with(self, final: EmotionResult | None, *, early_plan: ResponsePlanLike,
                    final_plan: ResponsePlanLike) -> bool:
        """Its note and tone may stand for the whole turn's: the whole turn's plan asks the same tone, and the two
        readings sit on the same side of the valence (a sad turn whose first second read neutral or cheerful is
        re-read, so bad news never gets a note that hides it). Coarser than the emotion's name on purpose: the
        first second is read by the prosodic windows and the whole turn by the ASR encoder's head, which name
        different neighbours of the same feeling (docs/BENCHMARKS.md, issue 23)."""
        return (early_plan.expressed_emotion is final_plan.expressed_emotion
                and valence_side(self.emotion) == valence_side(final))

    def plan(self, planner: Planner, strategy: str) -> ResponsePlanLike:
        """The plan the strategy makes of the early reading: its tone is the one the prefill evaluated."""
        return planner(self.emotion, strategy)


@dataclass(frozen=True)
class TurnContext:
    """What the session knows when a turn is understood: the emotion windows of this turn, one aggregate per
    earlier turn, the conversation history exactly as it was sent, and (with a whole-turn emotion backend) the
    reading of the whole turn."""

    window_emotions: tuple[EmotionResult, ...] = ()
    past_emotions: tuple[EmotionResult, ...] = ()
    history: tuple[ChatMessage, ...] = ()
    turn_emotion: EmotionResult | None = None  # a whole-turn reading (the Whisper head's); wins over the windows
    early_voice: EarlyVoice | None = None  # the voice whose note and tone a prefill evaluated as the turn was spoken


@dataclass(frozen=True)
class Understanding:
    """A turn understood: who said what, how they sound, the plan, and the LLM's messages (the last one is the
    user's turn as the LLM sees it, which is what the history keeps)."""

    transcript: Transcript
    user_emotion: EmotionResult | None
    trajectory: str
    plan: ResponsePlanLike
    messages: tuple[ChatMessage, ...]
    early_note: bool = False  # the prompt carries the prefill's note and tone (``TurnContext.early_voice``)

    @property
    def user_message(self) -> str:
        return self.messages[-1].content


@dataclass(frozen=True)
class Understander:
    """The engines and settings of understanding: ``aggregate`` merges a turn's windows, ``trajectory`` reads the
    mood over turns, ``planner`` is the strategy, ``prompt`` the persona's prompt builder."""

    planner: Planner
    aggregate: Aggregator
    trajectory: Trajectory
    prompt: PromptBuilder
    strategy: str = "complement"
    fuse_words: bool = True

    def understand(self, transcript: Transcript, context: TurnContext) -> Understanding | None:
        """None when there is nothing to answer (no words: empty, or only punctuation and noise)."""
        text = transcript.text
        if not text or not any(ch.isalnum() for ch in text):
            return None
        emotion = context.turn_emotion  # an unreliable one stays: it means "answer plainly"
        if emotion is None and context.window_emotions:
            emotion = self.aggregate(list(context.window_emotions))
        if self.fuse_words:
            emotion = fuse_with_words(emotion, text)
        mood = self.trajectory([*context.past_emotions, *([emotion] if emotion else [])])
        plan = self.planner(emotion, self.strategy)
        early = context.early_voice
        kept = False
        user = self.prompt.user_message(text, emotion, plan)
        if early is not None:
            early_plan = early.plan(self.planner, self.strategy)
            if early.agrees_with(emotion, early_plan=early_plan, final_plan=plan):
                user, kept = self.prompt.user_message(text, early.emotion, early_plan), True
        messages = (*self.prompt.prefix(), *context.history, user)
        return Understanding(transcript, emotion, mood, plan, messages, early_note=kept)


def default_aggregate() -> Aggregator:
    from attune.backends.emotion.detector import aggregate_results

    return aggregate_results


def default_trajectory() -> Trajectory:
    from attune.backends.emotion.detector import trajectory

    return trajectory

