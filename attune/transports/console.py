"""The conversation as a person reads it on a terminal: session events in, lines out (``mic``, ``file``, the demo).

Per turn: what Attune heard (the words, the emotion with its confidence, or why the voice could not be read), how
it chose to answer, what it said, and the turn's latency. Pure: ``ConversationConsole.show(event)`` writes lines
through the callable it was given, so it is tested without a terminal or a session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attune.core import events as ev
from attune.core.emotion import RELIABLE_CONFIDENCE
from attune.core.events import SessionEvent

INDENT = "  "
LABEL = 9  # width of the label column


def _line(label: str, text: str) -> str:
    return f"{INDENT}{label:<{LABEL}}{text}"


def emotion_heard(emotion: dict[str, Any] | None) -> str:
    """One line for a turn's ``EmotionResult.to_dict()``: the emotion and how sure, or why it is unclear."""
    if not emotion:
        return "not measured"
    conf = float(emotion.get("confidence") or 0.0)
    quality = emotion.get("quality") or {}
    if isinstance(quality, dict) and quality.get("usable") is False:
        issues = ", ".join(quality.get("issues") or []) or "unusable audio"
        return f"unclear ({issues})"
    preds = emotion.get("predictions") or []
    top = preds[0]["emotion"] if preds else "?"
    if conf < RELIABLE_CONFIDENCE:
        return (f"unclear: confidence {conf:.0%} is below {RELIABLE_CONFIDENCE:.0%} "
                f"(best guess {top}; a synthetic or unusual voice reads this way)")
    dims = emotion.get("dimensions") or {}
    cues = ""
    if isinstance(dims, dict) and "valence" in dims and "arousal" in dims:
        cues = f" (valence {float(dims['valence']):+.2f}, arousal {float(dims['arousal']):+.2f})"
    return f"{top}, {conf:.0%} confident{cues}"


def emotion_summary(trace: dict[str, Any]) -> str:
    """The turn's emotion as the trace records it, in the same words as ``emotion_heard``'s verdict."""
    emotion, conf = trace.get("user_emotion"), trace.get("user_confidence")
    if emotion is None:
        return "emotion not measured"
    if trace.get("user_emotion_reliable") is False or (conf is not None and conf < RELIABLE_CONFIDENCE):
        return "emotion unclear" + (f" ({conf:.0%})" if conf is not None else "")
    return f"{emotion}" + (f" ({conf:.0%})" if conf is not None else "")


def turn_summary(trace: dict[str, Any]) -> str:
    """One line per turn for the end of a run; agrees with what ``ConversationConsole`` printed during it."""
    v2v = trace.get("voice_to_voice_ms")
    latency = f"{v2v:.0f} ms voice to voice" if isinstance(v2v, (int, float)) else "no voice-to-voice time"
    return (f"turn {trace.get('turn')}: heard \"{trace.get('transcript', '')}\" | {emotion_summary(trace)} -> "
            f"{trace.get('strategy')}: {trace.get('expressed_emotion')} | said \"{trace.get('reply_text', '')}\" | "
            f"{trace.get('status')} | {latency}")


class ConversationConsole:
    """Session events -> the lines of a readable conversation. ``write`` takes one line (default ``print``)."""

    def __init__(self, write: Callable[[str], object] = print) -> None:
        self.write = write
        self._speaking = False  # Attune's reply of this turn has started

    def say(self, label: str, text: str) -> None:
        self.write(_line(label, text))

    def show(self, event: SessionEvent) -> None:
        d, t = event.data, event.type
        if t == ev.SPEECH_STARTED:
            self.write(f"[{d['audio_start_ms'] / 1000:7.2f} s] listening...")
        elif t == ev.TRANSCRIPT:
            self._speaking = False
            self.say("heard", f"\"{d['transcript']}\"")
        elif t == ev.EMOTION_TURN:
            self.say("emotion", emotion_heard(d.get("emotion")))
        elif t == ev.RESPONSE_CREATED:
            self.say("answer", f"{d.get('strategy')}: {d.get('expressed_emotion')} voice ({d.get('reason', '')})")
        elif t == ev.TRANSCRIPT_DELTA:
            self.say("" if self._speaking else "Attune", str(d["delta"]).strip())
            self._speaking = True
        elif t == ev.RESPONSE_DONE:
            self._speaking = False
            self.say("latency", _latency(d.get("trace") or {}))
        elif t == ev.RESPONSE_CANCELLED:
            self._speaking = False
            self.say("", "(interrupted: Attune stopped and remembers only what it said)")
        elif t == ev.ERROR:
            self.say("error", f"[{d.get('code')}] {d.get('message')}")


def _latency(trace: dict[str, Any]) -> str:
    v2v = trace.get("voice_to_voice_ms")
    if not isinstance(v2v, (int, float)):
        return "no reply audio this turn"
    marks = trace.get("latency_ms") or {}
    steps = [f"{label} +{marks[key]:.0f}" for key, label in (("asr_done", "words"), ("llm_first_token", "first token"))
             if isinstance(marks.get(key), (int, float))]
    detail = f" ({', '.join(steps)} ms)" if steps else ""
    return f"{v2v:.0f} ms from the end of your speech to Attune's voice{detail}"
