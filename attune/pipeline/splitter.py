"""Sentence splitting for streaming TTS: LLM text pieces in, speakable pieces out, the first one as early as it
can stand alone.

``SentenceSplitter`` is pure and synchronous: ``push(text)`` returns the pieces completed by that text, ``flush()``
the rest at the end of the reply. The first piece of a reply is released at a clause boundary (comma, semicolon,
colon, dash) once it holds ``first_clause_min_words`` words; after that, whole sentences. A period after a known
abbreviation, inside a number ("3.5") or in a mid-sentence ellipsis does not end a sentence.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "approx", "no", "fig", "mt",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m", "u.s",
})
SENTENCE_END = ".!?…"
CLAUSE_END = ",;:—–"
CLOSERS = "\"')]}»”’"
MAX_PIECE_WORDS = 40  # a run-on with no punctuation is cut at a space after this many words
FIRST_PIECE_MAX_WORDS = 12  # ... and the first piece of a reply after this many, so speech starts soon
_WORD = re.compile(r"\S+")


class SentenceSplitter:
    """Accumulates streamed text and releases speakable pieces; see the module docstring for the rules."""

    def __init__(self, first_clause_min_words: int = 2, min_sentence_chars: int = 2) -> None:
        self.first_clause_min_words = first_clause_min_words
        self.min_sentence_chars = min_sentence_chars
        self._buf = ""
        self._released = 0  # pieces released so far in this reply

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if len(piece) >= self.min_sentence_chars or any(ch.isalnum() for ch in piece):
                out.append(piece)
                self._released += 1
        return out

    def flush(self) -> list[str]:
        piece, self._buf = self._buf.strip(), ""
        self._released = 0
        return [piece] if any(ch.isalnum() for ch in piece) else []

    def reset(self) -> None:
        self._buf, self._released = "", 0

    def _find_cut(self) -> int | None:
        buf = self._buf
        i = 0
        while i < len(buf):
            ch = buf[i]
            if ch == "\n" and buf[:i].strip():
                return i + 1
            if ch in SENTENCE_END:
                end = self._sentence_end(buf, i)
                if end == -1:
                    return None  # undecidable until more text arrives
                if end is not None:
                    return end
                while i + 1 < len(buf) and buf[i + 1] in SENTENCE_END:
                    i += 1  # the rest of an ellipsis or "?!" run was judged with its first mark
            elif ch in CLAUSE_END and self._released == 0 and self._clause_ready(buf, i):
                return i + 1
            i += 1
        limit = FIRST_PIECE_MAX_WORDS if self._released == 0 else MAX_PIECE_WORDS
        if len(_WORD.findall(buf)) > limit:
            last_space = buf.rstrip().rfind(" ")
            return last_space + 1 if last_space > 0 else None
        return None

    def _clause_ready(self, buf: str, i: int) -> bool:
        if i + 1 >= len(buf):
            return False  # wait: "1,000" must not be cut at the comma
        if not buf[i + 1].isspace():
            return False
        return len(_WORD.findall(buf[:i])) >= self.first_clause_min_words

    def _sentence_end(self, buf: str, i: int) -> int | None:
        """Index just past the sentence ending at ``buf[i]``; None if it does not end one, -1 if undecidable."""
        j = i + 1
        while j < len(buf) and (buf[j] in SENTENCE_END or buf[j] in CLOSERS):
            j += 1
        if j >= len(buf):
            return -1
        if not buf[j].isspace():
            return None  # "3.5", "e.g", "file.txt"
        if buf[i] == "." and self._is_abbreviation(buf, i):
            return None
        run = buf[i:j]
        if run.startswith("..") or run.startswith("…"):
            k = j
            while k < len(buf) and buf[k].isspace():
                k += 1
            if k >= len(buf):
                return -1
            if buf[k].islower():
                return None  # "well... maybe" goes on
        return j

    @staticmethod
    def _is_abbreviation(buf: str, i: int) -> bool:
        start = i
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:i].lower().strip("\"'([")
        if word in ABBREVIATIONS:
            return True
        return len(word) == 1 and word.isalpha() and word != "i"  # an initial: "J. Smith"
