"""bench-latency's figures beside the audio measure: the LLM's first token inside the session and alone."""

from __future__ import annotations

from attune.backends.base import Completion, LLMCapabilities
from attune.core.errors import LLMError
from attune_lab.bench_latency import _bench_summary, _first_token_alone

LAYER = "unit"  # STYLE.md layer 1


class Replayer:
    capabilities = LLMCapabilities(replay=True)

    def __init__(self, seconds: float = 0.25, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.calls: list[tuple[list[int], int]] = []

    def first_token_alone(self, prompt: list[int], cached: int) -> float:
        self.calls.append((prompt, cached))
        if self.fail:
            raise LLMError("the KV cache no longer holds that prompt's prefix")
        return self.seconds


CALL = Completion(prompt_tokens=40, reused_tokens=31, prompt=tuple(range(40)))


def test_the_last_reply_is_replayed_from_the_prefix_it_reused() -> None:
    llm = Replayer()
    assert _first_token_alone(llm, CALL) == 250.0  # type: ignore[arg-type]
    assert llm.calls == [(tuple(range(40)), 31)]


def test_no_replay_without_a_replaying_engine_a_prompt_or_a_cache() -> None:
    class Server(Replayer):
        capabilities = LLMCapabilities()  # declares no replay: never asked

    assert _first_token_alone(Server(), CALL) is None  # type: ignore[arg-type]
    assert _first_token_alone(Replayer(), None) is None  # type: ignore[arg-type]  # no call was made
    assert _first_token_alone(Replayer(), Completion(prompt_tokens=40)) is None  # type: ignore[arg-type]
    assert _first_token_alone(Replayer(fail=True), CALL) is None  # type: ignore[arg-type]


def test_the_summary_has_both_first_token_figures() -> None:
    base = {"voice_to_voice_ms": 900.0, "first_model_word_ms": 900.0, "tail_tokens": 20, "input_lag_max_ms": 0.0,
            "premature_cutoff": False, "stages_ms": {}}
    per_file = [{**base, "llm_ttft_ms": 600.0 + 10 * i, "llm_ttft_alone_ms": 400.0 + 10 * i} for i in range(5)]
    per_file.append({**base, "llm_ttft_ms": None, "llm_ttft_alone_ms": None})
    summary = _bench_summary(per_file, {})
    assert summary["llm_ttft_ms"]["p50"] == 620.0 and summary["llm_ttft_alone_ms"]["p50"] == 420.0
