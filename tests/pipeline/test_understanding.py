"""Understanding a turn, loop-free: transcript + context -> emotion aggregate, word fusion, plan, prompt."""

from __future__ import annotations

from dataclasses import replace

from attune.agent.brain import PromptBuilder
from attune.backends.base import ChatMessage
from attune.core.emotion import EmotionCategory, EmotionResult, ProsodicMarkers
from attune.core.frames import Transcript
from attune.pipeline.understanding import (
    EarlyVoice,
    TurnContext,
    Understander,
    default_aggregate,
    default_trajectory,
)
from tests.fakes import calm_planner, make_result

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def _understander(seen: dict, **kw) -> Understander:
    def aggregate(results: list[EmotionResult]) -> EmotionResult | None:
        seen["aggregated"] = list(results)
        return results[-1]

    def trajectory(results: list[EmotionResult]) -> str:
        seen["trajectory_of"] = list(results)
        return "declining"

    def planner(emotion, strategy):  # type: ignore[no-untyped-def]
        seen["planned"] = (emotion, strategy)
        return calm_planner(emotion, strategy)

    prompt = kw.pop("prompt", None) or PromptBuilder()
    return Understander(planner, aggregate, trajectory, prompt, **kw)


def test_nothing_to_answer_without_words() -> None:
    u = _understander({})
    for text in ("", "...", " ?! "):
        assert u.understand(Transcript(text, 0.0, 1.0), TurnContext()) is None


def test_a_turn_is_aggregated_planned_and_prompted_on_the_history() -> None:
    seen: dict = {}
    windows = (make_result(EmotionCategory.HAPPY, 0.0, 1.0), make_result(EmotionCategory.SAD, 0.5, 1.5))
    past = (make_result(EmotionCategory.CALM, 0.0, 1.0),)
    history = (ChatMessage("user", "hi\n[Voice sounds calm] (Tone: calm.)"), ChatMessage("assistant", "Hello!"))
    u = _understander(seen, strategy="match", fuse_words=False)
    got = u.understand(Transcript("hello there", 0.0, 1.5), TurnContext(windows, past, history))
    assert got is not None
    assert seen["aggregated"] == list(windows)  # the turn's windows, all of them, in order
    assert got.user_emotion is windows[-1] and seen["planned"] == (windows[-1], "match")
    assert seen["trajectory_of"] == [past[0], windows[-1]] and got.trajectory == "declining"
    prefix = PromptBuilder().prefix()
    assert got.messages[:len(prefix)] == tuple(prefix)  # the cached prefix first
    assert got.messages[len(prefix):-1] == history  # then the history exactly as it was sent
    assert got.user_message.startswith("hello there\n") and windows[-1].to_context_string() in got.user_message
    assert "(Tone: calm.)" in got.user_message and got.transcript.text == "hello there"


def test_no_windows_means_no_voice_emotion_and_the_prompt_says_so() -> None:
    seen: dict = {}
    got = _understander(seen).understand(Transcript("What time is it?", 1.0, 1.0), TurnContext())
    assert got is not None and got.user_emotion is None and "aggregated" not in seen
    assert seen["trajectory_of"] == []
    assert got.user_message.startswith("What time is it?\n[Voice emotion unknown]")


def test_words_with_sentiment_move_the_voice_valence_when_fusion_is_on() -> None:
    happy_voice = (make_result(EmotionCategory.HAPPY, 0.0, 1.0, confidence=0.8),)
    text = Transcript("My grandmother passed away this morning.", 0.0, 2.0)
    fused = _understander({}, fuse_words=True).understand(text, TurnContext(happy_voice))
    plain = _understander({}, fuse_words=False).understand(text, TurnContext(happy_voice))
    assert fused is not None and plain is not None and fused.user_emotion and plain.user_emotion
    assert plain.user_emotion.dimensions.valence > 0.3  # the voice alone reads joy
    assert fused.user_emotion.dimensions.valence < plain.user_emotion.dimensions.valence - 0.5
    assert fused.user_emotion.dimensions.arousal == plain.user_emotion.dimensions.arousal  # the voice's


def test_the_real_aggregate_and_trajectory_plug_in() -> None:
    """The fakes' real counterparts (the detector's aggregate and trajectory)."""
    windows = tuple(make_result(EmotionCategory.SAD, i * 0.5, i * 0.5 + 1.0) for i in range(3))
    u = Understander(calm_planner, default_aggregate(), default_trajectory(), PromptBuilder())
    got = u.understand(Transcript("hello there", 0.0, 2.0), TurnContext(windows))
    assert got is not None and got.user_emotion is not None
    assert got.user_emotion.primary.emotion is EmotionCategory.SAD and got.trajectory == "stable"


def test_the_prefills_note_and_tone_are_kept_when_they_agree_with_the_turns() -> None:
    early = replace(make_result(EmotionCategory.SAD, 0.0, 1.0), markers=ProsodicMarkers(speech_rate_category="slow"))
    final = make_result(EmotionCategory.SAD, 0.0, 3.0)
    assert early.to_context_string() != final.to_context_string()
    u = _understander({}, fuse_words=False, prompt=PromptBuilder(note_first=True))
    kept = u.understand(Transcript("my cat is ill", 0.0, 3.0), TurnContext((final,), early_voice=EarlyVoice(early)))
    assert kept is not None and kept.early_note
    assert kept.user_message == early.to_context_string() + " (Tone: calm.)\nmy cat is ill"
    assert kept.user_emotion is final  # the plan and the trace still follow the whole turn's reading
    other = EarlyVoice(make_result(EmotionCategory.HAPPY, 0.0, 1.0))
    replaced = u.understand(Transcript("my cat is ill", 0.0, 3.0), TurnContext((final,), early_voice=other))
    assert replaced is not None and not replaced.early_note
    assert replaced.user_message.startswith(final.to_context_string() + " (Tone: calm.)\n")
    plain = u.understand(Transcript("my cat is ill", 0.0, 3.0), TurnContext((final,)))
    assert plain is not None and not plain.early_note and plain.messages == replaced.messages


def test_a_turn_whose_whole_reading_asks_another_tone_is_re_read() -> None:
    """The whole turn's emotion reaches the prompt where it changes the answer: another tone from the plan."""
    from attune.agent.strategy import choose_response

    calm_start = make_result(EmotionCategory.CALM, 0.0, 1.0)
    sad_turn = make_result(EmotionCategory.SAD, 0.0, 3.0)
    u = Understander(choose_response, default_aggregate(), default_trajectory(), PromptBuilder(note_first=True),
                     fuse_words=False)
    got = u.understand(Transcript("my cat is ill", 0.0, 3.0), TurnContext((sad_turn,),
                                                                         early_voice=EarlyVoice(calm_start)))
    assert got is not None and not got.early_note
    assert got.user_message.startswith(sad_turn.to_context_string())
    assert f"(Tone: {choose_response(sad_turn, 'complement').expressed_emotion.value}.)" in got.user_message


def test_early_voice_agreement() -> None:
    sad, happy = make_result(EmotionCategory.SAD, 0, 1), make_result(EmotionCategory.HAPPY, 0, 1)
    unsure = make_result(EmotionCategory.HAPPY, 0, 1, confidence=0.1)
    calm = calm_planner(None, "complement")
    assert EarlyVoice(sad).agrees_with(make_result(EmotionCategory.SAD, 0, 2), early_plan=calm, final_plan=calm)
    # other tones, or the other side of the valence (an unreliable reading counts as neither side), disagree
    tender = replace(calm, expressed_emotion=EmotionCategory.AFFECTIONATE)
    assert not EarlyVoice(sad).agrees_with(sad, early_plan=calm, final_plan=tender)
    assert not EarlyVoice(sad).agrees_with(happy, early_plan=calm, final_plan=calm)
    assert not EarlyVoice(sad).agrees_with(unsure, early_plan=calm, final_plan=calm)
    assert not EarlyVoice(None).agrees_with(sad, early_plan=calm, final_plan=calm)
    assert EarlyVoice(unsure).agrees_with(make_result(EmotionCategory.SAD, 0, 1, confidence=0.2), early_plan=calm,
                                          final_plan=calm)
    assert EarlyVoice(None).agrees_with(None, early_plan=calm, final_plan=calm)
    assert not EarlyVoice(sad).agrees_with(None, early_plan=calm, final_plan=calm)
