"""What the TTS backends share: text validation and a simple sentence splitter for per-sentence streaming."""

from __future__ import annotations

import re

from attune.core.errors import TTSError

MAX_TTS_CHARS = 2000  # one reply; longer text is a caller bug
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def check_text(text: object, backend: str) -> str:
    """Stripped text, or a non-retryable ``TTSError`` for non-strings, empty/unspeakable or oversized text."""
    if not isinstance(text, str):
        raise TTSError(f"text must be a string, got {type(text).__name__}", backend=backend)
    stripped = text.strip()
    if not stripped or not any(ch.isalnum() for ch in stripped):
        raise TTSError("nothing to speak: the text is empty or has no letters or digits", backend=backend)
    if len(stripped) > MAX_TTS_CHARS:
        raise TTSError(f"text is too long ({len(stripped)} > {MAX_TTS_CHARS} characters)", backend=backend)
    return stripped


def split_sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if any(c.isalnum() for c in s)]
