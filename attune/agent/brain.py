"""The agent's brain for one turn: the user's emotion -> a response plan (strategy, expressed emotion, prosody)
-> the Qwen2.5 chat messages for the LLM.

The strategy itself lives in ``attune.agent.strategy.choose_response``. The prompt is a fixed prefix (the
persona's system text and its worked example turns), the token-bounded history as it was sent, then the user's
turn: the words, the voice's context string and how to sound (or, with ``note_first``, the note and the tone
before the words); so each turn's prompt extends the last one, the LLM's KV cache is reused, and the start of a
turn can be evaluated while it is still being spoken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from attune.agent.memory import ConversationMemory
from attune.agent.persona import NOTE_AFTER, NOTE_FIRST, Persona
from attune.backends.base import ChatMessage
from attune.core.emotion import EmotionCategory, EmotionResult
from attune.core.prosody import ProsodyParameters

TAG_INSTRUCTION = (
    "Start each reply with the emotion you speak with in square brackets, one word, for example [{emotion}]."
)


class ResponsePlanLike(Protocol):
    """What the session needs from ``attune.agent.strategy.ResponsePlan``."""

    @property
    def strategy(self) -> str: ...

    @property
    def expressed_emotion(self) -> EmotionCategory: ...

    @property
    def intensity(self) -> Any: ...

    @property
    def prosody(self) -> ProsodyParameters: ...

    @property
    def reason(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


Planner = Callable[[EmotionResult | None, str], ResponsePlanLike]

@dataclass(frozen=True)
class NeutralPlan:
    """A fixed plan (tests, and typed turns that bypass the strategy): speak neutrally, or as told."""

    strategy: str = "neutral"
    expressed_emotion: EmotionCategory = EmotionCategory.NEUTRAL
    intensity: float = 0.4
    prosody: ProsodyParameters = field(default_factory=ProsodyParameters)
    reason: str = "fixed plan"

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "expressed_emotion": self.expressed_emotion.value,
                "intensity": self.intensity, "prosody": self.prosody.to_dict(), "reason": self.reason}


def default_planner() -> Planner:
    """The strategy module's ``choose_response``: the one place strategies are chosen."""
    from attune.agent.strategy import choose_response

    return choose_response


def voice_note(emotion: EmotionResult | None) -> str:
    """The voice's context string as the prompt carries it (one when the voice was not read)."""
    return emotion.to_context_string() if emotion is not None else "[Voice emotion unknown]"


def expression_guidance(plan: ResponsePlanLike) -> str:
    """How to sound, in as few tokens as possible (each prompt token costs ~14 ms of time to first token with the
    1.5B model on 2 cores): e.g. "Tone: calm." The intensity goes to the prosody, the reason to the trace."""
    return f"Tone: {plan.expressed_emotion.value}."


class PromptBuilder:
    """Builds the chat messages so that each turn's prompt extends the last one (llama.cpp then evaluates only
    the new tokens): a fixed prefix (the system message with the persona and, when on, the tag instruction; then
    the persona's worked turns), the history exactly as it was sent, then this turn's user message: the words,
    the voice's context string and how to sound (``user_content``; ``note_first`` puts the note and the tone
    first).
    """

    def __init__(self, persona: Persona | None = None, *, reply_tag: bool = False, note_first: bool = False) -> None:
        self.persona = persona or Persona()
        self.reply_tag = reply_tag
        self.note_first = note_first  # the voice note and the tone before the words (``user_content``)

    def system_message(self) -> ChatMessage:
        text = self.persona.system_text()
        if self.note_first:
            text = text.replace(NOTE_AFTER, NOTE_FIRST)
        if self.reply_tag:
            text += " " + TAG_INSTRUCTION.format(emotion="calm")
        return ChatMessage("system", text)

    def prefix(self) -> list[ChatMessage]:
        """The messages every prompt starts with (system text, then the persona's worked turns): what
        ``LlamaCppLLM.prime()`` should evaluate ahead of the first turn."""
        out = [self.system_message()]
        for note, words, tone, reply in self.persona.examples:
            out.append(ChatMessage("user", user_content(note, words, f"Tone: {tone}.", note_first=self.note_first)))
            out.append(ChatMessage("assistant", f"[{tone}] {reply}" if self.reply_tag else reply))
        return out

    def user_message(self, user_text: str, user_emotion: EmotionResult | None,
                     plan: ResponsePlanLike) -> ChatMessage:
        return ChatMessage("user", user_content(voice_note(user_emotion), user_text, expression_guidance(plan),
                                                note_first=self.note_first))

    def turn_start(self, user_emotion: EmotionResult | None, plan: ResponsePlanLike, words: str) -> ChatMessage:
        """This turn's user message as far as ``words`` (the words settled so far): what a prefill evaluates
        while the turn is spoken. With ``note_first`` the note and the tone lead, so the message the reply sends
        with the same reading and plan extends this one by the last words alone."""
        return ChatMessage("user", turn_start(voice_note(user_emotion), words, expression_guidance(plan),
                                              note_first=self.note_first))

    def build(self, memory: ConversationMemory, user_text: str, user_emotion: EmotionResult | None,
              plan: ResponsePlanLike) -> list[ChatMessage]:
        return [*self.prefix(), *memory.messages(), self.user_message(user_text, user_emotion, plan)]


def user_content(context: str, words: str, guidance: str, *, note_first: bool = False) -> str:
    """One user turn as the model sees it: the words, then the voice note and the tone on a line of their own.

    ``note_first``: the note and the tone on the first line, then the words. Both are read from the voice heard
    when the turn's prefill begins, so they and the words are evaluated into the LLM's KV cache while the person
    speaks and only the last words and the template's closing remain after the turn (``turn_start`` is what comes
    before them; ``pipeline.understanding.EarlyVoice`` decides when the whole turn's reading replaces them)."""
    if note_first:
        return turn_start(context, words, guidance, note_first=True)
    return f"{words.strip()}\n{context} ({guidance})"


def turn_start(context: str, words: str, guidance: str, *, note_first: bool = False) -> str:
    """The part of a user turn known while it is spoken: the words so far, after the note and the tone if they
    lead."""
    return f"{context} ({guidance})\n{words.strip()}" if note_first else words.strip()


def qwen_chat_text(messages: list[ChatMessage]) -> str:
    """The Qwen2.5 chat template as text (what llama.cpp applies from the GGUF's template), for logs and tests."""
    body = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"
