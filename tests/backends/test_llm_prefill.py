"""Filling the KV cache while the person speaks, and timing a prompt's tail again, on the real Qwen2.5 0.5B GGUF."""

from __future__ import annotations

import pytest

from attune.backends.base import ChatMessage, Completion
from attune.backends.llm.llama_cpp_backend import LlamaCppLLM
from tests.engines_util import installed_model

LAYER = "real"  # STYLE.md layer 4: real models on real audio

SYSTEM = ChatMessage("system", "You are Attune, a kind voice companion. Answer in one short sentence.")
WORDS = "I was thinking that maybe we could go for a long walk by the river later this afternoon"


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    return LlamaCppLLM(installed_model("qwen2.5-0.5b"), n_ctx=1024)


async def _call(llm: LlamaCppLLM, messages: list[ChatMessage]) -> tuple[str, Completion]:
    """The greedy reply and its call's figures (the engine reports them before its first piece)."""
    stream = llm.stream(messages, max_tokens=24, temperature=0.0)
    text = "".join([p async for p in stream])
    assert stream.completion is not None
    return text, stream.completion


async def _reply(llm: LlamaCppLLM, messages: list[ChatMessage]) -> str:
    return (await _call(llm, messages))[0]


async def test_prefilled_words_are_reused_and_the_reply_is_unchanged(llm: LlamaCppLLM) -> None:
    final = [SYSTEM, ChatMessage("user", WORDS + ", what do you think?\n[Voice: calm] (Tone: calm.)")]
    llm._llm.reset()
    cold, cold_call = await _call(llm, final)
    llm._llm.reset()
    evaluated = 0
    words = WORDS.split()
    for n in range(3, len(words) + 1, 3):  # the settled words grow as passes agree
        while (step := llm.prefill([SYSTEM, ChatMessage("user", " ".join(words[:n]))], max_new=4)) > 0:
            evaluated += step
    assert evaluated > 15
    warm, warm_call = await _call(llm, final)
    assert warm_call.reused_tokens >= cold_call.reused_tokens + evaluated - 4  # only the tail was evaluated after
    assert warm == cold  # greedy decoding over the prefilled cache gives the same reply


async def test_prefill_skips_while_the_context_is_busy(llm: LlamaCppLLM) -> None:
    assert llm._lock.acquire()
    try:
        assert llm.prefill([SYSTEM, ChatMessage("user", WORDS)]) == 0
    finally:
        llm._lock.release()


async def test_the_tail_of_the_last_reply_can_be_timed_again_alone(llm: LlamaCppLLM) -> None:
    """bench-latency's contention figure: the same tail, from the same cached prefix, with nothing else running."""
    from attune.core.errors import LLMError

    messages = [SYSTEM, ChatMessage("user", WORDS + ", what do you think?")]
    llm._llm.reset()
    llm.prime([SYSTEM])
    first, call = await _call(llm, messages)
    prompt, cached = list(call.prompt), call.reused_tokens
    assert len(prompt) == call.prompt_tokens and 0 < cached < len(prompt) - 10 and call.ttft_s > 0
    evaluated: list[int] = []
    original = llm._llm.eval

    def recording(tokens: list[int]) -> None:
        evaluated.extend(tokens)
        original(tokens)

    llm._llm.eval = recording
    try:
        alone = llm.first_token_alone(prompt, cached)
    finally:
        del llm._llm.eval
    assert 0 < alone < 60
    assert evaluated[: len(prompt) - cached] == prompt[cached:]  # the whole tail again, from the cached prefix
    again, again_call = await _call(llm, messages)
    assert again == first and again_call.reused_tokens == len(prompt) - 1
    llm._llm.reset()
    with pytest.raises(LLMError, match="no longer holds"):
        llm.first_token_alone(prompt, cached)


async def test_the_prompts_last_token_is_evaluated_with_the_tail_not_in_a_pass_of_its_own(llm: LlamaCppLLM) -> None:
    """The completion call finds the exact prompt cached and samples from the tail step's logits."""
    messages = [SYSTEM, ChatMessage("user", WORDS + ", what do you think?")]
    llm._llm.reset()
    first = await _reply(llm, messages)
    starts: list[tuple[int, int]] = []
    original = llm._llm.eval

    def recording(tokens: list[int]) -> None:
        starts.append((llm._llm.n_tokens, len(tokens)))
        original(tokens)

    llm._llm.eval = recording
    try:
        llm._llm.reset()
        again, call = await _call(llm, messages)
    finally:
        del llm._llm.eval
    n = call.prompt_tokens
    assert again == first  # greedy: the same reply from the same logits
    assert (0, n) in starts or sum(k for s, k in starts if s < n) == n  # the prompt, whole, in the tail's steps
    assert all(s + k <= n or s >= n for s, k in starts)  # no step straddles the prompt's end
    assert not any(s == n - 1 and k == 1 for s, k in starts)  # never the last prompt token alone


@pytest.mark.parametrize("note_first", [True, False])
async def test_the_tail_after_the_turn_is_what_the_prefill_could_not_know(llm: LlamaCppLLM, note_first: bool) -> None:
    """The user turn's composition, with the real tokenizer and KV cache (issue 23): with the note and the tone
    first, the prefill of the settled words leaves only the last word and the template's closing to evaluate
    after the turn; with the words first, the note and the tone are in the tail too."""
    from attune.agent.brain import PromptBuilder, qwen_chat_text
    from attune.agent.memory import ConversationMemory
    from attune.agent.strategy import choose_response
    from attune.core.emotion import EmotionCategory
    from tests.fakes import make_result

    builder = PromptBuilder(note_first=note_first)
    voice = make_result(EmotionCategory.SAD, 0.0, 2.0)
    plan = choose_response(voice, "complement")
    words = "I lost my job this morning and I do not know what to tell my family."
    settled = " ".join(words.split()[:-1])  # LocalAgreement leaves the last word unsettled
    llm._llm.reset()
    while llm.prefill([*builder.prefix(), builder.turn_start(voice, plan, settled)], max_new=64) > 0:
        pass
    final = builder.build(ConversationMemory(), words, voice, plan)
    _, call = await _call(llm, final)
    tail = call.prompt_tokens - call.reused_tokens
    closing = llm.prompt_tokens([ChatMessage("user", "x")])[-5:]  # <|im_end|> \n <|im_start|> assistant \n
    assert llm.prompt_tokens(final)[-5:] == closing
    last_word = len(llm._llm.tokenize(b" family.", add_bos=False, special=False))
    if note_first:
        assert tail == last_word + len(closing)  # nothing of the note, the tone or the settled words
        assert tail <= 10
        assert qwen_chat_text(final).count(voice.to_context_string()) == 1
    else:
        note = len(llm._llm.tokenize(f"\n{voice.to_context_string()} (Tone: x.)".encode(), add_bos=False))
        assert tail >= last_word + note + len(closing) - 2
