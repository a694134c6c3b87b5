"""The reference client's patience (unit, no server): a turn the server has ended (``speech_stopped``) is owed a
reply or a refusal, so the client waits for it through a long quiet (its ASR pass may queue behind other
sessions'), where a turn the server never ended counts as over after a short one."""

from __future__ import annotations

from typing import Any

from attune.transports.client import ANSWER_PATIENCE_S, QUIET_TURN_S, ClientRun, _busy

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def _run(*events: tuple[str, float]) -> ClientRun:
    run = ClientRun()
    run.events = [{"type": kind, "t": t} for kind, t in events]
    return run


def test_a_turn_the_server_ended_is_waited_for_through_a_long_quiet() -> None:
    ended: Any = _run(("input_audio_buffer.speech_started", 0.5), ("input_audio_buffer.speech_stopped", 3.0))
    assert _busy(ended, 3.0 + QUIET_TURN_S + 2.0)  # the old give-up: 5 s of quiet after the end of the speech
    assert not _busy(ended, 3.0 + ANSWER_PATIENCE_S + 0.1)
    heard: Any = _run(("input_audio_buffer.speech_started", 0.5), ("emotion.measurement", 1.0))
    assert _busy(heard, 1.0 + QUIET_TURN_S - 0.5) and not _busy(heard, 1.0 + QUIET_TURN_S + 0.1)
    answered = _run(("input_audio_buffer.speech_started", 0.5), ("input_audio_buffer.speech_stopped", 3.0),
                    ("error", 3.2), ("response.done", 5.0))
    assert not _busy(answered, 5.5)  # refused and ended: nothing more to wait for


def test_a_turn_heard_as_noise_ends_with_its_empty_transcript() -> None:
    """No reply follows a turn whose transcript is ``empty``: the client stops waiting at once, not after
    ``ANSWER_PATIENCE_S``; a later turn is waited for again."""
    run: Any = _run(("input_audio_buffer.speech_started", 0.5), ("input_audio_buffer.speech_stopped", 3.0))
    run.events.append({"type": "conversation.item.input_audio_transcription.completed", "t": 3.4, "transcript": "",
                       "empty": True, "turn": 1})
    assert not _busy(run, 3.5)
    run.events.append({"type": "input_audio_buffer.speech_started", "t": 4.0})
    assert _busy(run, 4.1)
    words: Any = _run(("input_audio_buffer.speech_started", 0.5), ("input_audio_buffer.speech_stopped", 3.0),
                      ("conversation.item.input_audio_transcription.completed", 3.4))
    assert _busy(words, 3.5)  # words heard: a reply is owed
