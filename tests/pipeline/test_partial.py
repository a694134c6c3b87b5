"""Transcribing while the person speaks: the prefix agreement and the decode schedule (layer 1)."""

from __future__ import annotations

from attune.pipeline.partial import DecodeSchedule, TranscriptAgreement

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def test_words_settle_once_two_passes_agree_and_never_shrink() -> None:
    t = TranscriptAgreement()
    assert t.push("I was") == ""  # one pass settles nothing
    assert t.push("I was thinking.") == "I"  # the last word of a pass is never settled
    assert t.push("I was thinking, maybe we") == "was"
    assert t.push("I was thinking, maybe we could go") == "thinking, maybe"  # "thinking." == "thinking,"
    assert t.settled == "I was thinking, maybe" and t.tentative == "we could go"
    assert t.push("Ivy was sinking") == ""  # disagrees with what is settled: nothing is taken back
    assert t.settled == "I was thinking, maybe" and t.latest == "Ivy was sinking"
    t.reset()
    assert t.settled == "" and t.push("hello there") == ""


def test_schedule_asks_for_a_pass_every_step_of_new_audio() -> None:
    s = DecodeSchedule(step_s=0.3, min_s=0.6)
    assert not s.due(0.5)
    assert s.due(0.6)
    s.started(0.6)
    assert not s.due(0.8) and s.due(0.9)
    s.reset()
    assert s.due(0.6)


async def test_background_worker_runs_at_a_lower_priority() -> None:
    import os
    import sys
    import threading

    from attune.pipeline.listening import BackgroundWorker

    worker = BackgroundWorker(nice=7)
    try:
        def where() -> tuple[int, int]:
            tid = threading.get_native_id()
            return tid, os.getpriority(os.PRIO_PROCESS, tid)

        tid, nice = await worker.run(where)
        assert tid != threading.get_native_id()  # off the event loop's thread
        if sys.platform.startswith("linux"):
            assert nice >= min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 7)
        assert worker.call(lambda: 41 + 1) == 42
    finally:
        worker.close()
