"""Understanding a user's turn: its transcript and the session's context in, what to answer with out.

The step after ASR and before the LLM, pure and synchronous: the turn's emotion (the whole-turn reading where the
session has one, else its emotion windows aggregated) is fused with the words (``agent.fuse_words``), the strategy
plans the response, and the prompt is built on the history. Where the voice note was already evaluated into the
LLM's cache while the turn was spoken (``EarlyVoice``), the prompt keeps that note when it agrees with the turn's
reading, so that only the tone and the last words remain to be evaluated. A reply calls
``Understander.understand`` once per turn; a transport or a test can call it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from attune.agent.brain import Planner, PromptBuilder, ResponsePlanLike, voice_note
from attune.agent.text_affect import fuse_with_words
from attune.backends.base import ChatMessage
from attune.core.emotion import EmotionResult
from attune.core.frames import Transcript

Aggregator = Callable[[list[EmotionResult]], EmotionResult | None]
Trajectory = Callable[[list[EmotionResult]], str]  # improving | declining | stable | volatile


@dataclass(frozen=True)
class EarlyVoice:
    """The voice as heard when the turn's prefill began (None: not read), whose note the LLM's KV cache holds
    ahead of the words."""

    emotion: EmotionResult | None

    def agrees_with(self, final: EmotionResult | None) -> bool:
        """Its note may stand for the whole turn's reading: both name the same emotion, or neither is reliable."""
        early = self.emotion
        if early is None or final is None:
            return early is final
        if not (early.reliable and final.reliable):
            return early.reliable == final.reliable
        return early.primary.emotion is final.primary.emotion


@dataclass(frozen=True)
class TurnContext:
    """What the session knows when a turn is understood: the emotion windows of this turn, one aggregate per
    earlier turn, the conversation history exactly as it was sent, and (with a whole-turn emotion backend) the
    reading of the whole turn."""

    window_emotions: tuple[EmotionResult, ...] = ()
    past_emotions: tuple[EmotionResult, ...] = ()
    history: tuple[ChatMessage, ...] = ()
    turn_emotion: EmotionResult | None = None  # a whole-turn reading (the Whisper head's); wins over the windows
    early_voice: EarlyVoice | None = None  # the voice note a prefill evaluated while the turn was spoken


@dataclass(frozen=True)
class Understanding:
    """A turn understood: who said what, how they sound, the plan, and the LLM's messages (the last one is the
    user's turn as the LLM sees it, which is what the history keeps)."""

    transcript: Transcript
    user_emotion: EmotionResult | None
    trajectory: str
    plan: ResponsePlanLike
    messages: tuple[ChatMessage, ...]
    early_note: bool = False  # the prompt carries the prefill's voice note (``TurnContext.early_voice``)

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
        note = voice_note(early.emotion) if early is not None and early.agrees_with(emotion) else None
        messages = (*self.prompt.prefix(), *context.history,
                    self.prompt.user_message(text, emotion, plan, note=note))
        return Understanding(transcript, emotion, mood, plan, messages, early_note=note is not None)


def default_aggregate() -> Aggregator:
    from attune.backends.emotion.detector import aggregate_results

    return aggregate_results


def default_trajectory() -> Trajectory:
    from attune.backends.emotion.detector import trajectory

    return trajectory

