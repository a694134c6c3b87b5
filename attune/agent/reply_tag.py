"""The streaming form of the brain's ``{text, emotion}`` reply: an optional short leading tag such as ``[calm]``.

``ReplyTagParser`` is pure: ``push(piece)`` returns the text to pass on (the tag stripped), and ``emotion`` holds
the tag's category once seen. It holds back at most ``MAX_TAG_CHARS`` characters at the start of a reply, so
speech is never delayed by more than the tag itself; a reply without a tag passes through unchanged.
"""

from __future__ import annotations

import re

from attune.core.emotion import EmotionCategory

MAX_TAG_CHARS = 24
_TAG = re.compile(r"^\s*[\[(<]\s*([A-Za-z_ -]{2,20})\s*[\])>]\s*")


class ReplyTagParser:
    def __init__(self) -> None:
        self._head = ""
        self._decided = False
        self._after_tag = False  # drop the whitespace between the tag and the text
        self.emotion: EmotionCategory | None = None
        self.raw_tag: str | None = None

    def push(self, piece: str) -> str:
        if self._decided:
            if self._after_tag:
                piece = piece.lstrip()
                self._after_tag = not piece
            return piece
        self._head += piece
        stripped = self._head.lstrip()
        if not stripped:
            return ""
        if stripped[0] not in "[(<":
            return self._release()
        m = _TAG.match(self._head)
        if m:
            self.raw_tag = m.group(1).strip().lower()
            try:
                self.emotion = EmotionCategory(self.raw_tag)
            except ValueError:
                self.emotion = None
            self._head = self._head[m.end():]
            self._after_tag = not self._head
            return self._release()
        if len(self._head) > MAX_TAG_CHARS or any(c in stripped for c in "])>"):
            return self._release()  # not a tag after all: speak it
        return ""

    def flush(self) -> str:
        return "" if self._decided else self._release()

    def _release(self) -> str:
        self._decided = True
        out, self._head = self._head, ""
        return out
