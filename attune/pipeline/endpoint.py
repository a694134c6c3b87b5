"""Predicting the end of a turn: how much silence to wait for, from what the end of the speech sounds like
(smart-turn's P(complete)) and what the words so far say (a sentence left hanging on "and", "to", "is" ...).

Pure and synchronous. ``EndOfTurnPolicy.required_silence_ms(probability, words)`` is asked whenever either input
changes; the session commits the turn once the silence since the last voiced chunk reaches the answer. Silence
alone is a poor judge: 400 ms is slow for "Thanks!" and too quick for "I was thinking... maybe".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words a finished English sentence rarely ends on: conjunctions, prepositions, articles and determiners,
# auxiliaries and modals, subject pronouns, intensifiers. Heard last, the speaker is most likely going on.
HANGING_WORDS = frozenset("""
    and or but so because cause if when while although though unless until since than which who whose whom
    where whether as to of in on at by for with from into onto about over under after before between through
    without like the a an my your his her its our their some any every each no
    is am are was were be been being do does did have has had will would shall should can could may might must
    i you he she we they i'm i've i'd you're we're they're there's gonna wanna very really just also even
    um uh er erm
""".split())
# Openers of a subordinate clause: "If it rains tomorrow." is not a sentence on its own.
SUBORDINATE_OPENERS = frozenset("if when whenever while because although though unless until since after before "
                                "once whether as".split())
_WORD = re.compile(r"[a-z']+")


def words_unfinished(text: str) -> bool:
    """True when the transcript so far reads as a sentence left hanging: it ends on a hanging word, an ellipsis
    or a comma, or without a full stop, question or exclamation mark, or it is a lone subordinate clause
    ("When I got home tonight.") with no comma after its opener."""
    stripped = text.strip().lower().replace("\u2019", "'")
    words = _WORD.findall(stripped)
    if not words:
        return False
    if stripped.endswith(("...", "\u2026", ",", "-")) or words[-1] in HANGING_WORDS:
        return True
    if not stripped.endswith((".", "?", "!")):  # Whisper closes a sentence it heard finished
        return True
    return words[0] in SUBORDINATE_OPENERS and "," not in stripped and len(words) < 12


@dataclass(frozen=True)
class EndpointSettings:
    """Silences (ms) to wait for, by how finished the turn sounds; thresholds on smart-turn's P(complete)."""

    complete_ms: int = 200  # P >= confident_threshold and the words are finished
    likely_ms: int = 800  # P >= complete_threshold and the words are finished
    unfinished_ms: int = 1200  # the words say the speaker is going on (or the model has not answered yet)
    worded_ms: int = 800  # P < complete_threshold, but Whisper closed a finished sentence (. ? !, no hanging word)
    # A finished sentence the model doubts or is unsure of (what ``likely_ms`` and ``worded_ms`` wait for) is
    # committed after this silence when the reply has its first sound ready (``pipeline.acknowledgement``): the
    # sound is then heard this much sooner, and a person who only paused is not cut off by it, since their voice
    # stops the sound at once and the turn goes on as one (``turn_policy.ResumeTurn``): they hear a backchannel
    # ("Mm.") in their pause, as a listener gives one. Never shortens a hanging sentence's wait.
    sounded_ms: int = 450
    # The silence a commit may wait at no cost: the speculative reply (started at the silence's beginning) will not
    # have its first audio sooner, so a later commit delays nothing heard and lets a person who paused mid-sentence
    # go on. Derived from the LLM speed measured at start-up (``pipeline.pacing.free_wait_ms``); 0: none.
    free_ms: int = 0
    confident_threshold: float = 0.9
    complete_threshold: float = 0.5  # Pipecat's decision threshold


class EndOfTurnPolicy:
    """``required_silence_ms(probability, words)``: the silence after which the turn is committed.

    ``probability`` is None until the model has answered for this silence (the policy then waits as for an
    unfinished turn, so a slow or failed model costs latency, never a cut-off); ``words`` is None when no
    transcript of the turn so far is known (the model alone decides).
    """

    def __init__(self, settings: EndpointSettings | None = None) -> None:
        self.s = settings or EndpointSettings()

    def required_silence_ms(self, probability: float | None, words: str | None, *, sounded: bool = False) -> int:
        """The rule's silence, or the free wait (``EndpointSettings.free_ms``) when that is longer. ``sounded``:
        the reply has its first sound ready, so a finished sentence the model is unsure of waits ``sounded_ms``
        at most (the free wait, there only without first sounds, does not apply to it)."""
        rule, unsure = self._rule_ms(probability, words)
        if sounded and unsure:
            return min(rule, self.s.sounded_ms)
        return max(rule, min(self.s.free_ms, self.s.unfinished_ms))

    def _rule_ms(self, probability: float | None, words: str | None) -> tuple[int, bool]:
        """The rule's silence, and whether it is the wait of finished words the model is unsure of."""
        s = self.s
        if probability is None or (words is not None and words_unfinished(words)):
            return s.unfinished_ms, False
        if probability < s.complete_threshold:
            # smart-turn often doubts a finished sentence (a falling question, a flat or sad voice: P 0.02 for
            # "Can you tell me something to help me fall asleep tonight?"); finished words then shorten the wait
            return (s.unfinished_ms, False) if words is None else (max(s.worded_ms, s.likely_ms), True)
        if probability >= s.confident_threshold:
            return s.complete_ms, False
        return s.likely_ms, words is not None
