"""bench-latency's figures beside the audio measure: the LLM's first token inside the session and alone."""

from __future__ import annotations

from typing import Any

from attune.core.errors import LLMError
from attune_lab.bench_latency import _bench_summary, _first_token_alone

LAYER = "unit"  # STYLE.md layer 1


class Replayer:
    def __init__(self, prompt: list[int], seconds: float = 0.25, fail: bool = False) -> None:
        self.last_prompt, self.seconds, self.fail = prompt, seconds, fail
        self.calls: list[tuple[list[int], int]] = []

    def first_token_alone(self, prompt: list[int], cached: int) -> float:
        self.calls.append((prompt, cached))
        if self.fail:
            raise LLMError("the KV cache no longer holds that prompt's prefix")
        return self.seconds


def test_the_last_reply_is_replayed_from_the_prefix_it_reused() -> None:
    llm = Replayer(list(range(40)))
    trace: dict[str, Any] = {"llm_prompt_tokens": 40, "llm_reused_tokens": 31}
    assert _first_token_alone(llm, trace) == 250.0
    assert llm.calls == [(list(range(40)), 31)]


def test_no_replay_without_a_replaying_engine_a_matching_prompt_or_a_cache() -> None:
    trace: dict[str, Any] = {"llm_prompt_tokens": 40, "llm_reused_tokens": 31}
    assert _first_token_alone(object(), trace) is None  # a server LLM: nothing to replay
    assert _first_token_alone(Replayer(list(range(39))), trace) is None  # the last stream was another prompt
    assert _first_token_alone(Replayer(list(range(40))), {"llm_prompt_tokens": 40}) is None
    assert _first_token_alone(Replayer(list(range(40)), fail=True), trace) is None


def test_the_summary_has_both_first_token_figures() -> None:
    base = {"voice_to_voice_ms": 900.0, "first_model_word_ms": 900.0, "tail_tokens": 20, "input_lag_max_ms": 0.0,
            "premature_cutoff": False, "stages_ms": {}}
    per_file = [{**base, "llm_ttft_ms": 600.0 + 10 * i, "llm_ttft_alone_ms": 400.0 + 10 * i} for i in range(5)]
    per_file.append({**base, "llm_ttft_ms": None, "llm_ttft_alone_ms": None})
    summary = _bench_summary(per_file, {})
    assert summary["llm_ttft_ms"]["p50"] == 620.0 and summary["llm_ttft_alone_ms"]["p50"] == 420.0
