"""What the words say: a small valence lexicon for the transcript, fused with the voice's emotion at turn end.

Acoustic features read arousal well and valence poorly (a loud complaint and loud joy sound alike; happiness is the
prosodic model's weakest class), while words carry valence well. So when the transcript clearly leans positive or
negative, the turn's valence is taken mostly from the words and arousal and dominance stay the voice's.
Pure and synchronous: ``fuse_with_words(voice_result, transcript)`` after ASR, before the strategy.
"""

from __future__ import annotations

import re
from dataclasses import replace

from attune.core.emotion import (
    EmotionResult,
    PrimaryDimensions,
    dimensions_to_likely_emotions,
    predictions_from_scores,
)

TEXT_WEIGHT = 0.65  # share of the fused valence taken from the words when they carry sentiment

NEGATIVE = frozenset("""
    lost lose losing died dead death funeral grief grieving crying cry cried tears sad sadness unhappy depressed
    miserable lonely alone hopeless empty hurt hurts pain painful sick ill scared afraid fear frightened terrified
    panic panicking worried worry worrying anxious nervous stressed stress overwhelmed exhausted tired angry mad
    furious annoyed annoying frustrated frustrating upset hate hated terrible awful horrible worst bad broken
    broke failed fail failing fired late nobody ignored rude useless disappointed disappointing cancelled
    canceled ruined wrong problem problems crashed stuck missed miss bored boring sorry
""".split())

POSITIVE = frozenset("""
    happy glad great good wonderful amazing awesome fantastic excellent love loved lovely excited exciting thrilled
    proud won win winning promotion promoted congratulations thanks thank grateful relieved fun enjoy enjoyed
    beautiful perfect best nice celebrate celebrating delighted hired married engaged
""".split())

# Phrases whose meaning the single words miss ("passed away" is loss; "got the job" is good news).
PHRASES = {
    "passed away": -1.0, "got the job": 1.0, "got in": 1.0, "passed the exam": 1.0, "passed my exam": 1.0,
    "can't wait": 1.0, "cannot wait": 1.0, "no one": -1.0, "good news": 1.0, "bad news": -1.0,
}
NEGATORS = frozenset({"not", "no", "never", "don't", "dont", "didn't", "isn't", "wasn't", "aren't", "can't",
                      "cannot", "won't", "hardly"})
_WORD = re.compile(r"[a-z']+")


def text_valence(text: str) -> tuple[float, int]:
    """(valence -1..1, number of sentiment hits) of ``text``. A negator right before a word flips it."""
    lowered = text.lower().replace("\u2019", "'")
    total = 0.0
    hits = 0
    for phrase, value in PHRASES.items():
        count = len(re.findall(rf"\b{re.escape(phrase)}\b", lowered))
        if count:
            total += value * count
            hits += count
            lowered = re.sub(rf"\b{re.escape(phrase)}\b", " ", lowered)
    words = _WORD.findall(lowered)
    for i, word in enumerate(words):
        value = 1.0 if word in POSITIVE else -1.0 if word in NEGATIVE else 0.0
        if not value:
            continue
        if i > 0 and words[i - 1] in NEGATORS:
            value = -value
        total += value
        hits += 1
    if not hits:
        return 0.0, 0
    return max(-1.0, min(1.0, total / hits * min(1.0, 0.6 + 0.2 * hits))), hits


def fuse_with_words(voice: EmotionResult | None, text: str) -> EmotionResult | None:
    """The turn's emotion with its valence taken mostly from ``text`` when the words carry sentiment.

    Arousal and dominance stay the voice's; the categories are re-derived from the fused dimensions. A result
    the voice could not read (``reliable`` false) or words without sentiment leave ``voice`` unchanged.
    """
    if voice is None or not voice.reliable:
        return voice
    valence, hits = text_valence(text)
    if not hits:
        return voice
    d = voice.dimensions
    fused = PrimaryDimensions(TEXT_WEIGHT * valence + (1 - TEXT_WEIGHT) * d.valence, d.arousal, d.dominance)
    # Words and voice that disagree on valence make the reading less certain, not more.
    agreement = 1.0 - min(1.0, abs(valence - d.valence) / 2.0) * 0.5
    confidence = voice.confidence * agreement
    strength = voice.primary.intensity.typical_score
    predictions = predictions_from_scores(dimensions_to_likely_emotions(fused, k=3), strength,
                                          confidence_cap=confidence)
    return replace(voice, dimensions=fused, predictions=predictions, confidence=confidence,
                   backend=f"{voice.backend}+words")

