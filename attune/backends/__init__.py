"""Pluggable engines behind small protocols: emotion, ASR, LLM and TTS."""
