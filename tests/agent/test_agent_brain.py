"""The agent's memory and prompt: bounded history, Qwen2.5 chat messages with persona and emotion guidance."""

from __future__ import annotations

from attune.agent.brain import NeutralPlan, PromptBuilder, qwen_chat_text, turn_start
from attune.agent.memory import ConversationMemory
from attune.core.emotion import EmotionCategory
from tests.fakes import make_result

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def test_memory_is_bounded_by_tokens_and_starts_with_the_user() -> None:
    m = ConversationMemory(max_tokens=60)
    for i in range(10):
        m.add_user(f"user message number {i} with some words")
        m.add_assistant(f"assistant reply number {i} with some words")
    assert m.tokens() <= 60
    msgs = m.messages()
    assert msgs[0].role == "user" and msgs[-1].content.startswith("assistant reply number 9")
    assert len(msgs) < 20


def test_a_full_history_is_cut_by_half_so_the_prompts_front_stays_the_same_for_many_turns() -> None:
    """Dropping one exchange per turn would change the front of every prompt (and void the LLM's KV cache for the
    whole history each turn); a cut goes down to half the bound, then the front stays put until it is full again."""
    m = ConversationMemory(max_tokens=200)
    cuts = 0
    for i in range(40):
        before = m.messages()[0].content if m.messages() else None
        m.add_user(f"user message number {i} with some words")
        m.add_assistant(f"assistant reply number {i} with some words")
        assert m.tokens() <= 200
        if before is not None and m.messages()[0].content != before:
            cuts += 1
            assert m.tokens() <= 100  # cut to half, not just below the bound
    assert 2 <= cuts <= 40 // 4  # one exchange is ~20 tokens: a cut every ~5 turns, not every turn


def test_interrupted_reply_is_marked() -> None:
    m = ConversationMemory()
    m.add_user("hi")
    m.add_assistant("I was saying", interrupted=True)
    m.add_assistant("")
    assert m.messages()[-1].content == "I was saying —" and len(m.messages()) == 2


def test_prompt_has_persona_guidance_history_and_emotion_context() -> None:
    m = ConversationMemory()
    m.add_user("earlier")
    m.add_assistant("earlier reply")
    plan = NeutralPlan(strategy="complement", expressed_emotion=EmotionCategory.CALM, reason="user is anxious")
    user = make_result(EmotionCategory.ANXIOUS, 0, 1)
    msgs = PromptBuilder(reply_tag=True).build(m, "I can't sleep", user, plan)
    builder = PromptBuilder(reply_tag=True)
    n = len(builder.prefix())
    assert n == 1 + 2 * len(builder.persona.examples) and msgs[:n] == builder.prefix()
    assert [x.role for x in msgs[n:]] == ["user", "assistant", "user"]
    assert [x.role for x in msgs[1:n]] == ["user", "assistant"] * len(builder.persona.examples)
    assert "Attune" in msgs[0].content and "[calm]" in msgs[0].content
    last = msgs[-1].content
    assert last == f"I can't sleep\n{user.to_context_string()} (Tone: calm.)" and "anxious" in last
    # The worked turns are in the same format as a live turn.
    assert msgs[1].content.split("\n")[1].startswith("[Voice sounds") and "(Tone: " in msgs[1].content
    # The system message does not change with the turn's emotion: the prompt prefix stays cacheable.
    other = NeutralPlan(strategy="match", expressed_emotion=EmotionCategory.SAD, reason="x")
    assert PromptBuilder(reply_tag=True).build(m, "hi", None, other)[0] == msgs[0]
    text = qwen_chat_text(msgs)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert PromptBuilder().build(m, "x", None, plan)[-1].content == "x\n[Voice emotion unknown] (Tone: calm.)"


def test_the_voice_note_first_order_and_its_system_text() -> None:
    from attune.agent.persona import NOTE_AFTER, NOTE_FIRST

    plan = NeutralPlan(strategy="complement", expressed_emotion=EmotionCategory.CALM, reason="x")
    user = make_result(EmotionCategory.ANXIOUS, 0, 1)
    plain, first = PromptBuilder(), PromptBuilder(note_first=True)
    assert NOTE_AFTER in plain.system_message().content and NOTE_FIRST not in plain.system_message().content
    assert NOTE_FIRST in first.system_message().content and NOTE_AFTER not in first.system_message().content
    last = first.build(ConversationMemory(), "I can't sleep", user, plan)[-1].content
    assert last == f"{user.to_context_string()} (Tone: calm.)\nI can't sleep"
    # the note and the tone lead, so what a prefill evaluated is the start of the reply's turn, to the last word
    assert last.startswith(first.turn_start(user, plan, "I can't").content)
    assert plain.turn_start(user, plan, " I can't ").content == "I can't"  # words first: the words alone lead
    assert turn_start("[note]", " I can't ", "Tone: calm.") == "I can't"
    worked = first.prefix()[1].content.split("\n")  # the worked turns follow the same order
    assert worked[0].startswith("[Voice sounds") and worked[0].endswith(".)") and "(Tone: " in worked[0]
