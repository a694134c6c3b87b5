"""The pure text cores: sentence splitter, TTS normaliser, reply tag parser."""

from __future__ import annotations

from attune.agent.reply_tag import ReplyTagParser
from attune.core.emotion import EmotionCategory
from attune.core.normalize import int_to_words, normalize_for_tts, number_to_words
from attune.pipeline.splitter import SentenceSplitter

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def split(tokens: list[str], **kw) -> list[tuple[int, str]]:
    """(index of the token after which each piece was released, piece)."""
    s = SentenceSplitter(**kw)
    out = []
    for i, t in enumerate(tokens):
        out.extend((i, p) for p in s.push(t))
    out.extend((len(tokens), p) for p in s.flush())
    return out


def test_first_clause_is_released_early_then_whole_sentences() -> None:
    tokens = "I am so sorry to hear that, it sounds like a hard day. Do you want to talk, or rest?".split(" ")
    tokens = [t + " " for t in tokens]
    pieces = split(tokens, first_clause_min_words=4)
    assert [p for _, p in pieces] == ["I am so sorry to hear that,", "it sounds like a hard day.",
                                      "Do you want to talk, or rest?"]
    assert pieces[0][0] == 6  # out with the token that carried the comma and its space


def test_short_first_clause_waits_for_more_words() -> None:
    assert [p for _, p in split(["Oh, ", "I ", "see. "], first_clause_min_words=4)] == ["Oh, I see."]


def test_by_default_a_two_word_first_clause_is_spoken_alone() -> None:
    """The default: "Oh no," goes to TTS on its own (first audio sooner), a one-word "Oh," does not."""
    assert [p for _, p in split(["Oh ", "no, ", "I'm ", "so ", "sorry. "])] == ["Oh no,", "I'm so sorry."]
    assert [p for _, p in split(["Oh, ", "I ", "see. "])] == ["Oh, I see."]


def test_abbreviations_numbers_and_ellipses_do_not_split() -> None:
    text = "Dr. Smith said it costs 3.5 dollars... or maybe more. Well... Really? Yes!"
    pieces = [p for _, p in split([c for c in text], first_clause_min_words=50)]
    assert pieces == ["Dr. Smith said it costs 3.5 dollars... or maybe more.", "Well...", "Really?", "Yes!"]
    assert [p for _, p in split(["It was 1,", "000 people, all of them there."], first_clause_min_words=1)] == [
        "It was 1,000 people,", "all of them there."]


def test_splitter_flushes_remainder_and_drops_punctuation_only() -> None:
    s = SentenceSplitter()
    assert s.push("no end yet") == []
    assert s.flush() == ["no end yet"]
    assert s.push("...") == [] and s.flush() == []


def test_numbers_to_words() -> None:
    assert int_to_words(0) == "zero"
    assert int_to_words(1205) == "one thousand two hundred five"
    assert int_to_words(2_000_013) == "two million thirteen"
    assert number_to_words("3.14") == "three point one four"
    assert number_to_words("1999") == "nineteen ninety nine"
    assert number_to_words("2005") == "two thousand five"


def test_normalise_markdown_emoji_lists_abbreviations_numbers() -> None:
    text = "**Great** news 😊!\n- Take *two* breaths\n- Call Dr. Lee at 5 p.m.\nIt's 50% off, $3.50 for the 2nd one."
    out = normalize_for_tts(text)
    assert out == ("Great news! Take two breaths Call Doctor Lee at five P M It's fifty percent off, "
                   "three dollars and fifty cents for the second one.")
    assert "`" not in normalize_for_tts("use `code` and [a link](http://x)") and "a link" in normalize_for_tts(
        "[a link](http://x)")


def test_reply_tag_is_stripped_and_read() -> None:
    p = ReplyTagParser()
    out = "".join(p.push(t) for t in ["[", "ca", "lm]", " It's", " okay."]) + p.flush()
    assert out == "It's okay." and p.emotion is EmotionCategory.CALM
    p = ReplyTagParser()
    assert p.push("Hello") == "Hello" and p.emotion is None
    p = ReplyTagParser()
    out = "".join(p.push(t) for t in ["(not", " a tag, just an aside that goes on)", " ok"]) + p.flush()
    assert out == "(not a tag, just an aside that goes on) ok"
    p = ReplyTagParser()
    assert p.push("[whatever] Hi") == "Hi" and p.emotion is None and p.raw_tag == "whatever"


def test_run_on_first_piece_is_cut_at_a_word_boundary() -> None:
    words = [f"w{i} " for i in range(30)]
    pieces = split(words)
    assert len(pieces[0][1].split()) == 12 and pieces[0][0] == 12  # released as the 13th word arrived
    assert " ".join(p for _, p in pieces).split() == [w.strip() for w in words]


def test_normalise_what_the_small_models_write() -> None:
    """Forms seen in (or close to) Qwen2.5 replies: ranges, clock times, temperatures, fractions, emoticons,
    repeated marks, dashes, abbreviated units, links."""
    cases = {
        "Boil it for 6-7 minutes.": "Boil it for six to seven minutes.",
        "Take 2\u20133 deep breaths.": "Take two to three deep breaths.",
        "Call me at 3:30 or 10:00.": "Call me at three thirty or ten o'clock.",
        "It's 20°C, set the oven to 350°F.": "It's twenty degrees Celsius, set the oven to three hundred fifty "
                                            "degrees Fahrenheit.",
        "I'm here 24/7, add 1/2 cup.": "I'm here twenty four seven, add one half cup.",
        "That's great news!!! :) <3": "That's great news!",
        "Hang in there \u2014 you got this\u2026": "Hang in there, you got this...",
        "Wait ~5 mins.": "Wait about five minutes.",
        "See https://www.example.com/help for more.": "See example dot com for more.",
        "It has 1,200 items, -5 today.": "It has one thousand two hundred items, minus five today.",
    }
    for raw, spoken in cases.items():
        assert normalize_for_tts(raw) == spoken, raw
