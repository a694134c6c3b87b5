"""The first sound: a short vocal response ("Oh no.", "Oh!", "Mm.", "Hm.") played from the speech cache the moment a
turn is committed, when the model's first clause will not be ready soon, as a person says "Oh no." before they
have composed the sentence.

``choose_acknowledgement(words, plan, previous, first_clause_in_ms)`` is pure and returns an ``Acknowledgement``
or None; ``pick_acknowledgement`` adds the estimate (``pipeline.pacing``) and takes the audio from the speech cache,
where start-up rendered every choice (``phrases()``, with ``agent.acknowledgements`` on). It is spoken *before* the
reply and never written into the assistant turn or the conversation memory: the model's text is the same as
without it, and the model never sees it, so it cannot repeat it (the old openings, which the model continued,
changed the text and scored lower). The rules: none when the reply will be ready within ``min_lead_ms`` (a fast
machine hears none) or over a barge-in; never the same words twice in a row; not on every turn (after ``max_run``
turns in a row with one, a turn without); nothing cheerful to bad news, nor unless the plan expresses a glad,
lively feeling; when unsure, a neutral "Mm.".

The model does not know it was said, so it may open with the same sound ("Oh no, I'm so sorry"): ``EchoFilter``
takes such a leading interjection off the reply's first words before they are spoken ("I'm so sorry"), and the
text kept (the reply's transcript and the conversation memory) is what was spoken, so the next turn's prompt never
shows the model a reply that opened with an interjection either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from attune.agent.brain import ResponsePlanLike
from attune.agent.situation import situation_of
from attune.agent.text_affect import text_valence
from attune.backends.base import TTSBackend
from attune.core.audio import trim_silence
from attune.core.emotion import CATEGORY_GROUP, EmotionCategory, EmotionGroup
from attune.core.machine import LLMSpeed
from attune.core.prosody import profile_for
from attune.pipeline.pacing import first_clause_eta_ms
from attune.pipeline.phrases import PhraseVoice

E = EmotionCategory
# Per situation, the acknowledgements in order of preference (the next one when the first was the last heard)
# and the emotions each may be spoken with; the first emotion is its own when the plan's is not among them.
# Soft ones (sympathy) are rendered at a low intensity: quiet and slow, never bright.
CHOICES: dict[str, tuple[str, ...]] = {
    "bad_news": ("Oh no.", "Oh.", "Mm."),
    "good_news": ("Oh!", "Oh, wow.", "Mm!"),
    "thanks": ("Mm.", "Mm-hm."),
    "question": ("Hm.", "Mm."),
    "statement": ("Mm.", "Mm-hm.", "Hm."),
}
VOICES: dict[str, tuple[EmotionCategory, ...]] = {
    "Oh no.": (E.CALM, E.AFFECTIONATE), "Oh.": (E.CALM, E.AFFECTIONATE),
    "Oh!": (E.HAPPY, E.EXCITED), "Oh, wow.": (E.EXCITED, E.HAPPY), "Mm!": (E.HAPPY, E.CONTENT),
    "Mm.": (E.NEUTRAL, E.CALM, E.AFFECTIONATE), "Mm-hm.": (E.NEUTRAL, E.CALM, E.AFFECTIONATE),
    "Hm.": (E.THOUGHTFUL, E.NEUTRAL, E.CALM),
}
CHEERFUL = frozenset({"Oh!", "Oh, wow.", "Mm!"})
SOFT = frozenset({"Oh no.", "Oh."})
SOFT_INTENSITY = 0.4  # sympathy is spoken quietly
INTENSITY = 0.7
# The sound's own silence kept after it: the reply's words follow it (its leading silence trimmed too) after a
# short beat. Piper ends each rendering with 120-210 ms of silence, which delayed the model's first word by as much
# on every turn where the sound, not the model, was what the words waited for (about half of them).
BEAT_S = 0.06


@dataclass(frozen=True)
class AcknowledgementSettings:
    """``min_lead_ms``: no acknowledgement when the first clause is expected sooner than this after the commit;
    ``max_run``: turns in a row that may have one (then one without)."""

    min_lead_ms: float = 300.0
    max_run: int = 2


@dataclass(frozen=True)
class Acknowledgement:
    text: str
    situation: str  # bad_news | good_news | thanks | question | statement (``agent.situation.situation_of``)
    emotion: EmotionCategory  # spoken with this emotion's prosody
    intensity: float


def phrases() -> list[tuple[str, EmotionCategory, float]]:
    """Every (text, emotion, intensity) an acknowledgement can be spoken with: what start-up renders into the
    speech cache, so none is ever synthesised at the moment of a commit."""
    return [(text, emotion, SOFT_INTENSITY if text in SOFT else INTENSITY)
            for text, emotions in VOICES.items() for emotion in emotions]


def _situation(words: str, plan: ResponsePlanLike) -> str:
    """The words' situation, made safe by the plan: bad words or a negative plan are never answered cheerfully."""
    situation = situation_of(words)
    group = CATEGORY_GROUP.get(plan.expressed_emotion, EmotionGroup.NEUTRAL)
    if situation == "good_news":
        valence, hits = text_valence(words)
        if group is not EmotionGroup.POSITIVE_ACTIVATED or (hits and valence < 0):
            return "statement"  # a cheerful sound needs a plan that is glad too
    if situation == "bad_news" and plan.expressed_emotion in (E.HAPPY, E.EXCITED, E.PLAYFUL, E.AMUSED):
        return "statement"  # the plan reads the turn as good: the words and the voice disagree, so stay neutral
    return situation


def choose_acknowledgement(words: str, plan: ResponsePlanLike, previous: Sequence[str | None],
                           first_clause_in_ms: float | None, *, barge_in: bool = False,
                           settings: AcknowledgementSettings | None = None,
                           length_ms: Callable[[str], float | None] | None = None) -> Acknowledgement | None:
    """The acknowledgement for this committed turn, or None.

    ``previous``: what the earlier turns played, oldest first (None for a turn without one); ``first_clause_in_ms``:
    the estimate of when the reply's first clause will be heard, from the commit (None: unknown, as slow as it
    gets). ``barge_in``: the turn interrupted the agent (it is answered by the reply alone). ``length_ms(text)``:
    how long a sound lasts as played (None: unknown, not held against it), asked only of the turn's candidates;
    the model's words wait for the sound to end, so the preferred one that ends before the first clause is due is
    taken, else the shortest ("Mm-hm." is 0.8 s, "Mm." 0.45: on a fast machine the first gave the model's words
    its own length as a wait).
    """
    s = settings or AcknowledgementSettings()
    if barge_in or not words.strip():
        return None
    if first_clause_in_ms is not None and first_clause_in_ms < s.min_lead_ms:
        return None
    recent = list(previous)[-s.max_run:]
    if s.max_run <= 0 or (len(recent) == s.max_run and all(r is not None for r in recent)):
        return None
    last = previous[-1] if previous else None
    situation = _situation(words, plan)
    candidates = [t for t in CHOICES[situation] if t != last]
    if not candidates:
        return None
    text = candidates[0]
    if length_ms is not None and first_clause_in_ms is not None:
        lengths = {t: length_ms(t) or 0.0 for t in candidates}
        fits = [t for t in candidates if lengths[t] <= first_clause_in_ms]
        text = fits[0] if fits else min(candidates, key=lengths.__getitem__)
    return Acknowledgement(text, situation, *_voice(text, plan))


def _voice(text: str, plan: ResponsePlanLike) -> tuple[EmotionCategory, float]:
    """The emotion and intensity ``text`` is spoken with to ``plan``: the plan's emotion where it is one of the
    sound's, else the sound's own."""
    voices = VOICES[text]
    emotion = plan.expressed_emotion if plan.expressed_emotion in voices else voices[0]
    return emotion, SOFT_INTENSITY if text in SOFT else INTENSITY


# Prompt tokens counted before the first token in the estimate the sound is chosen by: the words-first tail when it
# was set (bench-latency's tail p50 22-24). With the note first the tail is 9-13, but the estimate also leaves out
# the first clause's words beyond ``clause_words`` and its synthesis, for which this stands in: with it the estimate
# is ~650-730 ms at the developers' machine's start-up speeds (19-29 tok/s), where the model's first word came
# ~650-750 ms after the commit (docs/BENCHMARKS.md, "The first sound out of the model's way": first model word less
# the commit). Lowering it alone would shorten or skip the sound on turns whose words are not that near.
TYPICAL_TAIL_TOKENS = 24


def pick_acknowledgement(words: str, plan: ResponsePlanLike, *, phrases: PhraseVoice | None, tts: TTSBackend,
                         output_rate: int,
                         previous: Sequence[str | None], speed: LLMSpeed | None, clause_words: int,
                         barge_in: bool) -> tuple[Acknowledgement, np.ndarray] | None:
    """The acknowledgement for a turn and its audio (output rate, its silence trimmed but for ``BEAT_S`` after
    it), from the speech cache's memory front only (never a render at the moment of a commit), in the reply's own
    voice (``tts``); None when none is chosen or it is not cached for that voice and rate.

    The estimate counts from now: a reply chooses its sound once its transcript and plan are known, before its LLM
    call starts (a speculative reply's too, which plays it only at the commit), so nothing of the model's work is
    done yet. Counting from the end of the speech instead took the ASR pass and the end-of-turn wait for the
    model's and skipped the sound on every turn committed after ~800 ms, whose reply came 600 ms after the commit.
    A reply that is ready by the commit all the same plays its words and no sound (``Reply``'s ready-anyway check)."""
    if phrases is None or phrases.tts is not tts or phrases.out_rate != output_rate:
        return None
    eta = first_clause_eta_ms(speed, tail_tokens=TYPICAL_TAIL_TOKENS, clause_words=clause_words)
    sounds: dict[str, np.ndarray | None] = {}  # the candidates' audio as played, each looked up and trimmed once

    def as_played(text: str) -> np.ndarray | None:
        if text not in sounds:
            sounds[text] = _as_played(phrases, text, plan)
        return sounds[text]

    def length_ms(text: str) -> float | None:
        audio = as_played(text)
        return None if audio is None else 1000.0 * len(audio) / output_rate

    ack = choose_acknowledgement(words, plan, previous, eta, barge_in=barge_in, length_ms=length_ms)
    audio = as_played(ack.text) if ack is not None else None
    return (ack, audio) if ack is not None and audio is not None else None


def _as_played(phrases: PhraseVoice, text: str, plan: ResponsePlanLike) -> np.ndarray | None:
    """``text`` as it would be played to ``plan`` (its voice for the plan's emotion): the cached rendering with its
    silence trimmed but for ``BEAT_S`` after it; None when not cached."""
    emotion, intensity = _voice(text, plan)
    speech = phrases.cached(text, emotion, profile_for(emotion, intensity))
    if speech is None:
        return None
    return trim_silence(np.asarray(speech.samples), speech.sample_rate, keep_after_s=BEAT_S)


# Words that make up a leading interjection ("Oh no,", "Oh, wow!", "Hmm,", "Mm-hm."); spellings folded to one.
INTERJECTIONS = frozenset({"oh", "no", "wow", "mm", "hm", "ah", "aw", "dear", "gosh"})
_FOLD = {"mmm": "mm", "hmm": "hm", "hmmm": "hm", "ohh": "oh", "ooh": "oh", "aww": "aw", "ahh": "ah"}
_LEAD = re.compile(r"\s*([A-Za-z]+(?:-[A-Za-z]+)*)[\s,.!?;:\u2026\u2014-]*")


def _fold(word: str) -> str:
    first = word.lower().split("-")[0]  # "Mm-hm" sounds as "Mm" first
    return _FOLD.get(first, first)


def split_echo(acknowledgement: str, text: str) -> tuple[str, str]:
    """``text`` (the reply's first words) as (the leading interjection that opens as ``acknowledgement`` did, the
    rest with its first letter made a capital): "Oh no." then "Oh no, I'm so sorry." -> ("Oh no,", "I'm so
    sorry."); "Mm." then "Mmm, that sounds hard." -> ("Mmm,", "That sounds hard."). ("", text) when the text does
    not open with the acknowledgement's first sound; (text, "") when it is that interjection and nothing more."""
    said = _LEAD.match(acknowledgement)
    first = _LEAD.match(text)
    if said is None or first is None or _fold(first.group(1)) != _fold(said.group(1)):
        return "", text
    at = 0
    while (m := _LEAD.match(text, at)) is not None and m.end() > at and _fold(m.group(1)) in INTERJECTIONS:
        at = m.end()
    rest = text[at:].strip()
    if rest and not rest[0].isalnum():
        return "", text  # a quote or a symbol follows: not an interjection set off from the reply
    return text[:at].strip(), rest[:1].upper() + rest[1:]


class EchoFilter:
    """The reply's sentences in order through ``push``: until the model has said something other than the
    acknowledgement's sound, the sound is taken off (a first clause that is only "Oh no," gives "" and the next
    one is read after it, so "Oh," then "no, I'm sorry." is caught too). ``dropped``: the words taken off."""

    def __init__(self, acknowledgement: str) -> None:
        self.acknowledgement = acknowledgement
        self.dropped = ""
        self._done = False

    def push(self, sentence: str) -> str:
        if self._done:
            return sentence
        held = self.dropped
        dropped, rest = split_echo(self.acknowledgement, f"{held} {sentence}".strip())
        if not dropped:  # held is only ever a dropped interjection, so this is the sentence untouched
            self._done = True
            return sentence
        self.dropped = dropped
        self._done = bool(rest)
        return rest
