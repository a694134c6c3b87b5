"""The agent's persona: who it is and how it talks, the fixed head of every system prompt.

The persona text is kept stable across turns so the LLM backend can reuse its KV cache for the prompt prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PERSONA = (
    "You are Attune, a warm, attentive voice companion. You hear how the user sounds as well as what they say. "
    "Reply in one or two short spoken sentences, plain words only: no lists, no markdown, no emoji. "
    "Acknowledge how the user seems to feel when it matters, without naming the measurement."
)


@dataclass(frozen=True)
class Persona:
    name: str = "Attune"
    description: str = DEFAULT_PERSONA

    def system_text(self) -> str:
        return self.description.strip()
