"""End-of-turn prediction: the pure policy and word cue (layer 1), and smart-turn v3 on real speech (layer 4)."""

from __future__ import annotations

import numpy as np
import pytest

from attune.backends.turn.smart_turn import N_FRAMES, N_MELS, WINDOW_SAMPLES, last_window, log_mel, mel_filters
from attune.pipeline.endpoint import EndOfTurnPolicy, EndpointSettings, words_unfinished
from tests.engines_util import installed_model, tts_speech

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


@pytest.mark.parametrize("text", ["The thing about my job is", "I really want to...", "My dog has been.",
                                  "When I got home tonight.", "If it does not rain tomorrow.", "so I was like,"])
def test_hanging_sentences_read_as_unfinished(text: str) -> None:
    assert words_unfinished(text)


@pytest.mark.parametrize("text", ["Thanks, that really helps.", "My cat ran away last night.",
                                  "Can you tell me a joke?", "When I got home, the kitchen was flooded.", ""])
def test_finished_sentences_read_as_finished(text: str) -> None:
    assert not words_unfinished(text)


def test_policy_waits_short_only_when_model_and_words_agree() -> None:
    s = EndpointSettings(complete_ms=200, likely_ms=600, unfinished_ms=1200, worded_ms=800, confident_threshold=0.9,
                         complete_threshold=0.5)
    policy = EndOfTurnPolicy(s)
    assert policy.required_silence_ms(0.97, "I passed my test today.") == 200
    assert policy.required_silence_ms(0.7, "I passed my test today.") == 600
    assert policy.required_silence_ms(0.97, "The thing about my job is") == 1200  # the words overrule
    assert policy.required_silence_ms(None, "I passed my test today.") == 1200  # no answer yet: wait
    assert policy.required_silence_ms(0.97, None) == 200  # no words known: the model alone
    assert policy.required_silence_ms(0.2, None) == 1200  # ... and its doubt holds


@pytest.mark.parametrize("p", [0.0, 0.02, 0.09, 0.3, 0.49])
@pytest.mark.parametrize("words", ["Can you tell me something to help me fall asleep tonight?",
                                   "We finally won the match.", "Kids are talking by the door!"])
def test_finished_words_are_not_held_for_the_longest_wait_when_the_voice_doubts(p: float, words: str) -> None:
    s = EndpointSettings(complete_ms=200, likely_ms=600, unfinished_ms=1200, worded_ms=800)
    assert EndOfTurnPolicy(s).required_silence_ms(p, words) == 800


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7, 0.95, 1.0])
@pytest.mark.parametrize("words", ["My sister called me this morning and", "I really want to...",
                                   "When I got home tonight.", "I was thinking,", "The thing about my job is",
                                   "I was thinking"])
def test_hanging_words_wait_the_longest_whatever_the_voice(p: float, words: str) -> None:
    s = EndpointSettings(complete_ms=200, likely_ms=600, unfinished_ms=1200, worded_ms=800)
    assert EndOfTurnPolicy(s).required_silence_ms(p, words) == 1200


def test_a_doubting_voice_never_waits_less_than_an_unsure_one() -> None:
    s = EndpointSettings(complete_ms=200, likely_ms=700, unfinished_ms=1200, worded_ms=300)
    assert EndOfTurnPolicy(s).required_silence_ms(0.1, "We won.") == 700


def test_a_ready_first_sound_shortens_only_the_unsure_wait_of_finished_words() -> None:
    s = EndpointSettings(complete_ms=200, likely_ms=800, unfinished_ms=1200, worded_ms=800, sounded_ms=600)
    policy = EndOfTurnPolicy(s)
    finished = "We finally won the match."
    assert policy.required_silence_ms(0.1, finished, sounded=True) == 600  # the model doubts (worded)
    assert policy.required_silence_ms(0.7, finished, sounded=True) == 600  # the model is unsure (likely)
    assert policy.required_silence_ms(0.1, finished) == 800  # no sound ready: as before
    assert policy.required_silence_ms(0.97, finished, sounded=True) == 200  # never longer than the rule
    assert policy.required_silence_ms(0.7, "The thing about my job is", sounded=True) == 1200  # hanging words
    assert policy.required_silence_ms(None, finished, sounded=True) == 1200  # the model has not answered
    assert policy.required_silence_ms(0.7, None, sounded=True) == 800  # no words known: nothing to trust


def test_window_keeps_the_end_and_pads_the_front() -> None:
    short = np.ones(16000, np.float32)
    w = last_window(short)
    assert w.shape == (WINDOW_SAMPLES,) and not w[:-16000].any() and w[-16000:].all()
    long = np.arange(WINDOW_SAMPLES + 500, dtype=np.float32)
    assert last_window(long)[0] == 500.0


def test_log_mel_shape_range_and_filters() -> None:
    rng = np.random.default_rng(0)
    x = last_window((0.1 * rng.standard_normal(40000)).astype(np.float32))
    mel = log_mel(x)
    assert mel.shape == (N_MELS, N_FRAMES) and mel.dtype == np.float32
    assert mel.max() <= 1.5 and mel.min() >= mel.max() - 2.0 - 1e-6  # 8 dB range scaled by 1/4
    filters = mel_filters()
    assert filters.shape == (201, N_MELS) and (filters >= 0).all() and (filters.sum(axis=0) > 0).all()
    with pytest.raises(ValueError):
        log_mel(np.zeros(100, np.float32))


def _smart_turn():  # type: ignore[no-untyped-def]
    from attune.backends.turn.smart_turn import SmartTurn

    return SmartTurn(installed_model("smart-turn-v3"))


def _at_16k(text: str) -> np.ndarray:
    from attune.core.audio import prepare

    audio, rate = tts_speech(text)
    samples = prepare(audio, rate, 16000)[0]
    loud = np.nonzero(np.abs(samples) > 1e-3)[0]
    return np.concatenate([samples[: loud[-1] + 1], np.zeros(3200, np.float32)])  # 200 ms of silence after


# Finished and hanging sentences, one pair per line, the same voice. "I have been feeling kind of" was dropped:
# Piper says it with a falling, final intonation and the model calls it complete (0.96-0.98), like a person would.
PAIRS = (
    ("I passed my driving test today!", "My sister called me this morning and,"),
    ("Thanks, that really helps.", "The thing about my job is"),
    ("My cat ran away last night.", "I really want to"),
    ("Can you tell me a joke?", "So I was thinking that maybe we could"),
    ("When I got home, the kitchen was flooded.", "When I got home, the kitchen was"),
)


@pytest.mark.real
def test_smart_turn_hears_finished_sentences_above_ones_left_hanging() -> None:
    """A property over five pairs, not one reading against the 0.5 threshold: the same model reads the same words
    differently on another CPU (int8 kernels without VNNI, Piper's render) and a single reading near a threshold
    is a coin toss there. On an AVX2-only EPYC "My sister called me this morning and," read 0.65 (0.02 here).

    Measured here (AVX-512 VNNI; ``session.x64quantprecision`` changed nothing, as onnxruntime documents for
    VNNI) on three Piper renders (seeds 0, 1, 2) as a stand-in for another machine's render: every one of the
    15 pairs ordered finished > hanging (smallest gap 0.09, "Thanks, that really helps." 0.97 against "The
    thing about my job is" 0.87); the mean gap per render 0.74, 0.57, 0.61; single readings ranged widely
    (hanging 0.01-0.87, finished 0.36-0.99). So: at least four of five pairs ordered, and a mean gap over 0.3,
    half the smallest measured."""
    model = _smart_turn()
    finished = [model.complete_probability(_at_16k(f)) for f, _ in PAIRS]
    hanging = [model.complete_probability(_at_16k(h)) for _, h in PAIRS]
    readings = list(zip(finished, hanging, strict=True))
    assert all(0.0 <= p <= 1.0 for p in finished + hanging)
    assert sum(f > h for f, h in readings) >= len(PAIRS) - 1, readings
    assert float(np.mean(finished)) - float(np.mean(hanging)) > 0.3, readings
