"""Attune: an emotion-aware, real-time voice agent that hears how a person feels and answers in a fitting voice."""

__version__ = "0.1.0"
