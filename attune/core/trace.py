"""Per-turn latency tracing: wall-clock marks from the end of the user's speech to the first reply audio, plus
what the agent decided (emotion, strategy, expressed emotion). Written as JSON lines and returned with the turn.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKS = ("speech_stopped", "turn_committed", "asr_done", "llm_first_token", "first_sentence_ready",
         "first_audio_out")


@dataclass
class TurnTrace:
    """Marks are ``time.perf_counter()`` values; ``to_dict()`` reports them in ms after ``speech_stopped``."""

    turn: int
    speech_start_s: float = 0.0  # stream time
    speech_end_s: float = 0.0  # stream time the user's speech ended
    first_audio_stream_s: float | None = None  # stream time of the first reply sample
    marks: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def mark(self, name: str, at: float | None = None) -> None:
        if name not in self.marks:
            self.marks[name] = time.perf_counter() if at is None else at

    def ms(self, name: str) -> float | None:
        if name not in self.marks or "speech_stopped" not in self.marks:
            return None
        return round((self.marks[name] - self.marks["speech_stopped"]) * 1000.0, 1)

    @property
    def voice_to_voice_ms(self) -> float | None:
        """Stream-clock gap from the end of the user's speech to the first reply sample."""
        if self.first_audio_stream_s is None:
            return None
        return round((self.first_audio_stream_s - self.speech_end_s) * 1000.0, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "speech_start_s": round(self.speech_start_s, 3),
            "speech_end_s": round(self.speech_end_s, 3),
            "latency_ms": {name: self.ms(name) for name in MARKS if name in self.marks},
            "voice_to_voice_ms": self.voice_to_voice_ms,
            **self.info,
        }


class TraceWriter:
    """Appends one JSON object per turn to ``path``; a no-op when ``path`` is empty."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def write(self, trace: TurnTrace) -> None:
        if self.path is None:
            return
        line = json.dumps(trace.to_dict(), default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
