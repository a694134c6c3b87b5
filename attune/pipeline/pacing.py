"""Settings that help a slow machine and hurt a fast one, derived from the LLM speed measured at start-up
(``attune.core.machine.LLMSpeed``, timed by ``pipeline.stack.warm_up``) instead of a constant.

Pure. ``first_clause_min_words``: a slow machine speaks the first clause as soon as it has the configured few
words (every token costs ~95 ms there); a fast one writes the next words before a short clause would have been
spoken, so it waits for a couple more and the first sentence is not clipped off on its own. ``first_clause_eta_ms``:
when the reply's first clause will be heard, counted from the end of the turn's speech, the estimate the
acknowledgement chooser (``pipeline.acknowledgement``) compares with its lead: a fast machine hears none.
"""

from __future__ import annotations

from dataclasses import replace

from attune.core.machine import LLMSpeed
from attune.pipeline.reply_values import ReplySettings

SLOW_TOKENS_PER_S = 12.0  # the 2-core AVX2-only EPYC wrote 10.6 tok/s with the 1.5B
FAST_TOKENS_PER_S = 20.0  # the developers' AVX-512/VNNI machine: 20-23 tok/s
EXTRA_WORDS_FAST = 2  # first-clause words added at FAST_TOKENS_PER_S and above
MEASURED_TAIL_TOKENS = 11  # tokens the start-up measurement evaluates (a short user turn in the template)
TOKENS_PER_WORD = 1.3  # English words in Qwen2.5's tokens
TTS_FIRST_MS = 80.0  # Piper's first chunk of a short clause (43-62 ms measured on 2 cores) and the DSP


def first_clause_min_words(speed: LLMSpeed | None, configured: int) -> int:
    """The configured minimum on a slow machine (or unmeasured), up to ``EXTRA_WORDS_FAST`` more on a fast one,
    in proportion between the two speeds."""
    if speed is None or speed.tokens_per_s <= SLOW_TOKENS_PER_S:
        return configured
    share = min(1.0, (speed.tokens_per_s - SLOW_TOKENS_PER_S) / (FAST_TOKENS_PER_S - SLOW_TOKENS_PER_S))
    return configured + round(share * EXTRA_WORDS_FAST)


def first_clause_eta_ms(speed: LLMSpeed | None, *, tail_tokens: int, clause_words: int,
                        elapsed_ms: float = 0.0) -> float | None:
    """When the first clause will be heard, in ms from now, for a reply that started ``elapsed_ms`` ago with
    ``tail_tokens`` to evaluate and will speak its first clause after ``clause_words`` words. None: the LLM's
    speed is unknown (not measured)."""
    if speed is None or speed.tokens_per_s <= 0:
        return None
    per_tail_token = speed.first_token_ms / MEASURED_TAIL_TOKENS
    evaluate = per_tail_token * max(tail_tokens, 1)
    write = clause_words * TOKENS_PER_WORD * 1000.0 / speed.tokens_per_s
    return max(0.0, evaluate + write + TTS_FIRST_MS - elapsed_ms)


def paced(reply: ReplySettings, speed: LLMSpeed | None) -> ReplySettings:
    """``reply`` with the first clause's length for this machine's speed (unchanged when unmeasured)."""
    words = first_clause_min_words(speed, reply.first_clause_min_words)
    return reply if words == reply.first_clause_min_words else replace(reply, first_clause_min_words=words)
