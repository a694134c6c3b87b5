"""TurnPolicy, loop-free: turn events and the agent's state in, decisions out (no asyncio, no models)."""

from __future__ import annotations

import numpy as np

from attune.core.frames import AudioChunk, Interruption, SpeechStarted, SpeechStopped
from attune.pipeline.turn import EnergyVAD, SilenceBegan, SpeechResumed, TurnDetector, TurnSettings, UserTurn
from attune.pipeline.turn_policy import (
    AnnounceSpeech,
    AnnounceSpeechEnd,
    CommitReply,
    DiscardReply,
    Listen,
    ListenFrom,
    PolicySettings,
    ReplyPhase,
    StartReply,
    TurnPolicy,
)

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

AUDIO = AudioChunk(np.zeros(16000, np.float32), 16000, 0.5)


def _speak_over_agent(policy: TurnPolicy) -> None:
    """A committed reply is playing and the user starts to speak."""
    policy.phase = ReplyPhase.COMMITTED
    assert policy.on_turn_event(SpeechStarted(3.0), audible=True) == []
    assert policy.tentative


def test_a_turn_in_silence_is_announced_started_speculatively_and_committed_at_its_end() -> None:
    p = TurnPolicy()
    assert p.on_turn_event(SpeechStarted(0.5), audible=False) == [AnnounceSpeech(0.5),
                                                                   ListenFrom(0.5, with_turn_so_far=True)]
    assert p.on_turn_event(SilenceBegan(1.5, AUDIO), audible=False) == [Listen(False),
                                                                        StartReply(AUDIO, 1.5, commit=False)]
    assert p.phase is ReplyPhase.SPECULATIVE
    assert p.on_turn_event(SpeechStopped(1.5), audible=False) == [Listen(False), AnnounceSpeechEnd(1.5)]
    assert p.on_turn_event(UserTurn(AUDIO, 0.5, 1.5), audible=False) == [CommitReply()]
    assert p.phase is ReplyPhase.COMMITTED
    p.reply_finished()
    assert p.phase is ReplyPhase.NONE and not p.engaged(audible=False)


def test_a_pause_under_load_starts_no_speculative_reply_and_the_turn_is_answered_at_its_end() -> None:
    p = TurnPolicy()
    p.on_turn_event(SpeechStarted(0.5), audible=False)
    assert p.on_turn_event(SilenceBegan(1.5, AUDIO), audible=False, speculate=False) == [Listen(False)]
    assert p.phase is ReplyPhase.NONE
    assert p.on_turn_event(SpeechResumed(1.7), audible=False) == [Listen(True)]  # nothing to discard
    p.on_turn_event(SilenceBegan(2.5, AUDIO), audible=False, speculate=False)
    assert p.on_turn_event(UserTurn(AUDIO, 0.5, 2.5), audible=False) == [StartReply(AUDIO, 2.5, commit=True)]
    assert p.phase is ReplyPhase.COMMITTED


def test_speculative_reply_is_discarded_when_the_user_goes_on_and_the_whole_turn_is_answered() -> None:
    p = TurnPolicy()
    p.on_turn_event(SpeechStarted(0.5), audible=False)
    assert p.on_turn_event(SilenceBegan(1.3, AUDIO), audible=False)[-1] == StartReply(AUDIO, 1.3, commit=False)
    assert p.on_turn_event(SpeechResumed(1.4), audible=False) == [DiscardReply(), Listen(True)]
    assert p.phase is ReplyPhase.NONE
    # The end of the turn comes without a fresh SilenceBegan speculation: a committed reply starts.
    assert p.on_turn_event(UserTurn(AUDIO, 0.5, 2.5), audible=False) == [StartReply(AUDIO, 2.5, commit=True)]
    assert p.phase is ReplyPhase.COMMITTED


def test_a_backchannel_over_the_agent_is_neither_announced_nor_answered() -> None:
    p = TurnPolicy(PolicySettings(barge_in_min_ms=300))
    _speak_over_agent(p)
    assert p.on_frame(in_speech=True, speech_s=0.2, audible=True, now_s=3.2) == []
    assert p.on_turn_event(SilenceBegan(3.2, AUDIO), audible=True) == [Listen(False)]  # no speculation
    assert p.on_turn_event(SpeechStopped(3.2), audible=True) == [Listen(False)]  # no speech_stopped event
    assert p.on_turn_event(UserTurn(AUDIO, 3.0, 3.2), audible=True) == []
    assert not p.tentative and p.phase is ReplyPhase.COMMITTED  # the agent's reply goes on


def test_speech_over_the_agent_that_lasts_barge_in_min_ms_interrupts_and_becomes_the_turn() -> None:
    p = TurnPolicy(PolicySettings(barge_in_min_ms=300))
    _speak_over_agent(p)
    assert p.on_frame(in_speech=True, speech_s=0.28, audible=True, now_s=3.28) == []
    assert p.on_frame(in_speech=True, speech_s=0.30, audible=True, now_s=3.3) == [
        Interruption(3.3, "barge_in"), AnnounceSpeech(3.3, barge_in=True), ListenFrom(3.3, with_turn_so_far=False)]
    assert p.phase is ReplyPhase.NONE and not p.tentative
    # The interruption is now an ordinary turn: silence after it starts a reply.
    assert p.on_turn_event(SilenceBegan(4.0, AUDIO), audible=False)[-1] == StartReply(AUDIO, 4.0, commit=False)
    assert p.on_turn_event(SpeechStopped(4.0), audible=False)[-1] == AnnounceSpeechEnd(4.0)


def test_speech_over_the_agent_is_adopted_as_a_turn_once_the_agent_has_finished() -> None:
    p = TurnPolicy(PolicySettings(barge_in_min_ms=1000))
    _speak_over_agent(p)
    assert p.on_frame(in_speech=True, speech_s=0.5, audible=True, now_s=3.5) == []  # below the threshold
    p.reply_finished()  # the reply task ended, but its last audio is still heard
    assert p.on_frame(in_speech=True, speech_s=0.55, audible=True, now_s=3.55) == []
    assert p.on_frame(in_speech=True, speech_s=0.6, audible=False, now_s=3.6) == [
        AnnounceSpeech(3.6, barge_in=False), ListenFrom(3.6, with_turn_so_far=False)]
    assert p.on_turn_event(UserTurn(AUDIO, 3.0, 4.5), audible=False) == [StartReply(AUDIO, 4.5, commit=True)]


def test_reply_audio_still_heard_makes_new_speech_tentative() -> None:
    p = TurnPolicy()
    assert p.engaged(audible=True) and not p.engaged(audible=False)
    assert p.on_turn_event(SpeechStarted(2.0), audible=True) == [] and p.tentative
    assert p.on_frame(in_speech=False, speech_s=0.0, audible=True, now_s=2.1) == []  # nothing while not speaking


def test_thresholds_are_data_and_can_be_replaced_between_frames() -> None:
    p = TurnPolicy(PolicySettings(barge_in_min_ms=1000))
    _speak_over_agent(p)
    assert p.on_frame(in_speech=True, speech_s=0.4, audible=True, now_s=3.4) == []
    p.settings = PolicySettings(barge_in_min_ms=400)
    assert p.on_frame(in_speech=True, speech_s=0.4, audible=True, now_s=3.4)[0] == Interruption(3.4, "barge_in")


def test_a_typed_turn_interrupts_and_is_answered_at_once_and_a_spoken_turn_then_adds_no_reply() -> None:
    p = TurnPolicy()
    p.on_turn_event(SpeechStarted(0.5), audible=False)
    assert p.on_text("What time is it?", 1.0) == [Interruption(1.0, "user_text"),
                                                   StartReply(None, 1.0, commit=True, text="What time is it?")]
    assert p.phase is ReplyPhase.COMMITTED
    assert p.on_turn_event(SilenceBegan(1.2, AUDIO), audible=False) == [Listen(False)]  # one reply at a time
    assert p.on_turn_event(UserTurn(AUDIO, 0.5, 1.2), audible=False) == [CommitReply()]


def test_cancel_interrupts_and_leaves_no_reply() -> None:
    p = TurnPolicy()
    p.phase = ReplyPhase.COMMITTED
    assert p.interrupt(5.0, "client_cancel") == [Interruption(5.0, "client_cancel")]
    assert p.phase is ReplyPhase.NONE


def test_the_real_turn_detector_drives_the_policy_through_a_pause_and_a_turn() -> None:
    """Stage test: frames through the TurnDetector (energy VAD) into the policy, decisions out."""
    detector = TurnDetector(EnergyVAD(), TurnSettings(min_speech_ms=160, speculate_silence_ms=96,
                                                      end_of_turn_silence_ms=400))
    policy = TurnPolicy()
    rate, frame = 16000, 320
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(frame) / rate)).astype(np.float32)
    silence = np.zeros(frame, np.float32)
    script = [silence] * 10 + [tone] * 40 + [silence] * 10 + [tone] * 30 + [silence] * 40  # a pause, then more
    decisions = []
    for i, samples in enumerate(script):
        detector.feed(samples)
        for event in detector.drain():
            decisions += policy.on_turn_event(event, audible=False)
        decisions += policy.on_frame(in_speech=detector.in_speech, speech_s=detector.speech_s, audible=False,
                                     now_s=(i + 1) * frame / rate)
    kinds = [type(d).__name__ for d in decisions if not isinstance(d, Listen)]
    assert kinds == ["AnnounceSpeech", "ListenFrom", "StartReply", "DiscardReply", "StartReply", "AnnounceSpeechEnd",
                     "CommitReply"]
    starts = [d for d in decisions if isinstance(d, StartReply)]
    assert [s.commit for s in starts] == [False, False]
    # The answered speculation holds the whole utterance, both parts and the pause between them.
    assert starts[-1].audio is not None and starts[-1].audio.duration_s > 1.4
    assert policy.phase is ReplyPhase.COMMITTED
