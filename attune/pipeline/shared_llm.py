"""One LLM shared fairly by many sessions: requests wait in one first-come queue for ``slots`` generation slots,
a waiting session is told its place, and every call's figures (prompt tokens, KV-cache reuse, time spent queued)
come back with that call (``TokenStream.completion``).

``SharedLLM.for_session()`` gives each session an ``LLMBackend`` of its own. A session has at most one reply, so
a first-come queue is round-robin between sessions: nobody is served twice while another waits.

Where the backend can, a session's view also prefills (evaluates the start of a turn still being spoken into the
KV cache) and continues a reply from an opening. A prefill takes no slot and never waits: it runs only while no
generation holds or waits for a slot, and only for the session whose conversation the cache holds (the last one
served, or any before the first), so it never evicts another session's cached turns and a generation that
starts meanwhile waits at most one prefill step (the backend's own lock keeps the two apart).

Admission: at most ``capacity`` requests hold or wait for a slot; one more is refused at once with
``ServerBusy`` (and ``retry_after_s``) rather than left waiting longer than anyone would. The capacity is
``max_requests`` when given, else derived from the LLM's speed: as many as are served within ``max_wait_s``,
reckoned from the mean time a generation holds its slot (``hold_s``: measured at start-up by ``calibrate``, then a
moving average of the generations served). A waiting request is told its place and an estimate of its wait
when it joins the queue and again every ``notice_s`` while it waits, so a slow LLM never leaves a client in silence.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from typing import Any

from attune.backends.base import ChatMessage, Completion, LLMBackend, TokenStream
from attune.core.errors import ServerBusy

# Called with the 1-based place in the queue when a request must wait, and again every ``notice_s`` while it does
# (``SharedLLM.estimated_wait_s(place)`` says how long it may still be).
QueuedCallback = Callable[[int], None]
WaitObserver = Callable[[float], None]  # called with the seconds every request waited (0 when served at once)
DEFAULT_HOLD_S = 2.0  # s a generation is assumed to hold its slot until measured
TYPICAL_REPLY_TOKENS = 40  # a spoken reply of one or two sentences
TAIL_TOKENS = 16  # the turn's own prompt tokens left to evaluate (prefill and the prefix cache did the rest)
HOLD_SMOOTHING = 0.2  # weight of the newest generation in the moving average of hold times
NOTICE_S = 2.0  # s between the notices a waiting request gets


class SharedLLM:
    """``slots`` concurrent generations of ``llm`` (1 for llama-cpp in process: it has one KV cache).
    ``max_requests``: the most requests holding or waiting for a slot (0 = derived, see the module docstring)."""

    def __init__(self, llm: LLMBackend, *, slots: int = 1, on_wait: WaitObserver | None = None,
                 max_requests: int = 0, max_wait_s: float = 6.0, notice_s: float = NOTICE_S) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.llm = llm
        self.name = llm.name
        self.slots = slots
        self.on_wait = on_wait
        self.max_requests = max_requests
        self.max_wait_s = max_wait_s
        self.notice_s = notice_s
        self.hold_s = DEFAULT_HOLD_S
        self.busy = 0
        self.served = 0
        self.queued_total = 0  # requests that had to wait
        self.refused_total = 0  # requests refused with ServerBusy
        self.cache_owner: SessionLLM | None = None  # whose conversation the KV cache holds (the last served)
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def capacity(self) -> int:
        """The most requests that may hold or wait for a slot at once."""
        if self.max_requests > 0:
            return self.max_requests
        return self.slots * (1 + math.floor(self.max_wait_s / max(self.hold_s, 1e-3)))

    @property
    def full(self) -> bool:
        """The next request would be refused."""
        return self.busy + self.waiting >= self.capacity

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

    def calibrate(self, hold_s: float) -> None:
        """The time a typical reply's generation holds a slot, measured at start-up (``measure_hold_s``)."""
        if hold_s > 0:
            self.hold_s = hold_s

    def observe_hold(self, held_s: float) -> None:
        """A whole generation held its slot ``held_s``: the moving average moves towards it."""
        self.hold_s += HOLD_SMOOTHING * (held_s - self.hold_s)

    def for_session(self, on_queued: QueuedCallback | None = None) -> SessionLLM:
        return SessionLLM(self, on_queued)

    async def acquire(self, on_queued: QueuedCallback | None) -> float:
        """Wait for a slot, first come first served; returns the seconds waited. Raises ``ServerBusy`` at once
        when ``capacity`` requests already hold or wait for one."""
        t0 = time.perf_counter()
        if self.busy >= self.slots or self._waiters:
            if self.full:
                self.refused_total += 1
                retry = self.estimated_wait_s(self.waiting + 1)
                raise ServerBusy(f"{self.busy + self.waiting} replies are being prepared or wait for the language "
                                 f"model; try again in about {retry:.0f} s", retry_after_s=retry)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            self.queued_total += 1
            try:
                await self._wait_telling(fut, on_queued)  # release() hands its slot over: ``busy`` counts us
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.release()  # the slot was handed to us as we were cancelled: pass it on
                else:
                    self._waiters.remove(fut)
                raise
        else:
            self.busy += 1
        waited = time.perf_counter() - t0
        self.served += 1
        if self.on_wait is not None:
            self.on_wait(waited)
        return waited

    async def _wait_telling(self, fut: asyncio.Future[None], on_queued: QueuedCallback | None) -> None:
        """Wait for ``fut``, telling ``on_queued`` the place and the estimated wait now and every ``notice_s``."""
        while not fut.done():
            if on_queued is not None and fut in self._waiters:
                place = self._waiters.index(fut) + 1
                on_queued(place)
            await asyncio.wait([fut], timeout=self.notice_s)
        fut.result()

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the next waiter directly
                return
        self.busy -= 1


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

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7,
               continue_from: str = "") -> TokenStream:
        """The backend's stream once this session holds a slot; its completion adds the wait for the slot."""

        async def pieces(report: Callable[[Completion], None]) -> AsyncGenerator[str, None]:
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # bounded by max_tokens pieces
            task = asyncio.create_task(self._pump(messages, max_tokens, temperature, continue_from, queue, report),
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

        return TokenStream(pieces)

    async def _pump(self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, continue_from: str,
                    queue: asyncio.Queue[tuple[str, Any]], report: Callable[[Completion], None]) -> None:
        """The whole generation, run while the slot is held, into ``queue``; the figures reported are the
        engine's for this call, with the wait for the slot."""
        queued: list[int] = []

        def note_queued(place: int) -> None:
            queued.append(place)
            if self.on_queued is not None:
                self.on_queued(place)

        try:
            waited = await self.shared.acquire(note_queued)
        except ServerBusy as exc:  # refused at once: the consumer raises it (a spoken "busy", server_busy)
            queue.put_nowait(("error", exc))
            return
        held_from = time.perf_counter()
        wait = Completion(queue_wait_ms=round(waited * 1000.0, 1), queued=bool(queued))
        report(wait)
        self.shared.cache_owner = self
        extra = {"continue_from": continue_from} if continue_from.strip() else {}
        inner: TokenStream | None = None

        def figures() -> None:
            if inner is not None and inner.completion is not None:
                report(replace(inner.completion, queue_wait_ms=wait.queue_wait_ms, queued=wait.queued))

        try:
            inner = self.shared.llm.stream(messages, max_tokens=max_tokens, temperature=temperature, **extra)
            first = True
            async for piece in inner:
                if first:  # the engine reports its prompt figures before its first piece
                    figures()
                    first = False
                queue.put_nowait(("piece", piece))
            self.shared.observe_hold(time.perf_counter() - held_from)
            queue.put_nowait(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait(("error", exc))
        finally:
            figures()
            self.shared.release()
