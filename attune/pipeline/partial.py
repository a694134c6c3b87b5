"""Transcribing while the person speaks: the pure cores. ``TranscriptAgreement`` keeps the words that successive
Whisper passes over the growing turn agree on (a LocalAgreement-2 policy: a word is settled once two passes in a
row put it at the same place), and ``DecodeSchedule`` says when a new pass is due.

Both are synchronous and loop-free; the session's listener runs the passes off the event loop, sends the settled
words as ``conversation.item.input_audio_transcription.delta`` events and feeds them to the LLM's KV cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NORM = re.compile(r"[^a-z0-9']+")


def _key(word: str) -> str:
    """A word compared across passes: lower case, punctuation dropped ("Thinking," == "thinking")."""
    return _NORM.sub("", word.lower().replace("\u2019", "'"))


class TranscriptAgreement:
    """``push(hypothesis)`` after each pass over the turn so far; returns the words newly settled (possibly none).

    Contract: the settled prefix only grows; a later pass that disagrees with it does not take words back (the
    final pass at the end of the turn decides the whole text anyway). ``settled`` is the settled prefix,
    ``tentative`` the rest of the latest hypothesis. The last word of a pass is never settled: the audio may
    have cut it in half.
    """

    def __init__(self) -> None:
        self._settled: list[str] = []
        self._previous: list[str] = []
        self._latest: list[str] = []

    @property
    def settled(self) -> str:
        return " ".join(self._settled)

    @property
    def tentative(self) -> str:
        return " ".join(self._latest[len(self._settled):])

    @property
    def latest(self) -> str:
        """The latest pass's whole text (settled words included)."""
        return " ".join(self._latest)

    def push(self, hypothesis: str) -> str:
        words = hypothesis.split()
        n = len(self._settled)
        if [_key(w) for w in words[:n]] != [_key(w) for w in self._settled]:
            self._previous, self._latest = words, words  # the pass disagrees with what is settled: wait
            return ""
        agree = n
        limit = min(len(words) - 1, len(self._previous) - 1)
        while agree < limit and _key(words[agree]) == _key(self._previous[agree]):
            agree += 1
        new = words[n:agree]
        self._settled.extend(new)
        self._previous, self._latest = words, words
        return " ".join(new)

    def reset(self) -> None:
        self._settled, self._previous, self._latest = [], [], []


@dataclass
class DecodeSchedule:
    """A new pass is due once the turn has ``step_s`` more audio than at the last pass and ``min_s`` in all.

    ``due(turn_s)`` asks; ``started(turn_s)`` records a pass over ``turn_s`` of audio. One pass at a time is the
    caller's business (it asks only when none is running)."""

    step_s: float = 0.3
    min_s: float = 0.6
    _last_s: float = 0.0

    def due(self, turn_s: float) -> bool:
        return turn_s >= self.min_s and turn_s - self._last_s >= self.step_s

    def started(self, turn_s: float) -> None:
        self._last_s = turn_s

    def reset(self) -> None:
        self._last_s = 0.0
