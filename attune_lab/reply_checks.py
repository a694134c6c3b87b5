"""Explainable automatic checks of one spoken reply: length, no read-back of the detector's label, plain text,
no sentiment inversion, answers a question, stays on the user's subject, speaks to the user, no talk about being
an AI (or refusing), speakable after normalisation, and not a stock sentence reused across turns.

Pure functions over strings; ``attune_lab.reply_eval`` runs the model and applies them. Each check returns a
``CheckResult`` whose ``detail`` says what tripped it, so a failing reply can be read and understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from attune.core.emotion import EmotionCategory
from attune.core.normalize import normalize_for_tts

MAX_SENTENCES = 2
MAX_WORDS = 40
MIN_WORDS = 1
TEMPLATE_NGRAM = 6  # words in a row that two replies to different turns should not share

# Situations whose valence the reply must not invert ("happy to hear" to a grieving user).
BAD, GOOD, NEUTRAL = "bad", "good", "neutral"
CHEERFUL_TO_BAD = ("happy to hear", "glad to hear", "great to hear", "good to hear", "nice to hear",
                   "congratulations", "congrats", "that's great", "that is great", "that's wonderful",
                   "that's awesome", "how exciting", "so exciting", "wonderful news", "great news", "good news",
                   "i'm happy for you", "i am happy for you", "i'm so happy", "yay",
                   "glad you're feeling", "excited about", "that's nice", "that's really nice", "that's lovely")
SORRY_TO_GOOD = ("sorry to hear", "sorry about", "sorry for", "i'm sorry", "i am sorry", "so sorry",
                 "that's too bad", "too bad", "that's a shame", "unfortunately", "my condolences")

_LABELS = "|".join(sorted((c.value for c in EmotionCategory), key=len, reverse=True))
# "You sound bored and anxious", "you seem quite stressed", "your voice sounds sad", "I detect anxiety".
_READBACK = (
    (re.compile(rf"\byou(?:'re| are)? (?:sound|seem|appear|feel)(?:s|ing)?(?: [\w']+){{0,4}}? (?:{_LABELS})\b", re.I),
     "names the detected emotion"),
    (re.compile(r"\byour voice\b|\bvoice (?:sounds|seems)\b|\btone of voice\b", re.I), "talks about the voice"),
    (re.compile(r"\bI (?:can )?detect|\bdetected\b|\bmy (?:analysis|sensors|readings?)\b", re.I),
     "talks about detection"),
    (re.compile(r"\b(?:elevated|high|raised) pitch\b|\bspeaking (?:quickly|slowly)\b|\bpossibly also\b", re.I),
     "repeats the prosody cues"),
    (re.compile(r"\b(?:slightly|moderately|strongly|intensely) (?:" + _LABELS + r")\b", re.I),
     "repeats the context string's wording"),
    (re.compile(r"\(?\bReply (?:slightly|moderately|strongly|intensely)\b|\bVoice emotion\b|\bTone: ", re.I),
     "leaks the prompt's guidance"),
)
_AI_META = re.compile(
    r"\bas an ai\b|\b(?:an|a) (?:ai|artificial intelligence)(?: language model| assistant| model)?\b|"
    r"\blanguage model\b|\bI (?:don't|do not|can't|cannot) (?:have|feel|experience) (?:feelings|emotions)\b|"
    r"\bvirtual assistant\b|\bI'?m (?:just )?a (?:bot|program|computer)\b|"
    r"\bI (?:don't|do not) have the ability\b|\bI (?:can't|cannot) (?:hear|provide|assist|help)\b", re.I)
_NARRATION = re.compile(r"\bthe user\b|\buser's\b", re.I)
_WORD = re.compile(r"[a-z']{3,}")  # words of three letters or more: "a", "I", "to" say little
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*#|^\s*(?:[-*•+]|\d+[.)])\s+|\[[^\]]*\]\(", re.M)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U00002B00-\U00002BFF\uFE0F]")
_SENTENCE_END = re.compile(r"[.!?]+(?:[\"')\]]*)(?=\s|$)")
_UNSPEAKABLE = re.compile(r"[*#_`\[\]<>{}|\\~^=+@\d]")


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str = ""
    applicable: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "passed": self.passed, "applicable": self.applicable, "detail": self.detail}


def count_sentences(text: str) -> int:
    """Sentences in ``text``: terminal punctuation followed by space or end, plus an unterminated tail."""
    t = text.strip()
    if not t:
        return 0
    ends = list(_SENTENCE_END.finditer(t))
    tail = t[ends[-1].end():].strip() if ends else t
    return len(ends) + (1 if re.search(r"\w", tail) else 0)


def check_length(text: str, max_sentences: int = MAX_SENTENCES, max_words: int = MAX_WORDS) -> CheckResult:
    words, sentences = len(text.split()), count_sentences(text)
    ok = MIN_WORDS <= words <= max_words and 1 <= sentences <= max_sentences
    return CheckResult("length", ok, f"{sentences} sentences, {words} words "
                                     f"(want 1-{max_sentences} and {MIN_WORDS}-{max_words})")


def check_no_readback(text: str) -> CheckResult:
    for pattern, why in _READBACK:
        m = pattern.search(text)
        if m:
            return CheckResult("no_readback", False, f"{why}: {m.group(0)!r}")
    return CheckResult("no_readback", True)


def check_plain_text(text: str) -> CheckResult:
    for pattern, why in ((_MARKDOWN, "markdown or list"), (_EMOJI, "emoji")):
        m = pattern.search(text)
        if m:
            return CheckResult("plain_text", False, f"{why}: {m.group(0)!r}")
    if "\n" in text.strip():
        return CheckResult("plain_text", False, "several lines")
    return CheckResult("plain_text", True)


def check_sentiment(text: str, situation: str) -> CheckResult:
    """A reply to bad news must not cheer, one to good news must not commiserate; neutral: not applicable."""
    if situation not in (BAD, GOOD):
        return CheckResult("no_inversion", True, "neutral situation", applicable=False)
    low = text.lower().replace("\u2019", "'")
    for phrase in CHEERFUL_TO_BAD if situation == BAD else SORRY_TO_GOOD:
        if re.search(rf"\b{re.escape(phrase)}\b", low):
            return CheckResult("no_inversion", False, f"{phrase!r} to {situation} news")
    return CheckResult("no_inversion", True)


def check_answers(text: str, answer_keywords: tuple[str, ...]) -> CheckResult:
    """When the user asked something, the reply holds one of the expected answer words."""
    if not answer_keywords:
        return CheckResult("answers", True, "no question", applicable=False)
    low = text.lower()
    hit = next((k for k in answer_keywords if re.search(rf"\b{re.escape(k.lower())}", low)), None)
    return CheckResult("answers", hit is not None, f"found {hit!r}" if hit else f"none of {list(answer_keywords)}")


def check_speaks_to_user(text: str, user_text: str) -> CheckResult:
    """The reply talks to the user: no narration about "the user", no parroting of the user's own words."""
    m = _NARRATION.search(text)
    if m:
        return CheckResult("speaks_to_user", False, f"narrates: {m.group(0)!r}")
    said, words = set(_WORD.findall(user_text.lower())), _WORD.findall(text.lower())
    echoed = sum(w in said for w in words) / max(len(words), 1)
    if len(words) >= 4 and echoed >= 0.8 and not user_text.rstrip().endswith("?"):  # answers reuse the question
        return CheckResult("speaks_to_user", False, f"{echoed:.0%} of its words repeat the user's")
    return CheckResult("speaks_to_user", True)


def check_on_topic(text: str, topic: tuple[str, ...]) -> CheckResult:
    """The reply mentions the user's subject: one of the scenario's topic word stems."""
    if not topic:
        return CheckResult("on_topic", True, "no topic given", applicable=False)
    low = text.lower()
    hit = next((t for t in topic if re.search(rf"\b{re.escape(t)}", low)), None)
    return CheckResult("on_topic", hit is not None, f"found {hit!r}" if hit else f"none of {list(topic)}")


def check_no_ai_meta(text: str) -> CheckResult:
    m = _AI_META.search(text)
    return CheckResult("no_ai_meta", m is None, f"{m.group(0)!r}" if m else "")


def check_speakable(text: str) -> CheckResult:
    """After ``normalize_for_tts`` nothing a voice cannot say is left (symbols, digits, markup)."""
    spoken = normalize_for_tts(text)
    m = _UNSPEAKABLE.search(spoken)
    return CheckResult("speakable", m is None, f"{m.group(0)!r} left in {spoken!r}" if m else "")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower().replace("\u2019", "'"))
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def check_not_template(text: str, others: list[str], n: int = TEMPLATE_NGRAM) -> CheckResult:
    """The reply is written for this turn: it shares no run of ``n`` words with the replies to other turns or
    with the prompt's worked examples (a small model otherwise fills one stock sentence in for every turn)."""
    mine = _ngrams(text, n)
    for other in others:
        shared = mine & _ngrams(other, n)
        if shared:
            return CheckResult("not_template", False, f"shares {' '.join(sorted(shared)[0])!r} with {other!r}")
    return CheckResult("not_template", True)


def check_reply(text: str, *, user_text: str = "", situation: str = NEUTRAL, answer_keywords: tuple[str, ...] = (),
                topic: tuple[str, ...] = ()) -> list[CheckResult]:
    """Every check on one reply (the text as spoken, any leading emotion tag already stripped)."""
    return [check_length(text), check_no_readback(text), check_plain_text(text),
            check_sentiment(text, situation), check_answers(text, answer_keywords), check_on_topic(text, topic),
            check_speaks_to_user(text, user_text), check_no_ai_meta(text), check_speakable(text)]


def check_no_echo(first_sound: str, reply: str) -> CheckResult:
    """What a person hears after a first sound (``pipeline.acknowledgement``: "Oh no.", "Mm.") does not say it
    again ("Oh no. Oh no, I'm sorry"): the reply's opening words are not the first sound's."""
    said = [w for w in normalize_for_tts(first_sound).lower().replace(".", " ").replace("!", " ").split() if w]
    head = normalize_for_tts(reply).lower().replace(",", " ").replace(".", " ").replace("!", " ").split()
    repeated = bool(said) and head[: len(said)] == said
    return CheckResult("no_echo", not repeated, f"the reply opens with {first_sound!r} again" if repeated else "")


# The first sound's own checks (``pipeline.acknowledgement``), against the scenario's situation as labelled by hand
# (the chooser reads the words with its own lexicon): sorrowful sounds, and glad ones.
SORROWFUL_SOUNDS = ("oh no", "oh dear", "aw")
GLAD_SOUNDS = ("!", "wow", "yay")


def _sound(first_sound: str) -> tuple[bool, bool]:
    low = first_sound.lower().strip()
    return any(s in low for s in SORROWFUL_SOUNDS) or low == "oh.", any(s in low for s in GLAD_SOUNDS)


def check_sound_fits(first_sound: str, situation: str) -> CheckResult:
    """The first sound fits the situation: no sorrowful sound ("Oh no.", "Oh.") to good news or a neutral turn,
    no glad one ("Oh!", "Oh, wow.") to a neutral turn (bad news has its own check, ``check_sound_not_cheerful``)."""
    sorrowful, glad = _sound(first_sound)
    if situation == GOOD and sorrowful:
        return CheckResult("sound_fits", False, f"{first_sound!r} to good news")
    if situation == NEUTRAL and (sorrowful or glad):
        return CheckResult("sound_fits", False, f"{first_sound!r} to a neutral turn")
    return CheckResult("sound_fits", True)


def check_sound_not_cheerful(first_sound: str, situation: str) -> CheckResult:
    """Never a cheerful first sound to bad news; other situations: not applicable."""
    if situation != BAD:
        return CheckResult("sound_not_cheerful", True, "not bad news", applicable=False)
    _, glad = _sound(first_sound)
    return CheckResult("sound_not_cheerful", not glad, f"{first_sound!r} to bad news" if glad else "")
