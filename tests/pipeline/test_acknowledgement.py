"""The first sound's chooser (layer 1: pure, loop-free, no models): what it says to which turn, and when it says
nothing."""

from __future__ import annotations

import pytest

from attune.agent.brain import NeutralPlan
from attune.core.emotion import EmotionCategory as E
from attune.pipeline.acknowledgement import (
    CHEERFUL,
    SOFT,
    SOFT_INTENSITY,
    VOICES,
    AcknowledgementSettings,
    EchoFilter,
    choose_acknowledgement,
    phrases,
    split_echo,
)

LAYER = "unit"  # STYLE.md layer 1
SLOW = 1500.0  # ms until the first clause: a slow machine's reply
BAD = "My grandfather died last night."
GOOD = "We won the match this afternoon!"


def plan(emotion: E = E.NEUTRAL) -> NeutralPlan:
    return NeutralPlan(expressed_emotion=emotion)


def test_bad_news_gets_a_soft_oh_no() -> None:
    ack = choose_acknowledgement(BAD, plan(E.CALM), [], SLOW)
    assert ack is not None and ack.text == "Oh no." and ack.situation == "bad_news"
    assert ack.emotion is E.CALM and ack.intensity == SOFT_INTENSITY


def test_good_news_gets_oh_only_when_the_plan_is_positive() -> None:
    ack = choose_acknowledgement(GOOD, plan(E.HAPPY), [], SLOW)
    assert ack is not None and ack.text == "Oh!" and ack.emotion is E.HAPPY
    for emotion in (E.NEUTRAL, E.SAD, E.ANGRY, E.CALM):  # a plan that is not clearly glad: nothing cheerful
        other = choose_acknowledgement(GOOD, plan(emotion), [], SLOW)
        assert other is None or other.text not in CHEERFUL


@pytest.mark.parametrize("words", [BAD, "I lost my job and I feel awful.", "The funeral is on Friday.",
                                   "I won the lottery but my dog died.", "Great, my car broke down again."])
@pytest.mark.parametrize("emotion", list(E))
def test_never_cheerful_to_bad_news_whatever_the_plan(words: str, emotion: E) -> None:
    ack = choose_acknowledgement(words, plan(emotion), [], SLOW)
    assert ack is None or ack.text not in CHEERFUL


def test_other_turns_get_mm_or_hm() -> None:
    statement = choose_acknowledgement("I went to the shop this morning.", plan(), [], SLOW)
    question = choose_acknowledgement("What is a good book to read on holiday?", plan(), [], SLOW)
    assert statement is not None and statement.text == "Mm."
    assert question is not None and question.text == "Hm."


def test_never_the_same_twice_in_a_row() -> None:
    history: list[str | None] = []
    for words in [BAD, BAD, None, BAD, "I see.", "Tell me more.", None, "Okay then.", "Okay then."]:
        if words is None:
            history.append(None)
            continue
        ack = choose_acknowledgement(words, plan(E.CALM), history, SLOW)
        text = ack.text if ack else None
        assert text is None or not history or text != history[-1]
        history.append(text)


def test_a_sound_longer_than_the_wait_gives_way_to_a_shorter_one() -> None:
    """The model's words wait for the sound to end: where the first clause is due sooner than "Mm-hm." ends, the
    next sound that fits is said instead (a slow machine still hears "Mm-hm."), and the shortest when none fits;
    never the one just heard, never a cheerful one to bad news."""
    lengths = {"Mm.": 450.0, "Mm-hm.": 820.0, "Hm.": 540.0, "Oh no.": 620.0, "Oh.": 370.0}
    statement = "I went to the shop this morning."

    def second(eta: float, words: str = statement, first: str = "Mm.") -> str | None:
        ack = choose_acknowledgement(words, plan(E.CALM), [first], eta, length_ms=lengths.get)
        return ack.text if ack else None

    assert second(SLOW) == "Mm-hm."  # the preferred second sound fits a slow machine's wait
    assert second(700.0) == "Hm."  # a fast one's: "Mm-hm." would hold the words back
    assert second(400.0) == "Hm."  # none fits: the shortest but the last
    assert second(400.0, BAD, "Oh no.") == "Oh."  # bad news gets a soft one still
    first = choose_acknowledgement(statement, plan(), [], 700.0, length_ms=lengths.get)
    assert first is not None and first.text == "Mm."


def test_not_on_every_turn() -> None:
    settings = AcknowledgementSettings(max_run=2)
    history: list[str | None] = []
    for _ in range(9):
        ack = choose_acknowledgement("I went to the shop this morning.", plan(), history, SLOW, settings=settings)
        history.append(ack.text if ack else None)
    assert history.count(None) == 3  # every third turn is without one
    assert all(any(t is None for t in history[i:i + 3]) for i in range(len(history) - 2))


def test_none_when_the_reply_is_ready_soon_or_over_a_barge_in_or_for_no_words() -> None:
    assert choose_acknowledgement(BAD, plan(E.CALM), [], 250.0) is None  # a fast machine hears none
    assert choose_acknowledgement(BAD, plan(E.CALM), [], 350.0) is not None
    assert choose_acknowledgement(BAD, plan(E.CALM), [], None) is not None  # unknown: assume slow
    assert choose_acknowledgement(BAD, plan(E.CALM), [], SLOW, barge_in=True) is None
    assert choose_acknowledgement("   ", plan(), [], SLOW) is None


def test_every_choice_is_prerendered() -> None:
    rendered = {(text, emotion) for text, emotion, _ in phrases()}
    for words in [BAD, GOOD, "Thanks a lot.", "Why is the sky blue?", "I walked home."]:
        for emotion in E:
            history: list[str | None] = []
            for _ in range(3):
                ack = choose_acknowledgement(words, plan(emotion), history, SLOW)
                history.append(ack.text if ack else None)
                if ack is not None:
                    assert (ack.text, ack.emotion) in rendered and ack.emotion in VOICES[ack.text]
                    assert (ack.text in SOFT) == (ack.intensity == SOFT_INTENSITY)


@pytest.mark.parametrize(("ack", "reply", "heard"), [
    ("Oh no.", "Oh no, I'm so sorry to hear that.", "I'm so sorry to hear that."),
    ("Oh no.", "Oh no! That must hurt.", "That must hurt."),
    ("Oh no.", "Oh, that's awful.", "That's awful."),
    ("Mm.", "Mmm, that sounds hard.", "That sounds hard."),
    ("Hm.", "Hmm... let me think about it.", "Let me think about it."),
    ("Oh!", "Oh wow, congratulations!", "Congratulations!"),
    ("Mm-hm.", "Mm-hmm, go on.", "Go on."),
])
def test_a_reply_that_opens_with_the_sound_just_heard_loses_it(ack: str, reply: str, heard: str) -> None:
    dropped, rest = split_echo(ack, reply)
    assert rest == heard and f"{dropped} {rest}".startswith(dropped) and dropped


@pytest.mark.parametrize(("ack", "reply"), [
    ("Oh no.", "I'm so sorry to hear that."),
    ("Mm.", "Oh no, that sounds hard."),  # another sound: not an echo
    ("Oh no.", "No, it wasn't your fault."),  # "No" as an answer, not the sound heard
    ("Hm.", "How about a walk?"),
    ("Oh!", 'Oh "wow" is right.'),
])
def test_a_reply_that_does_not_repeat_it_is_untouched(ack: str, reply: str) -> None:
    assert split_echo(ack, reply) == ("", reply)


def test_the_filter_reads_on_past_a_first_clause_that_is_only_the_sound() -> None:
    f = EchoFilter("Oh no.")
    assert [f.push(s) for s in ["Oh,", "no, I'm sorry.", "Oh no, that is hard."]] == [
        "", "I'm sorry.", "Oh no, that is hard."]  # only the reply's opening: later words are the model's
    assert f.dropped == "Oh, no,"
    whole = EchoFilter("Oh no.")
    assert whole.push("Oh no!") == "" and whole.push("Take your time.") == "Take your time."
