"""Text normalisation for TTS: what the LLM writes made speakable, applied to each piece just before synthesis.

Removes emoji, emoticons and markdown (emphasis, code, headings, links, list bullets), expands common
abbreviations and writes numbers as words (integers, decimals, percentages, currency, ordinals, years, ranges,
clock times, temperatures, simple fractions). Pure functions.
"""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}

ABBREVIATIONS = {
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Dr.": "Doctor", "Prof.": "Professor", "St.": "Saint",
    "Jr.": "Junior", "Sr.": "Senior", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example",
    "i.e.": "that is", "approx.": "approximately", "a.m.": "A M", "p.m.": "P M", "mins": "minutes",
    "min.": "minutes.", "hrs": "hours", "secs": "seconds",
}
_SYMBOLS = {"&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at "}

_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0001F900-\U0001F9FF\U00002B00-\U00002BFF\uFE0F\u200D]+"
)
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_CODE = re.compile(r"`{1,3}([^`]*)`{1,3}")
_MD_EMPH = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_LIST_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+", re.MULTILINE)
_CURRENCY = re.compile(r"([$€£])\s?(\d[\d,]*(?:\.\d+)?)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")
_SPACES = re.compile(r"[ \t]+")
_EMOTICON = re.compile(r"(?<!\w)(?:[:;]-?[()DPp]|<3|:'\()(?!\w)")
_URL = re.compile(r"\bhttps?://(?:www\.)?([^\s/]+)\S*|\bwww\.([^\s/]+)\S*")
_RANGE = re.compile(r"(?<![\w.,])(\d+)\s?[-\u2013]\s?(\d+)(?![\w.,])")
_CLOCK = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_DEGREES = re.compile(r"(-?\d+(?:\.\d+)?)\s?°\s?([CF])?\b")
_FRACTION = re.compile(r"(?<![\w/])(\d+)/(\d+)(?![\w/])")
_FRACTIONS = {"1/2": "one half", "1/3": "one third", "2/3": "two thirds", "1/4": "a quarter",
              "3/4": "three quarters", "24/7": "twenty four seven"}
_REPEATED_MARK = re.compile(r"([!?])[!?]+")


def int_to_words(n: int) -> str:
    """English words for an integer: ``int_to_words(1205) == 'one thousand two hundred five'``."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {int_to_words(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{int_to_words(high)} {name}" + (f" {int_to_words(rest)}" if rest else "")
    return str(n)  # pragma: no cover - unreachable


def ordinal_words(n: int) -> str:
    words = int_to_words(n).split(" ")
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def number_to_words(token: str) -> str:
    """A numeric token ("1,200", "3.14", "-2", "1999") as words; four-digit years read in pairs."""
    neg = token.startswith("-")
    body = token.lstrip("-").replace(",", "")
    whole, _, frac = body.partition(".")
    if not whole.isdigit():
        return token
    n = int(whole)
    if not frac and len(whole) == 4 and 1100 <= n <= 2099 and n % 1000 >= 10 and "," not in token:
        high, low = divmod(n, 100)
        tail = "hundred" if low == 0 else ("oh " + _ONES[low] if low < 10 else int_to_words(low))
        words = f"{int_to_words(high)} {tail}"
    else:
        words = int_to_words(n)
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return ("minus " if neg else "") + words


def _currency(m: re.Match[str]) -> str:
    unit = {"$": "dollars", "€": "euros", "£": "pounds"}[m.group(1)]
    amount = m.group(2).replace(",", "")
    whole, _, cents = amount.partition(".")
    text = f"{number_to_words(whole)} {unit[:-1] if whole == '1' else unit}"
    if cents and int(cents[:2].ljust(2, "0")):
        text += f" and {int_to_words(int(cents[:2].ljust(2, '0')))} cents"
    return text


def _clock(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    tail = "o'clock" if minutes == 0 else ("oh " + _ONES[minutes] if minutes < 10 else int_to_words(minutes))
    return f"{int_to_words(hours)} {tail}"


def _degrees(m: re.Match[str]) -> str:
    scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m.group(2) or "", "")
    return f"{number_to_words(m.group(1))} degrees{scale}"


def _fraction(m: re.Match[str]) -> str:
    key = f"{m.group(1)}/{m.group(2)}"
    return _FRACTIONS.get(key, f"{number_to_words(m.group(1))} over {number_to_words(m.group(2))}")


def _spoken_forms(t: str) -> str:
    """Numbers in context first (ranges, times, temperatures, fractions), before plain numbers are read."""
    t = _CURRENCY.sub(_currency, t)
    t = _PERCENT.sub(lambda m: f"{number_to_words(m.group(1))} percent", t)
    t = _RANGE.sub(lambda m: f"{number_to_words(m.group(1))} to {number_to_words(m.group(2))}", t)
    t = _CLOCK.sub(_clock, t)
    t = _DEGREES.sub(_degrees, t)
    t = _FRACTION.sub(_fraction, t)
    t = _ORDINAL.sub(lambda m: ordinal_words(int(m.group(1))), t)
    return _NUMBER.sub(lambda m: number_to_words(m.group(0)), t)


def normalize_for_tts(text: str) -> str:
    """Speakable text: no emoji, emoticons or markdown, abbreviations and numbers written out, single spaces."""
    t = _EMOJI.sub("", text)
    t = _URL.sub(lambda m: (m.group(1) or m.group(2)).replace(".", " dot "), t)
    t = _EMOTICON.sub("", t)
    t = _MD_LINK.sub(r"\1", t)
    t = _MD_CODE.sub(r"\1", t)
    t = _MD_HEADING.sub("", t)
    t = _LIST_BULLET.sub("", t)
    for _ in range(2):  # nested emphasis such as ***word***
        t = _MD_EMPH.sub(r"\2", t)
    for abbr, full in ABBREVIATIONS.items():
        t = re.sub(rf"(?<![\w.]){re.escape(abbr)}", full, t)
    t = re.sub(r"~\s?(?=\d)", "about ", t)
    t = _spoken_forms(t)
    for sym, word in _SYMBOLS.items():
        t = t.replace(sym, word)
    t = _REPEATED_MARK.sub(r"\1", t).replace("\u2026", "...").replace(" \u2014 ", ", ").replace("\u2014", ", ")
    for ch in "*#~/_\n":
        t = t.replace(ch, " ")
    t = re.sub(r"\s+([,.!?;:])", r"\1", t)  # where an emoji or symbol was dropped before a mark
    return _SPACES.sub(" ", t).strip()
