#!/usr/bin/env python3
"""Time to the first token of a prompt's tail by the size of llama.cpp's evaluation steps (``EVAL_CHUNK``): the
same prompt (a persona prefix and a 3-5 s user turn with its voice note), cut back to ``len - tail`` cached
tokens, its tail evaluated again with steps of 16, 32 and 64 tokens, three times each, nothing else running;
then, with the configured steps, the prompt's last token in the tail's step (now) against a one-token pass of
its own (before), interleaved, five times each. docs/BENCHMARKS.md, "Third session". Run from the repository
root:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval-steps.py [qwen2.5-1.5b|qwen2.5-0.5b]
"""

from __future__ import annotations

import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune.backends.base import ChatMessage  # noqa: E402
from attune.backends.llm import llama_cpp_backend  # noqa: E402
from attune.config import load_config  # noqa: E402
from attune.models import model_path  # noqa: E402

SYSTEM = ("You are Attune, a kind voice companion. You listen to how people feel and answer briefly and warmly, "
          "in one or two short sentences. ") * 3
USER = ("I went to the doctor yesterday and she said that everything looks fine, but I am still worried about it."
        "\n[Voice: anxious, fairly sure] (Tone: calm, reassuring.)")


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-1.5b"
    config = load_config()
    llm = llama_cpp_backend.LlamaCppLLM(model_path(config.models_dir(), name))
    prompt = llm.prompt_tokens([ChatMessage("system", SYSTEM), ChatMessage("user", USER)])
    llm._llm.reset()
    llm._llm.eval(prompt)
    print(f"{name}: prompt of {len(prompt)} tokens; time to the first token, 3 repeats (ms)")
    for tail in (8, 16, 24, 32):
        for step in (16, 32, 64):
            llama_cpp_backend.EVAL_CHUNK = step
            times = [round(1000 * llm.first_token_alone(prompt, len(prompt) - tail)) for _ in range(3)]
            print(f"tail {tail:2d} tokens, steps of {step:2d}: {times}")
    llama_cpp_backend.EVAL_CHUNK = config_step = STEP
    steps = {"in the tail's step": llama_cpp_backend.LlamaCppLLM._evaluate_prompt, "a pass of its own": _own_pass}
    for tail in (8, 24, 32):
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(5):
            for label, fn in steps.items():
                llama_cpp_backend.LlamaCppLLM._evaluate_prompt = fn  # type: ignore[method-assign]
                times[label].append(1000 * llm.first_token_alone(prompt, len(prompt) - tail))
        print(f"tail {tail:2d} tokens, steps of {config_step}, last token "
              + "; ".join(f"{k}: median {statistics.median(v):.0f} ms" for k, v in times.items()))
    return 0


STEP = llama_cpp_backend.EVAL_CHUNK


def _own_pass(self: llama_cpp_backend.LlamaCppLLM, prompt: list[int], stop: threading.Event) -> bool:
    """The steps as they were: all but the last token, which the completion call then evaluates alone."""
    while not stop.is_set():
        if self._extend_cache(prompt[:-1], llama_cpp_backend.EVAL_CHUNK) == 0:
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
