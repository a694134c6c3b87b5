"""What the TTS backends share: text validation.

A backend speaks the text it is given as one utterance and never re-splits it: splitting a reply into sentences
is the pipeline's ``SentenceSplitter``, the one splitter (so "3 p.m. today" is not cut at "p.m.")."""

from __future__ import annotations

from attune.core.errors import TTSError

MAX_TTS_CHARS = 2000  # one reply; longer text is a caller bug


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
