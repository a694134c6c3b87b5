"""The agent's replies on the real 0.5B model (the weakest one shipped): the prompt's worked turns sit in the
cached prefix, and on key scenarios the replies keep the checks that must always hold."""

from __future__ import annotations

import pytest

from attune.agent.brain import PromptBuilder
from attune.backends.base import ChatMessage
from attune.backends.llm.llama_cpp_backend import LlamaCppLLM
from attune_lab.reply_eval import SCENARIOS, run_eval
from tests.engines_util import installed_model

LAYER = "real"  # STYLE.md layer 4: real models on real audio

MUST_HOLD = ("length", "no_readback", "plain_text", "no_inversion", "answers", "no_ai_meta", "speakable")
KEY_SCENARIOS = ("grief", "mismatch", "baby", "capital")  # grief: the reply DESIGN.md §3 recorded going wrong


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    return LlamaCppLLM(installed_model("qwen2.5-0.5b"), n_ctx=1024)


async def test_key_scenarios_keep_the_must_hold_checks(llm: LlamaCppLLM) -> None:
    builder = PromptBuilder()
    prefix_len = llm.prime(builder.prefix())
    scenarios = tuple(s for s in SCENARIOS if s.name in KEY_SCENARIOS)
    reports = await run_eval(llm, builder, max_tokens=64, temperature=0.0, scenarios=scenarios)
    stream = llm.stream([*builder.prefix(), ChatMessage("user", "Hello.")], max_tokens=2, temperature=0.0)
    assert [p async for p in stream] and stream.completion is not None
    assert stream.completion.reused_tokens >= prefix_len  # the worked turns are served from the KV cache
    assert sorted(r.scenario.name for r in reports) == sorted(KEY_SCENARIOS)
    failed = [(r.scenario.name, c.name, c.detail, r.reply) for r in reports for c in r.checks
              if c.applicable and not c.passed and c.name in MUST_HOLD]
    assert not failed
    assert all(r.reply for r in reports)
