"""Turn-taking and barge-in policy: the turn detector's events and the agent's state in, decisions out.

``TurnPolicy`` is pure and synchronous (no asyncio, no clock of its own): the session feeds it each turn event
(``on_turn_event``), asks it once per input frame whether speech over the agent has become a barge-in
(``on_frame``), and executes the decisions it returns, in order. The policy tracks the one reply's phase (none,
speculative, committed) from its own decisions; the session tells it when that reply is over
(``reply_finished``). Its rules:

- Speech that starts while the agent is engaged (a committed reply, or reply audio still being heard) is
  *tentative*: a backchannel ("mhm") unless it lasts ``barge_in_min_ms``, then it interrupts the agent and
  becomes the user's turn (``barge_in`` True); if the agent finishes first it is adopted as an ordinary turn.
- When silence begins after the user's speech the reply starts speculatively (unless the session sheds that
  work under load: ``speculate`` False, ``pipeline.shedding``; it then starts at the end of the turn); if the
  user goes on it is discarded; the end of the turn (``end_of_turn``, the one place it is decided) commits it.
- A turn committed too early: when the user speaks again before any of the committed reply's words had begun
  (only its first sound, an acknowledgement, or nothing yet; the session's ``unanswered``, which counts from the
  new speech's pre-roll), the turn was not over. ``ResumeTurn`` stops
  the reply at once (once ``min_speech_ms`` of voice has started a turn, not ``barge_in_min_ms``) and the speech
  continues that turn: one turn, one reply.
- With ``auto_respond`` off (a Realtime client's manual mode) no reply starts by itself: an ended turn is held
  (turns ended before the reply join it) until ``respond()`` starts the reply to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from attune.core.frames import AudioChunk, Interruption, SpeechStarted, SpeechStopped
from attune.pipeline.turn import SilenceBegan, SpeechResumed, TurnEvent, UserTurn


@dataclass(frozen=True)
class PolicySettings:
    """The policy's thresholds, as data (a session may replace them between frames)."""

    barge_in_min_ms: int = 300  # voiced time over the agent that interrupts it
    auto_respond: bool = True  # False: an ended turn is held until ``respond()`` (a client's ``response.create``)


class ReplyPhase(Enum):
    NONE = "none"  # no reply in progress
    SPECULATIVE = "speculative"  # started on silence; nothing of it is sent until committed
    COMMITTED = "committed"  # the turn is over: the reply speaks


# ---- decisions, executed by the session in the order given ----
@dataclass(frozen=True)
class AnnounceSpeech:
    """Emit ``speech_started`` at ``at_s``; ``barge_in`` is None for a turn that began in silence."""

    at_s: float
    barge_in: bool | None = None


@dataclass(frozen=True)
class AnnounceSpeechEnd:
    """Emit ``speech_stopped`` at ``at_s``."""

    at_s: float


@dataclass(frozen=True)
class ListenFrom:
    """Open the emotion gate: the user's voice from stream time ``offset_s`` on is analysed; with
    ``with_turn_so_far`` the turn's audio already heard (pre-roll included) goes first."""

    offset_s: float
    with_turn_so_far: bool
    resumed: bool = False  # the turn goes on from a premature commit: its earlier windows are kept


@dataclass(frozen=True)
class Listen:
    """Emotion gate on (True) or off (False), without resetting the stream."""

    on: bool


@dataclass(frozen=True)
class StartReply:
    """Start a reply to the turn in ``audio`` (None: the typed ``text``) that ended at ``speech_end_s``;
    ``commit`` releases it at once, otherwise it is speculative."""

    audio: AudioChunk | None
    speech_end_s: float
    commit: bool
    text: str | None = None


@dataclass(frozen=True)
class CommitReply:
    """Release the speculative reply: the turn is over."""


@dataclass(frozen=True)
class DiscardReply:
    """Cancel the speculative reply and forget its turn: the user went on speaking."""


@dataclass(frozen=True)
class ResumeTurn:
    """The committed turn was not over (a premature commit): stop its reply at stream time ``at_s`` without
    keeping it (no history, nothing heard of it but its first sound), and answer the speech that starts here
    together with that turn's, as one turn."""

    at_s: float


Decision = (AnnounceSpeech | AnnounceSpeechEnd | ListenFrom | Listen | StartReply | CommitReply | DiscardReply
            | Interruption | ResumeTurn)


class TurnPolicy:
    """Decides turn-taking; see the module docstring. ``audible`` inputs say whether reply audio is still being
    heard at the current stream time (the session's output clock knows)."""

    def __init__(self, settings: PolicySettings | None = None) -> None:
        self.settings = settings or PolicySettings()
        self.phase = ReplyPhase.NONE
        self.tentative = False  # speech began while the agent was engaged and is not yet a turn
        self.held: StartReply | None = None  # the ended turn waiting for respond() (auto_respond off)
        self._tentative_from = 0.0  # stream time the tentative speech started

    @property
    def tentative_from(self) -> float:
        """Stream time the tentative speech started (its pre-roll included); meaningful while ``tentative``."""
        return self._tentative_from

    def engaged(self, *, audible: bool) -> bool:
        """A committed reply is pending or playing, or its audio is still being heard."""
        return self.phase is ReplyPhase.COMMITTED or audible

    def on_turn_event(self, event: TurnEvent, *, audible: bool, speculate: bool = True) -> list[Decision]:
        if isinstance(event, SpeechStarted):
            if self.engaged(audible=audible):
                self.tentative, self._tentative_from = True, event.timestamp_s
                return []
            self.tentative = False
            return [AnnounceSpeech(event.timestamp_s), ListenFrom(event.timestamp_s, with_turn_so_far=True)]
        if isinstance(event, SilenceBegan):
            out: list[Decision] = [Listen(False)]
            if not self.tentative and self.phase is ReplyPhase.NONE and self.settings.auto_respond and speculate:
                self.phase = ReplyPhase.SPECULATIVE
                out.append(StartReply(event.audio, event.timestamp_s, commit=False))
            return out
        if isinstance(event, SpeechResumed):
            out = []
            if self.phase is ReplyPhase.SPECULATIVE:
                self.phase = ReplyPhase.NONE
                out.append(DiscardReply())
            if not self.tentative:
                out.append(Listen(True))
            return out
        if isinstance(event, SpeechStopped):
            stopped: list[Decision] = [Listen(False)]
            return stopped if self.tentative else [*stopped, AnnounceSpeechEnd(event.timestamp_s)]
        if isinstance(event, UserTurn):
            if self.tentative:
                self.tentative = False  # a backchannel: it ended before it was anything more
                return []
            return self.end_of_turn(event.audio, event.end_s)
        return []

    def end_of_turn(self, audio: AudioChunk, speech_end_s: float) -> list[Decision]:
        """The user's turn is over: start a committed reply, or commit the one in progress (speculative; or a typed
        turn's, which already answers)."""
        if not self.settings.auto_respond:
            out: list[Decision] = []
            if self.phase is ReplyPhase.SPECULATIVE:  # auto_respond was turned off during the turn
                self.phase = ReplyPhase.NONE
                out.append(DiscardReply())
            self.hold(audio, speech_end_s)
            return out
        was, self.phase = self.phase, ReplyPhase.COMMITTED
        if was is ReplyPhase.NONE:
            return [StartReply(audio, speech_end_s, commit=True)]
        return [CommitReply()]

    def hold(self, audio: AudioChunk, speech_end_s: float) -> None:
        """Keep an ended turn (or a client's recorded one) for ``respond()``; one already held is joined to it."""
        held = self.held
        if held is not None and held.audio is not None:  # turns not yet answered are answered together
            audio = AudioChunk(np.concatenate([held.audio.samples, audio.samples]), audio.sample_rate,
                               held.audio.timestamp_s)
        self.held = StartReply(audio, speech_end_s, commit=True)

    def respond(self) -> list[Decision]:
        """Start the reply to the held turn (a client's ``response.create``); nothing when none is held."""
        held, self.held = self.held, None
        if held is None:
            return []
        self.phase = ReplyPhase.COMMITTED
        return [held]

    def on_frame(self, *, in_speech: bool, speech_s: float, audible: bool, now_s: float,
                 unanswered: bool = False) -> list[Decision]:
        """After each input frame: decide a tentative turn. It becomes an ordinary turn once the agent is no
        longer engaged; it interrupts once it has ``speech_s`` >= ``barge_in_min_ms`` of voice. ``unanswered``: the
        committed reply is to a spoken turn and none of its words have been heard yet; speech then resumes that
        turn at once (a premature commit)."""
        if not in_speech or not self.tentative:
            return []
        if unanswered and self.phase is ReplyPhase.COMMITTED and self.settings.auto_respond:
            self.phase, self.tentative = ReplyPhase.NONE, False
            start = self._tentative_from
            return [ResumeTurn(now_s), AnnounceSpeech(start), ListenFrom(start, with_turn_so_far=True, resumed=True)]
        if not self.engaged(audible=audible):
            return self._adopt(now_s, barge_in=False)
        if speech_s * 1000.0 >= self.settings.barge_in_min_ms:
            return [*self.interrupt(now_s, "barge_in"), *self._adopt(now_s, barge_in=True)]
        return []

    def on_text(self, text: str, now_s: float) -> list[Decision]:
        """A typed turn: it interrupts whatever the agent is doing and is answered at once."""
        out = self.interrupt(now_s, "user_text")
        self.phase = ReplyPhase.COMMITTED
        return [*out, StartReply(None, now_s, commit=True, text=text)]

    def interrupt(self, now_s: float, reason: str) -> list[Decision]:
        """Cut the agent off now (barge-in, a typed turn, the client's cancel)."""
        self.phase = ReplyPhase.NONE
        return [Interruption(now_s, reason)]

    def clear(self) -> list[Decision]:
        """The client dropped the speech heard so far (``input_audio_buffer.clear``): no tentative turn, and a
        speculative reply to that speech is discarded."""
        self.tentative = False
        out: list[Decision] = [Listen(False)]
        if self.phase is ReplyPhase.SPECULATIVE:
            self.phase = ReplyPhase.NONE
            out.append(DiscardReply())
        return out

    def reply_finished(self) -> None:
        """The session recorded the reply (played out, or ended without audio)."""
        self.phase = ReplyPhase.NONE

    def _adopt(self, now_s: float, *, barge_in: bool) -> list[Decision]:
        self.tentative = False
        # From here on the agent is silent, so the voice is the user's: analyse it from now.
        return [AnnounceSpeech(now_s, barge_in), ListenFrom(now_s, with_turn_so_far=False)]
