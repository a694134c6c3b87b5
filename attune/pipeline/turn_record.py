"""What a conversation keeps of each reply once it ends: the history (only what the user heard), the emotion
trajectory, the turn's trace (kept, written, and sent as ``response.done`` or ``response.cancelled``) and the LLM
call's figures. The session hands every ``ReplyOutcome`` here; nothing else writes these.
"""

from __future__ import annotations

import logging
from pathlib import Path

from attune.agent.memory import ConversationMemory
from attune.backends.base import Completion
from attune.core import events as ev
from attune.core.emotion import EmotionResult
from attune.core.events import SessionEvent
from attune.core.trace import TraceWriter, TurnTrace
from attune.pipeline.reply import ReplyOutcome

log = logging.getLogger(__name__)


class TurnRecorder:
    """The conversation so far: ``memory`` (the LLM's history), ``trajectory`` (one emotion per recorded turn),
    ``turns`` (the traces) and ``last_completion`` (the last reply's LLM figures, which the lab replays)."""

    def __init__(self, history_max_tokens: int, trace_path: Path | None = None) -> None:
        self.memory = ConversationMemory(history_max_tokens)
        self.trajectory: list[EmotionResult] = []
        self.turns: list[TurnTrace] = []
        self.last_completion: Completion | None = None
        self.trace_writer = TraceWriter(trace_path)

    def record(self, outcome: ReplyOutcome, reason: str) -> SessionEvent | None:
        """Keep what ``outcome`` says was heard; returns the event that ends the turn for the client
        (``response.done``, or ``response.cancelled`` with ``reason``), None for a reply that is not kept."""
        if not outcome.recorded:
            return None
        if outcome.transcript:
            self.memory.add_user(outcome.user_message or outcome.transcript)
            self.memory.add_assistant(outcome.heard_text, interrupted=outcome.heard_text != outcome.reply_text)
        if outcome.user_emotion is not None:
            self.trajectory.append(outcome.user_emotion)
        self.last_completion = outcome.completion
        trace = outcome.trace
        trace.info.update({"transcript": outcome.transcript, "reply_text": outcome.reply_text,
                           "heard_text": outcome.heard_text, "status": outcome.status})
        self.turns.append(trace)
        try:
            self.trace_writer.write(trace)
        except OSError as exc:
            log.warning("cannot write trace: %s", exc)
        data = {"turn": outcome.turn, "status": outcome.status, "trace": trace.to_dict()}
        if outcome.interrupted:
            return SessionEvent(ev.RESPONSE_CANCELLED, {**data, "reason": reason or "barge_in"})
        return SessionEvent(ev.RESPONSE_DONE, data)

    def dropped(self, outcome: ReplyOutcome, reason: str) -> SessionEvent:
        """A reply stopped before any of its words were heard because its turn was not over (a premature commit):
        nothing of it is kept, the turn goes on; the client is told it ended (``response.cancelled``)."""
        trace = outcome.trace
        trace.info.update({"transcript": outcome.transcript, "status": "cancelled"})
        return SessionEvent(ev.RESPONSE_CANCELLED, {"turn": outcome.turn, "status": "cancelled", "reason": reason,
                                                    "trace": trace.to_dict()})
