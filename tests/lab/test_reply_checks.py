"""The reply-quality checks: each fails on the bad replies the small models were seen writing and passes good ones;
the scenarios build the voice readings they claim."""

from __future__ import annotations

import pytest

from attune.core.emotion import EmotionCategory
from attune_lab.reply_checks import (
    BAD,
    GOOD,
    check_answers,
    check_length,
    check_no_ai_meta,
    check_no_readback,
    check_on_topic,
    check_plain_text,
    check_reply,
    check_sentiment,
    check_speakable,
    check_speaks_to_user,
    count_sentences,
)
from attune_lab.reply_eval import SCENARIOS, summarize

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

GOOD_REPLY = "I'm so sorry about your grandmother. I'm here with you, take all the time you need."


def test_sentence_counting() -> None:
    assert count_sentences("One. Two! Three?") == 3
    assert count_sentences("Dr. Smith said hi") == 2  # an honest limit: abbreviations count as ends
    assert count_sentences("No end mark") == 1
    assert count_sentences("  ") == 0
    assert count_sentences("Wait... really?") == 2


@pytest.mark.parametrize("text,ok", [
    ("That sounds hard. Take a slow breath with me.", True),
    ("", False),  # nothing said
    ("One thing. Another thing. And a third thing.", False),
    (" ".join(["word"] * 45) + ".", False),
])
def test_length(text: str, ok: bool) -> None:
    assert check_length(text).passed is ok


@pytest.mark.parametrize("text", [
    "You sound bored and anxious.",
    "You seem really stressed right now.",
    "You sound like you're a bit sad.",
    "Your voice sounds shaky.",
    "I detect some anxiety in how you speak.",
    "[Voice sounds calm, with no other emotion described.",
    "I hear elevated pitch and you're speaking quickly.",
    "You are moderately anxious, so let's slow down.",
    "(Reply moderately calm.) Okay, let's go.",
    "Okay. (Tone: calm.)",
])
def test_readback_is_caught(text: str) -> None:
    assert not check_no_readback(text).passed


@pytest.mark.parametrize("text", [
    GOOD_REPLY, "That sounds really frustrating, let's see what we can do.",
    "You sound like you've had quite a day.", "Congratulations, that's a big step!",
])
def test_natural_empathy_is_not_readback(text: str) -> None:
    assert check_no_readback(text).passed


@pytest.mark.parametrize("text", ["**Take a breath.**", "- first\n- second", "1. Call them", "Hang in there 💪",
                                  "Line one.\nLine two.", "See [this](http://x)"])
def test_markdown_emoji_and_lists_are_caught(text: str) -> None:
    assert not check_plain_text(text).passed


def test_plain_text_passes() -> None:
    assert check_plain_text(GOOD_REPLY).passed


def test_sentiment_inversion() -> None:
    assert not check_sentiment("I'm happy to hear you're feeling this sad.", BAD).passed
    assert not check_sentiment("Congratulations on that!", BAD).passed
    assert not check_sentiment("I\u2019m sorry to hear about your promotion.", GOOD).passed
    assert check_sentiment(GOOD_REPLY, BAD).passed
    assert check_sentiment("Congratulations, you earned it!", GOOD).passed
    assert not check_sentiment("Whatever.", "neutral").applicable


def test_answers_and_topic() -> None:
    assert check_answers("It's Paris, of course.", ("paris",)).passed
    assert not check_answers("What a lovely question!", ("paris",)).passed
    assert not check_answers("Sure.", ()).applicable
    assert check_on_topic("Boil it for six minutes.", ("egg", "minute")).passed
    assert not check_on_topic("I feel grateful for your kindness.", ("stove", "home")).passed


def test_speaks_to_user() -> None:
    user = "My laptop keeps freezing every time I open the browser."
    assert not check_speaks_to_user("My laptop freezes every time I open the browser.", user).passed
    assert not check_speaks_to_user("The user feels happy and grateful.", "x").passed
    assert check_speaks_to_user("That's maddening. Try closing other tabs and restarting it.", user).passed


def test_ai_meta() -> None:
    for bad in ("As an AI, I can't feel that.", "I'm just a language model.",
                "I don't have the ability to hear your voice."):
        assert not check_no_ai_meta(bad).passed
    assert check_no_ai_meta(GOOD_REPLY).passed


def test_speakable_after_normalisation() -> None:
    assert check_speakable("It's **3** minutes, about 50% done 🙂").passed  # normalisation cleans these
    assert not check_speakable("Use a {placeholder} | here").passed


def test_check_reply_on_the_reported_bad_reply_and_a_good_one() -> None:
    bad = check_reply("I'm happy to hear you're feeling this sad. You sound sad!", user_text="My dog died.",
                      situation=BAD, topic=("dog",))
    failed = {c.name for c in bad if c.applicable and not c.passed}
    assert {"no_inversion", "no_readback", "on_topic"} <= failed
    good = check_reply(GOOD_REPLY, user_text="My grandmother passed away this morning.", situation=BAD,
                       topic=("grandm",))
    assert all(c.passed for c in good if c.applicable)


def test_scenarios_carry_the_readings_they_name() -> None:
    assert len(SCENARIOS) >= 12 and len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    for s in SCENARIOS:
        result = s.emotion_result()
        assert result.reliable and result.primary.emotion is s.emotion
        assert s.emotion.value in result.to_context_string()
        assert s.topic
    mismatch = next(s for s in SCENARIOS if s.name == "mismatch")
    assert mismatch.situation == GOOD and mismatch.emotion is EmotionCategory.SAD


def test_summary_counts_only_applicable_checks() -> None:
    from attune_lab.reply_eval import ScenarioReport

    sc = SCENARIOS[0]
    checks = tuple(check_reply(GOOD_REPLY, user_text=sc.text, situation=sc.situation, topic=sc.topic))
    report = ScenarioReport(sc, "[ctx]", "affectionate", GOOD_REPLY, checks, 10.0, 50)
    s = summarize([report])
    assert s["checks_total"] == sum(c.applicable for c in checks) and s["clean_replies"] == 1
    assert "answers" not in s["per_check"]


def test_stock_sentences_reused_across_turns_are_caught() -> None:
    from attune_lab.reply_checks import check_not_template

    others = ["Oh, I'm so sorry about your exam. I'm here with you."]
    assert not check_not_template("Oh, I'm so sorry about your stove. I'm here with you.", others).passed
    assert check_not_template("That's a scare. Call a neighbour to check the stove.", others).passed


def test_a_reply_that_says_the_first_sound_again_is_caught() -> None:
    from attune_lab.reply_checks import check_no_echo

    assert not check_no_echo("Oh no.", "Oh no, I'm so sorry to hear that.").passed
    assert not check_no_echo("Mm.", "Mm, that sounds hard.").passed
    assert check_no_echo("Oh no.", "I'm so sorry to hear that.").passed
    assert check_no_echo("Oh!", "Oh, what a day.").passed is False
    assert check_no_echo("Mm.", "Mmm... no.").passed  # another word, not the sound said again


def test_the_first_sound_is_checked_against_the_situation() -> None:
    from attune_lab.reply_checks import NEUTRAL, check_sound_fits, check_sound_not_cheerful

    assert check_sound_fits("Oh no.", BAD).passed and check_sound_fits("Oh!", GOOD).passed
    assert check_sound_fits("Mm.", GOOD).passed and check_sound_fits("Hm.", NEUTRAL).passed
    assert not check_sound_fits("Oh no.", GOOD).passed and not check_sound_fits("Oh.", NEUTRAL).passed
    assert not check_sound_fits("Oh, wow.", NEUTRAL).passed
    assert not check_sound_not_cheerful("Oh!", BAD).passed and not check_sound_not_cheerful("Mm!", BAD).passed
    assert check_sound_not_cheerful("Oh no.", BAD).passed and not check_sound_not_cheerful("Oh!", GOOD).applicable


@pytest.mark.fakes
async def test_with_a_first_sound_the_reply_is_scored_like_for_like_and_the_sound_apart() -> None:
    """The same model words with and without the sound: the reply's checks and their totals are the same (the
    sound is not a sentence of the reply, a repeat of it is taken off as a session does), and the sound's own
    checks are counted beside them."""
    from attune.agent.brain import PromptBuilder
    from attune.agent.persona import Persona
    from attune_lab.reply_eval import SOUND_CHECKS, run_eval
    from tests.fakes import ScriptedLLM

    grief = tuple(s for s in SCENARIOS if s.name in ("grief", "capital"))
    builder = PromptBuilder(Persona())
    words = ["Oh", " no,", " I'm", " so", " sorry", " about", " your", " grandmother.", " She", " was", " loved."]
    off = await run_eval(ScriptedLLM(words), builder, scenarios=grief)
    on = await run_eval(ScriptedLLM(words), builder, scenarios=grief, acknowledgements=True)
    assert on[0].first_sound == "Oh no." and on[0].reply == "I'm so sorry about your grandmother. She was loved."
    for a, b in zip(off, on, strict=True):
        assert [c.name for c in a.checks] == [c.name for c in b.checks if c.name not in SOUND_CHECKS]
        assert next(c for c in b.checks if c.name == "length").passed  # two sentences: the sound is not one
    sound = [c for c in on[0].checks if c.name in SOUND_CHECKS]
    assert {c.name for c in sound} == SOUND_CHECKS and all(c.passed for c in sound)
    s_off, s_on = summarize(off), summarize(on)
    assert s_on["reply_checks_total"] == s_off["checks_total"] == s_off["reply_checks_total"]
    assert s_on["reply_checks_passed"] >= s_off["checks_passed"]
    assert s_on["sound_checks_total"] > 0 and s_off["sound_checks_total"] == 0 and s_on["first_sounds"] == 2
