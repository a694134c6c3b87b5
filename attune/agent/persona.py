"""The agent's persona: who it is and how it talks, the fixed head of every system prompt.

The persona text is kept stable across turns so the LLM backend can reuse its KV cache for the prompt prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from attune.config import AgentConfig

DEFAULT_PERSONA = (
    "You are Attune, a warm, caring friend in a spoken conversation. After each user message comes a note in "
    "square brackets on how their voice sounds, and the tone for you: let it shape how you speak, but talk "
    "about their words, not the note. Comfort bad news, help with problems, congratulate good news, answer "
    "questions. One or two short sentences, plain words, no lists or emoji."
)

# How the persona text describes the user turn, in each order of ``brain.user_content`` (the default: words
# first; ``agent.voice_note_first``: the note and the tone first). ``PromptBuilder`` swaps one for the other.
NOTE_AFTER = ("After each user message comes a note in square brackets on how their voice sounds, and the tone "
              "for you: let it shape how you speak")
NOTE_FIRST = ("Each user message starts with a note in square brackets on how their voice sounds, and the tone for "
              "you: let it shape how you speak")

# Worked turns placed after the system message, in the prompt's own format (voice note, words, tone). Small
# models follow a shown exchange far better than a described one; the turns never change, so they are part of
# the cached prompt prefix and cost nothing after the first turn. Varied on purpose (bad news, good news with a
# sad voice, a question) so that no single reply becomes a template.
DEFAULT_EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    # (voice note, user's words, tone, reply)
    ("[Voice sounds strongly sad (speaking slowly)]", "My dog died yesterday.", "affectionate",
     "Oh no, I'm so sorry about your dog. He was lucky to have you."),
    ("[Voice sounds moderately tired]", "I passed my driving test.", "affectionate",
     "Congratulations, that's a big step! You must be worn out after all that practice."),
    ("[Voice sounds strongly frustrated (elevated pitch)]", "My phone screen cracked again.", "calm",
     "Oh, that's so annoying. A repair shop can usually fix it in a day."),
    ("[Voice sounds moderately anxious (speaking quickly)]", "How long does rice take to cook?", "calm",
     "About fifteen minutes on a low simmer, so there's no rush."),
)


@dataclass(frozen=True)
class Persona:
    name: str = "Attune"
    description: str = DEFAULT_PERSONA
    examples: tuple[tuple[str, str, str, str], ...] = DEFAULT_EXAMPLES

    def system_text(self) -> str:
        return self.description.strip()


def configured_persona(agent: AgentConfig) -> Persona:
    """The configured agent's persona (``agent.name``, ``agent.persona``; empty = the default text): the one place
    config becomes a persona."""
    return Persona(agent.name, agent.persona or DEFAULT_PERSONA)
