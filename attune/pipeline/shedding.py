"""Load shedding: what a session does while the LLM it shares cannot take its reply now.

A session's work falls in two kinds. *Listening* (turn detection, streaming emotion, the end-of-turn model) is
cheap and always runs: DESIGN's 50 sessions listen at once. Work done *ahead of a reply* (Whisper passes while
the user speaks, KV prefill, a speculative reply started when silence begins, which runs the final ASR pass,
the turn's emotion and the LLM before the turn is over) only pays when that reply will be served soon; on a
machine whose cores are shared by every session it competes with the one reply being generated. So:

- ``LoadShedding.speculate`` is the one rule the session and its listener read before such work: True while
  the shared LLM would admit a reply now for this session's turn and for every turn in progress that began
  before it (``Admission.would_admit``; the session reports its turns with ``mid_turn``), or always where the
  session has an LLM of its own. False sheds the partial passes, the prefill and the speculative reply; the turn
  is then answered from its end, like a turn without speculation. So when twenty people speak at once and two
  places are free, the first two turns run their partial passes and the other eighteen do not compete with them
  for the cores (the places are taken at the end of the speech, first come).
- A reply asks for its place first (``Admission.admit``, before its ASR pass): refused, it says so at once
  (``server_busy``, the spoken apology) without paying the ASR, the emotion or the LLM for a turn it will not
  answer; admitted, the place (``Place``) is held through its ASR and understanding and becomes its LLM request's.
  ``SessionLLM`` (``pipeline.shared_llm``) is the server's ``Admission``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Place(Protocol):
    """A reply's place among the requests the shared LLM admits. Held from the end of the speech; the reply's
    LLM request takes it over; ``release()`` gives it up (a reply that ends before its request, or is cancelled);
    releasing twice, or after the request took it, does nothing."""

    alone: bool  # taken with no other reply in flight and no other turn in progress (its figures are a lone one's)
    capacity: int  # the capacity when it was taken (0: not known): the governor's sample says what it was
    ahead: int  # replies in flight when it was taken: the holds it waits for
    listening: int  # other sessions listening when it was taken: what its turn shares the cores with

    def release(self) -> None: ...


class Admission(Protocol):
    """The shared LLM's door as one session sees it."""

    def would_admit(self) -> bool:
        """A reply asked for now would get a place (nothing is reserved)."""
        ...

    def admit(self) -> Place:
        """A place for this session's next reply, or ``ServerBusy`` (with ``retry_after_s``) at once."""
        ...

    def mid_turn(self, speaking: bool) -> None:
        """Whether the session's user is mid-turn (from the start of the speech to the end of the turn); called
        on every input frame, so it must act only on a change."""
        ...


@dataclass(frozen=True)
class LoadShedding:
    """The session's rule for work done ahead of a reply; ``admission`` None (an LLM of its own: the file, console
    and kiosk transports) never sheds and admits every reply."""

    admission: Admission | None = None

    @property
    def speculate(self) -> bool:
        """Partial passes, prefill and a speculative reply are worth their CPU now."""
        return self.admission is None or self.admission.would_admit()

    def admit(self) -> Place | None:
        """A place for the reply about to start (None: nothing to hold), or ``ServerBusy``."""
        return None if self.admission is None else self.admission.admit()

    def mid_turn(self, speaking: bool) -> None:
        """Tell the admission whether the user is mid-turn (every input frame; nothing without an admission)."""
        if self.admission is not None:
            self.admission.mid_turn(speaking)
