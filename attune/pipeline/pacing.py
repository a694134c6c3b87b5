"""Settings that help a slow machine and hurt a fast one, derived from the LLM speed measured at start-up
(``attune.core.machine.LLMSpeed``, timed by ``pipeline.stack.warm_up``) instead of a constant.

Pure. ``first_clause_min_words``: a slow machine speaks the first clause as soon as it has the configured few words
(every token costs ~95 ms there); a fast one writes the next words before a short clause would have been spoken, so
it waits for a couple more and the first sentence is not clipped off on its own, unless a first sound
(``agent.acknowledgements``) has answered already: then the model's words are what the person waits for.
``first_clause_eta_ms``: when the reply's first clause will be heard, counted from the end of the turn's speech, the
estimate the acknowledgement chooser (``pipeline.acknowledgement``) compares with its lead: a fast machine hears
none. ``free_wait_ms``: how long the end-of-turn policy may wait before committing at no cost, since the speculative
reply's first clause will not be ready sooner; a slow machine gets a longer one, so fewer turns are cut off while
the person only paused (``EndpointSettings.free_ms``). ``lone_voice_to_voice_ms``: a lone session's voice-to-voice
on this machine, the budget the server's derived admission fits the waits of a crowd into.
"""

from __future__ import annotations

from dataclasses import replace

from attune.core.machine import LLMSpeed
from attune.pipeline.endpoint import EndpointSettings
from attune.pipeline.reply_values import ReplySettings

SLOW_TOKENS_PER_S = 12.0  # the 2-core AVX2-only EPYC wrote 10.6 tok/s with the 1.5B
FAST_TOKENS_PER_S = 20.0  # the developers' AVX-512/VNNI machine: 20-23 tok/s
EXTRA_WORDS_FAST = 2  # first-clause words added at FAST_TOKENS_PER_S and above
MEASURED_TAIL_TOKENS = 11  # tokens the start-up measurement evaluates (a short user turn in the template)
TOKENS_PER_WORD = 1.3  # English words in Qwen2.5's tokens
TTS_FIRST_MS = 80.0  # Piper's first chunk of a short clause (43-62 ms measured on 2 cores) and the DSP
# Prompt tokens a turn leaves to evaluate after its speech (scripts/prompt-tail.py, the eval-replies scenarios'
# median): the note and the tone first, prefilled; the words first, the note and the tone after them.
TAIL_TOKENS = {True: 8, False: 28}
TYPICAL_CLAUSE_WORDS = 8  # words of a reply's first clause as spoken (an assumption: "I'm sorry to hear that.")
TYPICAL_FIRST_CLAUSE = "Oh no, I'm sorry that sounds so hard."  # TYPICAL_CLAUSE_WORDS words, timed at start-up
FREE_SHARE = 0.8  # of the estimated readiness: the estimate leaves out the ASR pass, and this keeps it early


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
    """``reply`` with the first clause's length for this machine's speed (unchanged when unmeasured). Unchanged
    too with first sounds on (``acknowledgements``): the person has heard the agent answer already, and what they
    wait for is the model's first words, which a longer first clause delays (a reply's early comma, "I'm sorry,",
    is where a person pauses as well; without it the whole first sentence is the first clause anyway). Measured:
    in one sitting on the developers' machine the pause set's first model word came 1580-1700 ms (p50) after the
    speech with 3-4 words against 1440 with 2, the reply text unchanged (docs/BENCHMARKS.md, "Quiet sitting,
    2026-12-07 17:16-17:39 UTC")."""
    if reply.acknowledgements:
        return reply
    words = first_clause_min_words(speed, reply.first_clause_min_words)
    return reply if words == reply.first_clause_min_words else replace(reply, first_clause_min_words=words)


def free_wait_ms(speed: LLMSpeed | None, *, speculate_ms: int, clause_words: int, note_first: bool) -> int:
    """The silence after which a speculative reply's first clause may first be ready (``FREE_SHARE`` of the
    estimate from the start of the silence; the ASR pass before it is not counted): committing sooner gains
    nothing heard. 0 when the speed is unknown."""
    eta = first_clause_eta_ms(speed, tail_tokens=TAIL_TOKENS[note_first], clause_words=clause_words)
    return 0 if eta is None else int(speculate_ms + FREE_SHARE * eta)


def paced_endpoint(endpoint: EndpointSettings | None, speed: LLMSpeed | None, *, speculate_ms: int,
                   clause_words: int, note_first: bool, acknowledgements: bool) -> EndpointSettings | None:
    """``endpoint`` with its free wait for this machine's speed, at most ``worded_ms``. None with acknowledgements
    on: the first sound is played at the commit, which should then come as early as the words allow."""
    if endpoint is None:
        return None
    free = 0 if acknowledgements else free_wait_ms(speed, speculate_ms=speculate_ms, clause_words=clause_words,
                                                   note_first=note_first)
    # never as long as a hanging sentence's wait: a finished one is not held like it, however slow the machine
    free = min(free, endpoint.worded_ms)
    return endpoint if free == endpoint.free_ms else replace(endpoint, free_ms=free)


def lone_voice_to_voice_ms(speed: LLMSpeed | None, *, asr_pass_ms: float, commit_ms: int,
                           clause_speech_ms: float | None = None, speculate_ms: int | None = None,
                           clause_words: int = TYPICAL_CLAUSE_WORDS) -> float | None:
    """A lone session's voice-to-voice (ms from the end of the speech to the first audio), from the engines'
    speeds measured at start-up, stage by stage: the words (the commit, ``commit_ms``, the end-of-turn wait of a
    finished sentence the model is less sure of, and the final ASR pass, ``asr_pass_ms``: with ``speculate_ms``
    the pass starts that long into the silence, inside the commit's wait, as a lone session's speculative reply
    runs it; None: after the commit), the LLM's first token (as measured), the first clause's words, and that
    clause made audible (``clause_speech_ms``: a typical first clause through the TTS and the prosody DSP while
    the LLM writes on, ``stack.measure_first_clause``; None: ``TTS_FIRST_MS``, Piper's first chunk of a short
    clause alone). The synthesis was the stage this estimate missed: a reply's first audio is its whole first
    clause synthesised, shaped and resampled while the model writes the rest (650-1180 ms from the clause to its
    audio in docs/BENCHMARKS.md's "Issue 21, the crowd's listening" sitting, where 80 ms was counted), so the
    estimate said 1.5-1.7 s for a measured 2.1-2.7 s. A first guess still, replaced by the first reply measured
    alone (``SharedLLM.observe_voice``). None: the LLM's speed is unknown."""
    if speed is None or speed.tokens_per_s <= 0:
        return None
    words = commit_ms + asr_pass_ms if speculate_ms is None else max(float(commit_ms), speculate_ms + asr_pass_ms)
    write = clause_words * TOKENS_PER_WORD * 1000.0 / speed.tokens_per_s
    speech = TTS_FIRST_MS if clause_speech_ms is None else clause_speech_ms
    return words + speed.first_token_ms + write + speech
