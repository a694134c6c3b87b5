"""The conversation console (what a person reads during ``mic``, ``file`` and the demo) and where log records go."""

from __future__ import annotations

import logging

from attune.core import events as ev
from attune.core.emotion import RELIABLE_CONFIDENCE
from attune.core.events import SessionEvent
from attune.core.logs import setup_logging
from attune.transports.console import ConversationConsole, emotion_heard, turn_summary

LAYER = "unit"  # STYLE.md layer 1: pure formatting, no session, no models


def _emotion(conf: float, usable: bool = True) -> dict[str, object]:
    return {"confidence": conf, "predictions": [{"emotion": "frustrated", "confidence": conf}],
            "dimensions": {"valence": -0.4, "arousal": 0.5}, "quality": {"usable": usable, "issues": [] if usable
                                                                          else ["too quiet"]}}


def _turn(conf: float) -> list[SessionEvent]:
    trace = {"turn": 1, "voice_to_voice_ms": 1640.0, "latency_ms": {"asr_done": 340.0, "llm_first_token": 926.0},
             "transcript": "The delivery is late again", "user_emotion": "frustrated", "user_confidence": conf,
             "user_emotion_reliable": conf >= RELIABLE_CONFIDENCE, "strategy": "complement",
             "expressed_emotion": "neutral", "reply_text": "Oh no, that is annoying. Let me help.",
             "status": "completed"}
    return [SessionEvent(ev.SPEECH_STARTED, {"audio_start_ms": 420}),
            SessionEvent(ev.TRANSCRIPT, {"turn": 1, "transcript": "The delivery is late again"}),
            SessionEvent(ev.EMOTION_TURN, {"turn": 1, "emotion": _emotion(conf), "context": ""}),
            SessionEvent(ev.RESPONSE_CREATED, {"turn": 1, "strategy": "complement", "expressed_emotion": "calm",
                                               "reason": "user sounds frustrated: answer calm"}),
            SessionEvent(ev.TRANSCRIPT_DELTA, {"turn": 1, "delta": "Oh no, "}),
            SessionEvent(ev.TRANSCRIPT_DELTA, {"turn": 1, "delta": "that is annoying. Let me help."}),
            SessionEvent(ev.RESPONSE_DONE, {"turn": 1, "status": "completed", "trace": trace})]


def test_a_turn_reads_as_heard_emotion_answer_words_and_latency() -> None:
    lines: list[str] = []
    console = ConversationConsole(lines.append)
    for event in _turn(0.62):
        console.show(event)
    text = "\n".join(lines)
    assert [line.split()[0] for line in lines] == ["[", "heard", "emotion", "answer", "Attune", "that", "latency"]
    assert '"The delivery is late again"' in text and "frustrated, 62% confident" in text
    assert "complement: calm" in text and "1640 ms" in text and "first token +926" in text


def test_an_unclear_voice_is_unclear_in_the_turn_and_in_the_summary() -> None:
    # The demo's synthetic voice: the console said "unclear" while the summary said "user frustrated". Both now
    # name the same verdict, whatever the best guess was.
    lines: list[str] = []
    console = ConversationConsole(lines.append)
    events = _turn(0.08)
    for event in events:
        console.show(event)
    heard = next(line for line in lines if line.strip().startswith("emotion"))
    summary = turn_summary(events[-1].data["trace"])
    assert "unclear" in heard and "unclear" in summary
    assert "frustrated (" not in summary and "confident" not in heard
    assert "unclear (too quiet)" == emotion_heard(_emotion(0.9, usable=False))


def test_conversation_commands_keep_library_logs_off_the_terminal(tmp_path, capsys) -> None:
    path = setup_logging("info", explicit=False, conversation=True, log_file=tmp_path / "attune.log")
    try:
        logging.getLogger("faster_whisper").info("Processing audio with duration 00:01.000")
        logging.getLogger("attune.pipeline.session").info("turn committed")
        logging.getLogger("attune.backends.tts").warning("piper unavailable")
        err = capsys.readouterr().err
        assert "Processing audio" not in err and "turn committed" not in err and "piper unavailable" in err
        assert path is not None
        logged = path.read_text()
        assert "Processing audio" in logged and "turn committed" in logged
        setup_logging("info", explicit=False, conversation=False)  # another command: Attune's own INFO only
        logging.getLogger("faster_whisper").info("Processing audio again")
        logging.getLogger("attune.x").info("own record")
        err = capsys.readouterr().err
        assert "Processing audio again" not in err and "own record" in err
        setup_logging("debug", explicit=True, conversation=True)  # --log-level: everything, on stderr
        logging.getLogger("faster_whisper").debug("library detail")
        assert "library detail" in capsys.readouterr().err
    finally:
        setup_logging("warning", explicit=True, conversation=False)
