"""One LLM shared fairly by many sessions: requests wait in one first-come queue for ``slots`` generation slots,
a waiting session is told its place, and every call's figures (prompt tokens, KV-cache reuse, time spent queued)
come back with that call (``TokenStream.completion``).

``SharedLLM.for_session()`` gives each session an ``LLMBackend`` of its own. A session has at most one reply, so
a first-come queue is round-robin between sessions: nobody is served twice while another waits.

Where the backend can, a session's view also prefills (evaluates the start of a turn still being spoken into the
KV cache). A prefill takes no slot and never waits: it runs only while no generation holds or waits for a slot,
and only for the session whose conversation the cache holds (the last one served, or any before the first), so
it never evicts another session's cached turns and a generation that starts meanwhile waits at most one prefill
step (the backend's own lock keeps the two apart).

Admission: at most ``capacity`` requests hold or wait for a slot; one more is refused at once with
``ServerBusy`` (and ``retry_after_s``) rather than left waiting longer than anyone would. The capacity is
``max_requests`` when given, else derived: as many as are served within ``max_wait_s``, or where that is 0
within a lone session's voice-to-voice (``lone_voice_s``: estimated at start-up by ``calibrate_voice``, then
measured on the replies served alone, ``observe_voice``; on a ledger, the host's), so
that the last one admitted, which waits for the holds of those ahead of it on top of its own voice-to-voice,
hears its reply within twice a lone session's: k are admitted while (k - 1) holds <= that voice-to-voice (at
least 1), reckoned from the mean time a generation holds its slot (``hold_s``: measured at start-up by
``calibrate``, then a moving average of the generations served). What the admitted replies then measure checks
that formula (``observe_reply``, ``pipeline.governor``): a reply heard later than twice a lone session's takes
a place off (never below 1), replies with room to spare give it back one at a time.

The crowd's listening is counted before the fact: every other open session (``session_opened``, the host's on a
ledger; at least the users mid-turn, ``turn_began``) runs its VAD, emotion windows and end-of-turn passes on the
cores the admitted replies' commits, ASR passes, syntheses and generations need, so each costs them
``listen_cost_s()`` of the budget: k are admitted while (k - 1) holds + ``listening()`` x that cost <= the lone
voice-to-voice. The cost is measured at run time: at start-up, one end-of-turn pass's CPU over the cores
(``calibrate_listening``: a lower bound, the work every listener does at the end of its turn), then on every reply
admitted while others listened (``observe_reply``: what its voice-to-voice took beyond the lone one and the holds
ahead of it, shared over the sessions listening; a moving average, the host's on a ledger), never below the start-up
figure. A waiting request is told its place and an estimate of its wait when it joins the queue and again every
``notice_s`` while it waits, so a slow LLM never leaves a client in silence.

A reply may take its place before its request, at the end of the speech (``SessionLLM.admit``, the session's
``pipeline.shedding.Admission``): the place is counted from then (``reserved``), so a turn beyond the capacity is
refused before its ASR pass, and an admitted one keeps its place through its ASR and understanding; its request
then takes the place over. ``SessionLLM.would_admit`` asks without taking one (the session sheds its work ahead
of a reply while it is False): it is True only while a place is free for this session's turn *and* for every turn
on the host that began before it (``turn_began``: the sessions whose users are mid-turn, counted across workers
on a ledger), so a crowd speaking at once runs the partial passes of as many turns as will be answered, not of
all of them.

Workers sharing one LLM server share their admission through an ``AdmissionLedger`` (``server.admission_ledger``):
the capacity then counts every worker's replies, and a reply's hold is the time the server spent on it.

A generation that stalls gives its slot up: its first piece must come within ``stall_s`` (derived from the mean
hold, times the replies ahead of it at a shared server) and each next piece within the same bound, else it fails
as ``LLMStalled`` (``llm_failed``, a spoken apology) and the next request is served, where the network client's
own timeout (``llm.timeout_s``, 30 s) would keep everyone waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from typing import Any

from attune.backends.base import ChatMessage, Completion, Gate, LLMBackend, TokenStream
from attune.core.errors import LLMStalled, ServerBusy
from attune.pipeline import governor
from attune.pipeline.admission_ledger import AdmissionLedger
from attune.pipeline.governor import GovernorState

log = logging.getLogger(__name__)

# Called with the 1-based place in the queue when a request must wait, and again every ``notice_s`` while it does
# (``SharedLLM.estimated_wait_s(place)`` says how long it may still be).
QueuedCallback = Callable[[int], None]
WaitObserver = Callable[[float], None]  # called with the seconds every request waited (0 when served at once)
DEFAULT_HOLD_S = 2.0  # s a generation is assumed to hold its slot until measured
TYPICAL_REPLY_TOKENS = 40  # a spoken reply of one or two sentences
TAIL_TOKENS = 16  # the turn's own prompt tokens left to evaluate (prefill and the prefix cache did the rest)
HOLD_SMOOTHING = 0.2  # weight of the newest generation in the moving average of hold times
NOTICE_S = 2.0  # s between the notices a waiting request gets
STALL_HOLDS = 3.0  # a derived stall bound: this many mean holds for each generation ahead at the server, and ours
MIN_STALL_S = 2.0  # the derived stall bound is never shorter
GOVERNOR_FIGURES = ("capacity_cut", "capacity_fits", "capacity_cuts")  # the governor's state in the ledger
LISTEN_SMOOTHING = 0.3  # weight of the newest reply in the moving average of the cost of a listening session


def _ledger_state(found: dict[str, float], reason: str) -> GovernorState:
    """The governor's state as the ledger keeps it (``GOVERNOR_FIGURES``; absent: none cut), with ``reason``."""
    return GovernorState(int(found.get("capacity_cut", 0)), int(found.get("capacity_fits", 0)), reason,
                         int(found.get("capacity_cuts", 0)))


class SharedLLM:
    """``slots`` concurrent generations of ``llm`` (1 for llama-cpp in process: it has one KV cache).
    ``max_requests``: the most requests holding or waiting for a slot (0 = derived, see the module docstring)."""

    def __init__(self, llm: LLMBackend, *, slots: int = 1, on_wait: WaitObserver | None = None,
                 max_requests: int = 0, max_wait_s: float = 0.0, notice_s: float = NOTICE_S,
                 ledger: AdmissionLedger | None = None, stall_s: float = 0.0) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.llm = llm
        self.name = llm.name
        self.slots = slots
        self.on_wait = on_wait
        self.max_requests = max_requests
        self.max_wait_s = max_wait_s
        self.notice_s = notice_s
        self.ledger = ledger
        self.stall_s = stall_s  # 0 = derived (stall_bound_s)
        self.stalled_total = 0  # generations that gave their slot up for want of a piece
        self.hold_s = DEFAULT_HOLD_S
        self.busy = 0
        self.served = 0
        self.queued_total = 0  # requests that had to wait
        self.refused_total = 0  # requests refused with ServerBusy
        self.reserved = 0  # places taken by replies not yet at the LLM (their ASR and understanding)
        self.cache_owner: SessionLLM | None = None  # whose conversation the KV cache holds (the last served)
        self.voice_to_voice_s = 0.0  # a lone session's voice-to-voice (``calibrate_voice``); 0 = not known
        self._voice_measured = False  # voice_to_voice_s is measured (``observe_voice``), not estimated
        self.listen_floor_s = 0.0  # s a listening session costs an admitted reply at least (``calibrate_listening``)
        self._listen_learned: float | None = None  # this worker's measured cost (without a ledger)
        self._governor = GovernorState()  # places taken off the derived capacity (on a ledger: the host's cut)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._turns: dict[int, int | None] = {}  # this worker's turns in progress: id -> ledger ticket
        self._sessions: dict[int, int | None] = {}  # this worker's open sessions: id -> ledger ticket
        self._turn_ids = itertools.count(1)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def capacity(self) -> int:
        """The most requests that may hold or wait for a slot at once."""
        if self.max_requests > 0:
            return self.max_requests
        derived = self.derived_capacity
        return governor.capacity(derived, self.governor_state()) if self._governed else derived

    @property
    def _governed(self) -> bool:
        """The capacity is derived from a lone voice-to-voice, so the replies' own figures check it."""
        return self.max_requests <= 0 and self.max_wait_s <= 0

    @property
    def derived_capacity(self) -> int:
        """The formula's capacity now, before the governor's cut (``max_requests`` when given): with the sessions
        listening on the host counted against the lone voice-to-voice (``derived_for``)."""
        if self.max_requests > 0:
            return self.max_requests
        return self.derived_for(self.listening() if self._governed else 0)

    def derived_for(self, listening: int) -> int:
        """The formula's capacity while ``listening`` other sessions listen: k while the k - 1 holds ahead
        of the last and the listening's cost (``listen_cost_s`` each) fit in one lone voice-to-voice, at least 1 a
        slot (``max_wait_s`` given: as many as are served within it)."""
        hold = max(self.host_hold_s(), 1e-3)
        lone = self.lone_voice_s()
        if self.max_wait_s > 0 or lone <= 0:
            budget = self.max_wait_s or hold
        else:
            budget = max(0.0, lone - listening * self.listen_cost_s()) if listening > 0 else lone
        return self.slots * (1 + math.floor(budget / hold + 1e-9))

    @property
    def full(self) -> bool:
        """The next request would be refused (on a ledger: every worker's requests counted)."""
        return self.in_flight() >= self.capacity

    def in_flight(self) -> int:
        """Requests holding or waiting for a slot, and places taken before a request: this process's, or the
        host's on a ledger."""
        if self.ledger is not None:
            try:
                return self.ledger.in_flight()
            except sqlite3.Error as exc:
                log.warning("admission ledger unreadable (%s): counting this worker's replies only", exc)
        return self._mine()

    def _mine(self) -> int:
        return self.busy + self.waiting + self.reserved

    def stall_bound_s(self, ahead: int = 0) -> float:
        """The longest wait for a generation's next piece: ``stall_s``, or derived from the mean hold and the
        ``ahead`` generations a shared server serves first."""
        if self.stall_s > 0:
            return self.stall_s * (1 + ahead)
        return max(MIN_STALL_S, STALL_HOLDS * self.hold_s * (1 + ahead))

    def estimated_wait_s(self, place: int) -> float:
        """Seconds until the request at 1-based ``place`` in the queue gets a slot, by the mean hold time."""
        return round(math.ceil(place / self.slots) * self.hold_s, 1)

    def calibrate_from_speed(self, s_per_token: float, max_tokens: int) -> float:
        """The start-up estimate of a reply's hold from the LLM's measured speed (``stack.warm_up``): a typical
        reply (at most ``max_tokens``) and the turn's prompt tail, both at the generation speed (a prompt is
        evaluated faster, so this errs long). Returns it; the moving average takes over as replies are served."""
        hold = (min(TYPICAL_REPLY_TOKENS, max_tokens) + TAIL_TOKENS) * s_per_token
        self.calibrate(hold)
        return hold

    def calibrate_voice(self, voice_to_voice_s: float) -> None:
        """A lone session's voice-to-voice here (``stack.single_voice_to_voice_s``, from the engines' speeds measured
        at start-up): the derived capacity admits as many replies as wait within it for those ahead."""
        if voice_to_voice_s > 0:
            self.voice_to_voice_s = voice_to_voice_s

    def observe_voice(self, voice_to_voice_s: float) -> None:
        """A reply admitted alone (no other reply in flight, no other turn in progress) and served without
        waiting was heard ``voice_to_voice_s`` after its speech: the lone voice-to-voice moves towards it (the
        first one measured replaces the start-up estimate; on a ledger, the host's figure)."""
        if voice_to_voice_s <= 0:
            return
        if self.ledger is not None:
            try:
                self.voice_to_voice_s = self.ledger.note("lone_voice_s", voice_to_voice_s, HOLD_SMOOTHING)
                self._voice_measured = True
                return
            except sqlite3.Error as exc:
                log.warning("admission ledger: a voice-to-voice not noted (%s)", exc)
        if not self._voice_measured:
            self.voice_to_voice_s, self._voice_measured = voice_to_voice_s, True
        else:
            self.voice_to_voice_s += HOLD_SMOOTHING * (voice_to_voice_s - self.voice_to_voice_s)

    def calibrate_listening(self, pass_cpu_s: float, cores: int | None = None) -> float:
        """The start-up floor of a listening session's cost: the CPU one end-of-turn pass took (``stack.warm_up``'s
        ``end_of_turn_cpu_s``, every thread's) over the cores this process may use, the time it takes from the
        admitted replies when every listener runs one at the end of its turn. Returns it."""
        if cores is None:
            try:
                cores = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cores = os.cpu_count() or 1
        if pass_cpu_s > 0:
            self.listen_floor_s = pass_cpu_s / max(1, cores)
        return self.listen_floor_s

    def listen_cost_s(self) -> float:
        """Seconds one other session listening adds to an admitted reply's voice-to-voice: the host's measured
        figure (on a ledger, by any worker; else this worker's), never below the start-up floor."""
        return max(self.listen_floor_s, self._host_figure("listen_cost_s", self._listen_learned or 0.0))

    def observe_listening(self, voice_to_voice_s: float, *, lone_s: float, listening: int, ahead: int) -> None:
        """A reply admitted while ``listening`` other sessions listened and ``ahead`` replies held or waited for
        the LLM was heard ``voice_to_voice_s`` after its speech: what the lone voice-to-voice and the
        holds ahead do not account for, shared over the sessions listening, is a sample of a listening session's
        cost (none below 0: a reply faster than the formula says spoke a short first clause)."""
        if listening <= 0 or lone_s <= 0:
            return
        beyond = voice_to_voice_s - lone_s - ahead * self.host_hold_s() / self.slots
        sample = max(0.0, beyond) / listening
        if self.ledger is not None:
            try:
                self.ledger.note("listen_cost_s", sample, LISTEN_SMOOTHING)
                return
            except sqlite3.Error as exc:
                log.warning("admission ledger: a listening cost not noted (%s)", exc)
        old = self._listen_learned
        self._listen_learned = sample if old is None else old + LISTEN_SMOOTHING * (sample - old)

    def governor_state(self) -> GovernorState:
        """The governor's state: on a ledger the host's cut and streak (lapsed after an hour unused: all places
        back) with this worker's last reason, else this worker's."""
        if self.ledger is not None:
            try:
                found = self.ledger.figures(GOVERNOR_FIGURES)
            except sqlite3.Error:
                return self._governor
            cut = int(found.get("capacity_cut", 0))
            reason = self._governor.reason if cut == self._governor.cut else (
                "derived" if cut == 0 else f"{cut} place(s) taken off by another worker's replies")
            return _ledger_state(found, reason)
        return self._governor

    def observe_reply(self, voice_to_voice_s: float, *, alone: bool = False, queued: bool = False,
                      admitted_at: int | None = None, listening: int = 0, ahead: int | None = None) -> None:
        """A reply was completed and heard ``voice_to_voice_s`` after its speech. One admitted ``alone`` and not
        ``queued`` is a lone session's (``observe_voice``); one admitted while ``listening`` other sessions
        listened, with ``ahead`` replies in flight before it, is a sample of a listening session's cost
        (``observe_listening``); every one is a sample for the governor, as a ratio to the lone voice-to-voice
        (``admitted_at``: the capacity when it took its place)."""
        if voice_to_voice_s <= 0:
            return
        if alone and not queued:
            self.observe_voice(voice_to_voice_s)
        lone = self.lone_voice_s()
        if not self._governed or lone <= 0:
            return
        if ahead is not None:
            self.observe_listening(voice_to_voice_s, lone_s=lone, listening=listening, ahead=ahead)
        ratio = voice_to_voice_s / lone
        headroom = self.host_hold_s() / self.slots / lone
        derived = self.derived_capacity

        def change(state: GovernorState) -> GovernorState:
            return governor.step(state, ratio=ratio, headroom=headroom, derived=derived, admitted_at=admitted_at,
                                 alone=alone and not queued)

        before = self.governor_state()
        if self.ledger is not None:
            try:
                new = GovernorState()

                def on_ledger(found: dict[str, float]) -> dict[str, float]:
                    nonlocal new
                    new = change(_ledger_state(found, before.reason))
                    return {"capacity_cut": float(new.cut), "capacity_fits": float(new.fits),
                            "capacity_cuts": float(new.cuts)}

                self.ledger.update(GOVERNOR_FIGURES, on_ledger)
                self._governor = new
                self._log_change(before, new, derived)
                return
            except sqlite3.Error as exc:
                log.warning("admission ledger: a reply's figure not noted (%s); governed by this worker", exc)
        self._governor = change(self._governor)
        self._log_change(before, self._governor, derived)

    def _log_change(self, before: GovernorState, after: GovernorState, derived: int) -> None:
        if after.cut != before.cut:
            log.info("admission: capacity %d (derived %d): %s", governor.capacity(derived, after), derived,
                     after.reason)

    def host_hold_s(self) -> float:
        """The mean hold of a reply: the host's on a ledger (every worker's replies), else this worker's."""
        return self._host_figure("hold_s", self.hold_s)

    def lone_voice_s(self) -> float:
        """A lone session's voice-to-voice: the host's as measured (on a ledger, by any worker), else this
        worker's (measured, or the start-up estimate); 0 = not known."""
        return self._host_figure("lone_voice_s", self.voice_to_voice_s)

    def _host_figure(self, name: str, own: float) -> float:
        """The ledger's figure ``name`` (the host's), else ``own`` (no ledger, none measured, or unreadable)."""
        if self.ledger is not None:
            try:
                measured = self.ledger.figure(name)
                if measured is not None:
                    return measured
            except sqlite3.Error:
                pass
        return own

    def calibrate(self, hold_s: float) -> None:
        """The time a typical reply's generation holds a slot, measured at start-up (``measure_hold_s``)."""
        if hold_s > 0:
            self.hold_s = hold_s

    def observe_hold(self, held_s: float) -> None:
        """A whole generation held its slot ``held_s``: the moving average moves towards it."""
        self.hold_s += HOLD_SMOOTHING * (held_s - self.hold_s)

    # ---- sessions listening, turns in progress: what the cores do besides the replies, who works ahead of one ----
    def session_opened(self) -> int:
        """A session opened (it listens until it closes): its id (on a ledger, counted with the host's)."""
        return self._add(self._sessions, AdmissionLedger.session_opened, "a session")

    def session_closed(self, sid: int) -> None:
        self._remove(self._sessions, sid, AdmissionLedger.session_closed, "dropped with its worker")

    def sessions_open(self) -> int:
        """Open sessions (the host's, on a ledger)."""
        if self.ledger is not None:
            try:
                return self.ledger.sessions()
            except sqlite3.Error:
                pass
        return len(self._sessions)

    def listening(self) -> int:
        """Sessions listening beside the one a reply is for: the other open sessions, and at least the users
        mid-turn (sessions not entered with ``session_opened``, as in a library's own use)."""
        return max(self.sessions_open() - 1, self.turns_in_progress())

    # ---- turns in progress: who works ahead of a reply ----
    def turn_began(self) -> int:
        """A session's user began a turn: its id, in the order turns began (on a ledger: the host's order)."""
        return self._add(self._turns, AdmissionLedger.turn_began, "a turn")

    def turn_ended(self, turn: int) -> None:
        self._remove(self._turns, turn, AdmissionLedger.turn_ended, "it goes stale")

    def _add(self, rows: dict[int, int | None], enter: Callable[[AdmissionLedger], int], what: str) -> int:
        """A row of this worker's (an id in the order they came) and, on a ledger, the host's (its ticket)."""
        ticket = None
        if self.ledger is not None:
            try:
                ticket = enter(self.ledger)
            except sqlite3.Error as exc:
                log.warning("admission ledger: %s not entered (%s); counted in this worker only", what, exc)
        key = next(self._turn_ids)
        rows[key] = ticket
        return key

    def _remove(self, rows: dict[int, int | None], key: int, leave: Callable[[AdmissionLedger, int], None],
               otherwise: str) -> None:
        ticket = rows.pop(key, None)
        if ticket is not None and self.ledger is not None:
            try:
                leave(self.ledger, ticket)
            except sqlite3.Error as exc:
                log.warning("admission ledger: a row not removed (%s); %s", exc, otherwise)

    def turns_ahead(self, turn: int) -> int:
        """Turns in progress that began before ``turn`` (the host's, on a ledger)."""
        ticket = self._turns.get(turn)
        if ticket is not None and self.ledger is not None:
            try:
                return self.ledger.turns_ahead(ticket)
            except sqlite3.Error:
                pass
        return sum(1 for t in self._turns if t < turn)

    def turns_in_progress(self) -> int:
        """Users speaking now (the host's, on a ledger)."""
        if self.ledger is not None:
            try:
                return self.ledger.turns()
            except sqlite3.Error:
                pass
        return len(self._turns)

    def may_work_ahead(self, turn: int | None) -> bool:
        """A reply asked for now would get a place, and so would the replies of every turn that began before
        ``turn`` (None: no turn in progress, only the place is asked about)."""
        free = self.capacity - self.in_flight()
        return free > 0 and (turn is None or self.turns_ahead(turn) < free)

    def for_session(self, on_queued: QueuedCallback | None = None) -> SessionLLM:
        return SessionLLM(self, on_queued)

    def reserve(self) -> int | None:
        """Take a place before the request (``SessionLLM.admit``): the ledger's ticket (None without one), or
        ``ServerBusy`` at once. The request passes it to ``acquire``; ``unreserve`` gives it up."""
        ticket, _ = self._admit()
        self.reserved += 1
        return ticket

    def unreserve(self, ticket: int | None) -> None:
        self.reserved -= 1
        self._leave(ticket)

    async def acquire(self, on_queued: QueuedCallback | None, reserved: tuple[int | None] | None = None
                      ) -> tuple[float, int | None, int]:
        """Wait for a slot, first come first served; returns the seconds waited, the ledger's ticket (None
        without one) and how many generations of other workers the server serves first. Raises ``ServerBusy``
        at once when ``capacity`` requests already hold or wait for one (every worker's, on a ledger), unless
        the place was ``reserved`` (its ticket: taken over here)."""
        t0 = time.perf_counter()
        if reserved is None:
            ticket, ahead = self._admit()
        else:
            (ticket,) = reserved
            self.reserved -= 1
            ahead = self._ahead(ticket)
        try:
            if self.busy >= self.slots or self._waiters:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                self.queued_total += 1
                try:
                    await self._wait_telling(fut, on_queued)  # release() hands its slot over: ``busy`` counts us
                except asyncio.CancelledError:
                    if fut.done() and not fut.cancelled():
                        self.release(None)  # the slot was handed to us as we were cancelled: pass it on
                    else:
                        self._waiters.remove(fut)
                    raise
            else:
                self.busy += 1
                if ahead and on_queued is not None:  # free here, but the shared server serves others first
                    self.queued_total += 1
                    on_queued(ahead)
        except BaseException:
            self._leave(ticket)
            raise
        waited = time.perf_counter() - t0
        self.served += 1
        if self.on_wait is not None:
            self.on_wait(waited)
        return waited, ticket, ahead

    def _admit(self) -> tuple[int | None, int]:
        """A place among the requests in flight, or ``ServerBusy``: (ledger ticket, requests of other workers that
        entered before this one: the shared server serves them first, at most)."""
        if self.ledger is not None:
            try:
                ticket = self.ledger.enter(self.capacity)
                if ticket is not None:
                    return ticket, self._ahead(ticket)
                self._refuse(self.ledger.in_flight())
            except sqlite3.Error as exc:
                log.warning("admission ledger unusable (%s): admitting by this worker's replies only", exc)
        if self._mine() >= self.capacity:
            self._refuse(self._mine())
        return None, 0

    def _ahead(self, ticket: int | None) -> int:
        """Requests of other workers that entered the ledger before ``ticket`` (at most: this worker's own, which
        its queue serves first, are taken off)."""
        if ticket is None or self.ledger is None:
            return 0
        try:
            return max(0, self.ledger.ahead(ticket) - self._mine())
        except sqlite3.Error:
            return 0

    def _refuse(self, in_flight: int) -> None:
        self.refused_total += 1
        retry = self.estimated_wait_s(max(1, in_flight - self.slots + 1))
        raise ServerBusy(f"{in_flight} replies are being prepared or wait for the language model; try again in "
                         f"about {retry:.0f} s", retry_after_s=retry)

    def _leave(self, ticket: int | None) -> None:
        if ticket is not None and self.ledger is not None:
            try:
                self.ledger.leave(ticket)
            except sqlite3.Error as exc:
                log.warning("admission ledger: a reply's row not removed (%s); it goes stale", exc)

    async def _wait_telling(self, fut: asyncio.Future[None], on_queued: QueuedCallback | None) -> None:
        """Wait for ``fut``, telling ``on_queued`` the place and the estimated wait now and every ``notice_s``."""
        while not fut.done():
            if on_queued is not None and fut in self._waiters:
                place = self._waiters.index(fut) + 1
                on_queued(place)
            await asyncio.wait([fut], timeout=self.notice_s)
        fut.result()

    def release(self, ticket: int | None) -> None:
        self._leave(ticket)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the next waiter directly
                return
        self.busy -= 1

    def generation_ended(self, sent_at: float, ended_at: float) -> None:
        """A whole generation sent at ``sent_at`` ended at ``ended_at`` (wall clock): the moving average of holds
        moves towards the time the LLM spent on it. On a ledger that is from when it was sent or when the
        server's previous generation ended, whichever is later (the server serves its slots in turn)."""
        start = sent_at
        if self.ledger is not None:
            try:
                previous = self.ledger.generation_ended(ended_at)
            except sqlite3.Error:
                previous = None
            if previous is not None and previous < ended_at:
                start = max(sent_at, previous)
            held = self.slots * (ended_at - start)
            try:  # the host's mean, from this worker's estimate when it is the first measured
                self.ledger.note("hold_s", held, HOLD_SMOOTHING, start=self.hold_s)
            except sqlite3.Error as exc:
                log.warning("admission ledger: a hold not noted (%s)", exc)
            self.observe_hold(held)
            return
        self.observe_hold(ended_at - start)


class SessionLLM:
    """One session's view of a ``SharedLLM``: an ``LLMBackend`` whose calls' figures are that call's own
    (``TokenStream.completion``, with the time it waited for the slot), never read from the shared backend.

    The whole generation runs while the slot is held and is buffered here (at most ``max_tokens`` pieces), so a
    session whose reply plays slowly, or a client that reads slowly, never keeps the LLM from the next session.
    """

    def __init__(self, shared: SharedLLM, on_queued: QueuedCallback | None) -> None:
        self.shared = shared
        self.name = shared.name
        self.capabilities = shared.llm.capabilities
        self.on_queued = on_queued
        self.prefill_skipped = 0  # prefill calls refused because the LLM was busy or held another's turns
        self._place: HeldPlace | None = None  # taken by ``admit`` for the next request
        self._turn: int | None = None  # this session's turn in progress (``SharedLLM.turn_began``)

    def would_admit(self) -> bool:
        """A reply asked for now would get a place, and so would those of the turns in progress that began before
        this session's (``pipeline.shedding.Admission``)."""
        if self._place is not None and self._place.held:
            return True  # its place is taken already (a speculative reply in a pause)
        return self.shared.may_work_ahead(self._turn)

    def mid_turn(self, speaking: bool) -> None:
        """Whether this session's user is mid-turn now (``pipeline.shedding.Admission``; called often, it acts on
        a change). A session whose reply holds a place is counted there, not here: twice would shed the work of
        the turn behind it."""
        speaking = speaking and (self._place is None or not self._place.held)
        if speaking and self._turn is None:
            self._turn = self.shared.turn_began()
        elif not speaking and self._turn is not None:
            self.shared.turn_ended(self._turn)
            self._turn = None

    def admit(self) -> HeldPlace:
        """A place for this session's next request, taken now (``ServerBusy`` at once when there is none); the
        next ``stream`` uses it. A place still held from before is given up first."""
        if self._place is not None:
            self._place.release()
        self.mid_turn(False)  # the turn is counted by its place from now on
        shared = self.shared
        self._place = place = HeldPlace(self, shared.reserve())
        place.ahead = max(0, shared.in_flight() - 1)
        place.listening = shared.listening()
        place.alone = place.ahead == 0 and shared.turns_in_progress() == 0
        place.capacity = shared.capacity
        return place

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 0, max_new: int = 16) -> int:
        """The backend's ``prefill`` (blocking, from a worker thread), while the LLM is idle and the cache holds
        this session's conversation; else 0 at once. Returns the tokens evaluated."""
        shared = self.shared
        if (not self.capabilities.prefill or shared.busy or shared.waiting
                or (shared.cache_owner is not None and shared.cache_owner is not self)):
            self.prefill_skipped += 1
            return 0
        shared.cache_owner = self
        return int(shared.llm.prefill(messages, keep_back=keep_back, max_new=max_new))

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        """The backend's stream once this session holds a slot; its completion adds the wait for the slot. Its
        ``pause`` holds the engine's own stream (the pump takes every piece as it comes, so holding back the
        consumer alone would not hold the engine)."""
        gate = Gate()

        async def pieces(report: Callable[[Completion], None]) -> AsyncGenerator[str, None]:
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # bounded by max_tokens pieces
            task = asyncio.create_task(self._pump(messages, max_tokens, temperature, queue, report, gate),
                                       name="shared-llm-pump")
            try:
                while True:
                    kind, value = await queue.get()
                    if kind == "end":
                        return
                    if kind == "error":
                        raise value
                    yield value
            finally:
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        return TokenStream(pieces, gate)

    async def _pump(self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float,
                    queue: asyncio.Queue[tuple[str, Any]], report: Callable[[Completion], None],
                    gate: Gate) -> None:
        """The whole generation, run while the slot is held, into ``queue``; the figures reported are the
        engine's for this call, with the wait for the slot. A stalled generation gives the slot up (``_pieces``)."""
        queued: list[int] = []

        def note_queued(place: int) -> None:
            queued.append(place)
            if self.on_queued is not None:
                self.on_queued(place)

        held, self._place = self._place, None
        try:
            waited, ticket, ahead = await self.shared.acquire(note_queued, held.take() if held else None)
        except ServerBusy as exc:  # refused at once: the consumer raises it (a spoken "busy", server_busy)
            queue.put_nowait(("error", exc))
            return
        sent_at = time.time()
        wait = Completion(queue_wait_ms=round(waited * 1000.0, 1), queued=bool(queued))
        report(wait)
        self.shared.cache_owner = self
        inner: TokenStream | None = None

        def figures() -> None:
            if inner is not None and inner.completion is not None:
                report(replace(inner.completion, queue_wait_ms=wait.queue_wait_ms, queued=wait.queued))

        released = False
        try:
            inner = self.shared.llm.stream(messages, max_tokens=max_tokens, temperature=temperature)
            if inner.gate is not None:
                gate.lead(inner.gate)
            first = True
            async for piece in self._pieces(inner, ahead, gate):
                if first:  # the engine reports its prompt figures before its first piece
                    figures()
                    first = False
                queue.put_nowait(("piece", piece))
            self.shared.generation_ended(sent_at, time.time())
            queue.put_nowait(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            if isinstance(exc, LLMStalled):
                self.shared.stalled_total += 1
                self.shared.release(ticket)  # first: the next request goes on while this stream is closed
                released = True
            queue.put_nowait(("error", exc))
        finally:
            figures()
            if not released:
                self.shared.release(ticket)
            if inner is not None:
                await inner.aclose()

    async def _pieces(self, inner: TokenStream, ahead: int, gate: Gate) -> AsyncGenerator[str, None]:
        """``inner``'s pieces, each within the shared LLM's stall bound (the first also after the ``ahead``
        generations a shared server serves first), else ``LLMStalled``; never while the consumer holds the
        engine (``gate`` closed): that wait is the consumer's, not a stall."""
        limit = self.shared.stall_bound_s(ahead)
        while True:
            nxt = asyncio.ensure_future(anext(inner))
            try:
                while True:
                    was_open = gate.is_open
                    if (await asyncio.wait({nxt}, timeout=limit))[0]:
                        break
                    if was_open and gate.is_open:  # open the whole bound: the engine's silence, not the hold
                        raise LLMStalled(f"no word from the language model for {limit:.1f} s: its slot is given up",
                                         backend=self.name)
                piece = nxt.result()
            except StopAsyncIteration:
                return
            finally:
                if not nxt.done():
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)
            yield piece
            limit = self.shared.stall_bound_s()


class HeldPlace:
    """A place taken before its request (``SessionLLM.admit``; ``pipeline.shedding.Place``): counted in the
    capacity from the end of the speech until the request takes it over (``take``) or it is released."""

    def __init__(self, view: SessionLLM, ticket: int | None) -> None:
        self.view = view
        self.ticket = ticket
        self.held = True
        self.alone = False  # no other reply in flight and no other turn in progress when it was taken
        self.capacity = 0  # the shared LLM's capacity when it was taken (0: not known)
        self.ahead = 0  # replies in flight (the host's) when it was taken
        self.listening = 0  # other sessions listening (the host's, ``SharedLLM.listening``) when it was taken

    def take(self) -> tuple[int | None] | None:
        """The request takes the place over: its ticket (None: released already, so the request asks anew)."""
        if not self.held:
            return None
        self.held = False
        return (self.ticket,)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self.view.shared.unreserve(self.ticket)
        if self.view._place is self:
            self.view._place = None
