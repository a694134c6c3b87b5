"""Conversation memory: the turns the agent and the user actually exchanged, bounded by an estimated token count.

The oldest turns are dropped first, and then down to half the bound (``LOW_WATER``), not just below it: the
history is the front of every prompt after the fixed persona prefix, so dropping one exchange per turn would
change that front every turn and the LLM would evaluate the whole history again each time (~1000 tokens, several
seconds on 2 cores, once a long conversation has filled the bound). Cutting half at once keeps the prompt's front
the same, and its KV cache valid, for the many turns until the bound is reached again. On barge-in the session
records only the part of the reply that was heard.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from attune.backends.base import ChatMessage

LOW_WATER = 0.5  # share of max_tokens the history is cut down to once it is over the bound
CHARS_PER_TOKEN = 3.6  # English text in Qwen2.5's tokenizer, measured on conversational replies; an estimate


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (the real count is the backend's); +4 per message for the chat template's markers."""
    return int(math.ceil(len(text) / CHARS_PER_TOKEN)) + 4


@dataclass(frozen=True)
class Exchange:
    role: str  # user | assistant
    content: str
    interrupted: bool = False


class ConversationMemory:
    """A token-bounded history. ``add_user``/``add_assistant`` then ``messages()`` for the prompt."""

    def __init__(self, max_tokens: int = 1024, count_tokens: Callable[[str], int] = estimate_tokens) -> None:
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens
        self._items: deque[Exchange] = deque()

    def add_user(self, text: str) -> None:
        self._add(Exchange("user", text.strip()))

    def add_assistant(self, text: str, *, interrupted: bool = False) -> None:
        """Record what the user heard; an interrupted reply is marked with a trailing dash."""
        text = text.strip()
        if not text:
            return
        self._add(Exchange("assistant", text + (" —" if interrupted else ""), interrupted))

    def shorten_last_assistant(self, heard: str) -> bool:
        """The newest assistant message becomes ``heard`` (what the user heard of it, a client says), marked as
        interrupted; an empty ``heard`` removes it. False when there is none or ``heard`` is not shorter."""
        heard = heard.strip()
        for i in range(len(self._items) - 1, -1, -1):
            e = self._items[i]
            if e.role != "assistant":
                continue
            if len(heard) >= len(e.content.removesuffix(" —")):
                return False
            if heard:
                self._items[i] = Exchange("assistant", heard + " —", True)
            else:
                del self._items[i]
            return True
        return False

    def remove(self, role: str, text: str) -> bool:
        """Forget the newest ``role`` message whose content contains ``text`` (a client's item delete)."""
        for i in range(len(self._items) - 1, -1, -1):
            e = self._items[i]
            if e.role == role and text.strip() and text.strip() in e.content:
                del self._items[i]
                return True
        return False

    def messages(self) -> list[ChatMessage]:
        return [ChatMessage(e.role, e.content) for e in self._items]

    @property
    def exchanges(self) -> list[Exchange]:
        return list(self._items)

    def tokens(self) -> int:
        return sum(self.count_tokens(e.content) for e in self._items)

    def clear(self) -> None:
        self._items.clear()

    def _add(self, exchange: Exchange) -> None:
        if not exchange.content:
            return
        self._items.append(exchange)
        if self.tokens() > self.max_tokens:
            keep = 2 if exchange.role == "assistant" else 1  # the newest exchange, with the turn it answers
            while len(self._items) > keep and self.tokens() > self.max_tokens * LOW_WATER:
                self._items.popleft()
            while len(self._items) > 1 and self.tokens() > self.max_tokens:  # one pair over the bound: the bound wins
                self._items.popleft()
        # A history must not start with the assistant: the chat template expects the user first.
        while self._items and self._items[0].role == "assistant":
            self._items.popleft()
