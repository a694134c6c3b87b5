"""Replaying the end-of-turn policy over recordings, on the stream clock: how long a session waits after the end
of a person's speech, and how often it commits a turn before the person has finished (a cut-off).

Two halves. ``hear_pauses`` runs the session's own listening engines over one recording (the turn detector with
Silero VAD, smart-turn on the turn so far plus 200 ms of silence, Whisper on the turn so far, as the speculative
reply transcribes it) and keeps, for every pause long enough to start a speculative reply, what the policy would
see there: P(complete), the words, and how long the silence lasted. ``replay`` is pure: it walks those pauses
with any ``EndOfTurnPolicy`` and says where the turn was committed, so policies are compared in milliseconds on
the same engine outputs. Waits count silence in VAD chunks as the session does; the engines' compute time (which
depends on the machine and its load) is not in them. Lab code: it belongs with the benchmarks (``attune_lab``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from attune.core.audio import SAMPLE_RATE
from attune.core.frames import AudioChunk
from attune.core.stats import percentile
from attune.pipeline.endpoint import EndOfTurnPolicy
from attune.pipeline.listening import PREDICT_SILENCE_S
from attune.pipeline.turn import CHUNK_S, SilenceBegan, SpeechResumed, TurnDetector, TurnSettings

CHUNK_MS = CHUNK_S * 1000.0  # the VAD's step: the session counts silence in these
TAIL_S = 2.0  # silence fed after a recording, longer than any wait
# RAVDESS file names: modality-channel-emotion-intensity-statement-repetition-actor
_WORD = re.compile(r"[a-z0-9']+")
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}


class EndOfTurnModel(Protocol):
    def complete_probability(self, samples: np.ndarray) -> float: ...


@dataclass(frozen=True)
class Pause:
    """One silence after speech, as the policy meets it: ``gap_ms`` of silence (VAD chunks) before the person
    spoke again (``math.inf`` after the last words), smart-turn's P and Whisper's words for the turn so far."""

    end_s: float  # stream time the speech before it ended
    gap_ms: float
    probability: float
    words: str


@dataclass(frozen=True)
class Recording:
    """A recording heard: its pauses in order (the last is the end of the person's speech)."""

    name: str
    group: str  # e.g. "ravdess/sad", "librivox", "pause/paused"
    pauses: tuple[Pause, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group,
                "pauses": [{"end_s": p.end_s, "gap_ms": None if math.isinf(p.gap_ms) else p.gap_ms,
                            "probability": p.probability, "words": p.words} for p in self.pauses]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recording:
        pauses = tuple(Pause(p["end_s"], math.inf if p["gap_ms"] is None else p["gap_ms"], p["probability"],
                             p["words"]) for p in data["pauses"])
        return cls(data["name"], data["group"], pauses)


@dataclass(frozen=True)
class Outcome:
    """Where the policy committed: ``cut_off`` when at a pause after which the person said more words before the
    reply's words could be heard; ``wait_ms`` the silence waited after the last words (None when cut off, or when
    the recording had no pause at all); ``resumed`` the commits before it that the person's voice ended while only
    the reply's first sound could be heard (the session stops the sound and the turn goes on as one)."""

    name: str
    group: str
    cut_off: bool
    wait_ms: float | None
    pause: int  # index of the pause committed at (-1: none)
    resumed: int = 0


def waited_ms(required_ms: float, speculate_ms: float) -> float:
    """The silence at which the session commits: the policy is first asked once silence has begun
    (``speculate_ms``), and silence grows a VAD chunk at a time."""
    return math.ceil(max(required_ms, speculate_ms) / CHUNK_MS - 1e-9) * CHUNK_MS


def replay(recording: Recording, policy: EndOfTurnPolicy, *, speculate_ms: float, longest_ms: float,
           words_after_ms: float | None = None, preroll_ms: float = 0.0) -> Outcome:
    """Walk ``recording``'s pauses with ``policy``; ``longest_ms`` is the detector's own silence timeout (the
    unfinished wait), which ends a turn whatever the policy says.
    Speech after a commit that adds no words (a breath, a click, a sigh: the recordings of people have them) is
    not a cut-off; the wait is then counted at the commit, where the words ended. A turn committed before any
    word (a noise first) is answered with nothing, and the words after it make the next turn.
    ``words_after_ms``: with a first sound played at the commit, the silence (from its start) before the reply's
    own words could be heard. A person who goes on before then has heard only the first sound, as a listener's
    "Mm." in a pause: the session stops it and keeps listening to one turn (``ResumeTurn``), so that commit is
    counted as ``resumed``, not as a cut-off, and the walk goes on. None: every commit in a pause is a cut-off.
    ``preroll_ms``: the session counts the new speech from its pre-roll (``Session._unanswered``), so a voice that
    comes back up to that long after the words began still goes on with the turn."""
    pauses = recording.pauses
    final = len(_WORD.findall(pauses[-1].words.lower())) if pauses else 0
    resumed = 0
    for i, pause in enumerate(pauses):
        required = min(policy.required_silence_ms(pause.probability, pause.words), longest_ms)
        wait = waited_ms(required, speculate_ms)
        if wait <= pause.gap_ms:
            said = len(_WORD.findall(pause.words.lower()))
            if not said and i < len(pauses) - 1:
                continue  # a turn of no words (its reply is empty): what follows is heard as the next turn
            cut = i < len(pauses) - 1 and final > said
            if cut and words_after_ms is not None and pause.gap_ms - preroll_ms < words_after_ms:
                resumed += 1
                continue
            return Outcome(recording.name, recording.group, cut, None if cut else wait, i, resumed)
    return Outcome(recording.name, recording.group, False, None, -1, resumed)


@dataclass(frozen=True)
class GroupSummary:
    group: str
    n: int
    cut_offs: int
    wait_p50_ms: float
    wait_p95_ms: float
    wait_mean_ms: float
    held_longest: int  # turns that waited the longest silence (the 1.2 s the issue names)
    resumed: int = 0  # turns whose first sound the person's voice stopped (they went on; one turn)

    def line(self) -> str:
        return (f"{self.group:<20} n={self.n:<4} cut-offs {self.cut_offs:>3} ({self.cut_offs / max(1, self.n):5.1%})"
                f"  wait p50 {self.wait_p50_ms:5.0f}  p95 {self.wait_p95_ms:5.0f}  mean {self.wait_mean_ms:5.0f} ms"
                f"  held longest {self.held_longest}  resumed {self.resumed}")


def summarise(outcomes: Iterable[Outcome], longest_ms: float, *, by: str = "group") -> list[GroupSummary]:
    """Per group (``by="group"``) or per set, the part of the group before its first "/" (``by="set"``)."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        key = o.group if by == "group" else o.group.split("/")[0]
        groups.setdefault(key, []).append(o)
    out = []
    for key, items in sorted(groups.items()):
        waits = [o.wait_ms for o in items if o.wait_ms is not None]
        held = sum(1 for w in waits if w >= waited_ms(longest_ms, 0.0))
        mean = sum(waits) / len(waits) if waits else math.nan
        out.append(GroupSummary(key, len(items), sum(o.cut_off for o in items), percentile(waits, 50),
                                percentile(waits, 95), round(mean, 1), held, sum(o.resumed > 0 for o in items)))
    return out


def hear_pauses(samples: np.ndarray, name: str, group: str, *, vad: Any, asr: Any, model: EndOfTurnModel,
                settings: TurnSettings) -> Recording:
    """Run the listening engines over ``samples`` (16 kHz mono float32, one person's turn) followed by
    ``TAIL_S`` of silence. The detector never ends the turn itself here (the policy does, in ``replay``)."""
    vad.reset()
    detector = TurnDetector(vad, replace(settings, end_of_turn_silence_ms=10**7, max_turn_s=1e6))
    x = np.concatenate([np.asarray(samples, np.float32), np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)])
    heard: list[tuple[SilenceBegan, float]] = []  # each pause and when speech resumed after it
    step = 512
    for start in range(0, len(x), step):
        detector.feed(x[start: start + step])
        for event in detector.drain():
            if isinstance(event, SilenceBegan):
                heard.append((event, math.inf))
            elif isinstance(event, SpeechResumed) and heard and math.isinf(heard[-1][1]):
                heard[-1] = (heard[-1][0], event.timestamp_s)
    pauses = []
    pad = np.zeros(int(PREDICT_SILENCE_S * SAMPLE_RATE), np.float32)
    for began, resumed in heard:
        audio = began.audio
        p = float(model.complete_probability(np.concatenate([audio.samples.astype(np.float32), pad])))
        words = asr.transcribe(AudioChunk(audio.samples, SAMPLE_RATE, audio.timestamp_s)).text.strip()
        gap = math.inf if math.isinf(resumed) else round((resumed - began.timestamp_s) * 1000.0, 1)
        pauses.append(Pause(round(began.timestamp_s, 3), gap, round(p, 4), words))
    return Recording(name, group, tuple(pauses))


def ravdess_group(file_name: str) -> str | None:
    """"ravdess/<emotion>" from a RAVDESS file name; None for a name not in its scheme."""
    parts = file_name.split(".")[0].split("-")
    return f"ravdess/{RAVDESS_EMOTIONS[parts[2]]}" if len(parts) == 7 and parts[2] in RAVDESS_EMOTIONS else None


def report(outcomes: Sequence[Outcome], longest_ms: float) -> list[str]:
    """Printable lines: per set, then per group."""
    lines = ["per set:"] + ["  " + s.line() for s in summarise(outcomes, longest_ms, by="set")]
    lines += ["per group:"] + ["  " + s.line() for s in summarise(outcomes, longest_ms)]
    return lines
