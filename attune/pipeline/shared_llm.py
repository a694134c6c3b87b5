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
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from typing import Any

from attune.backends.base import ChatMessage, Completion, LLMBackend, TokenStream

QueuedCallback = Callable[[int], None]  # called with the 1-based place in the queue when a request must wait
WaitObserver = Callable[[float], None]  # called with the seconds every request waited (0 when served at once)


class SharedLLM:
    """``slots`` concurrent generations of ``llm`` (1 for llama-cpp in process: it has one KV cache)."""

    def __init__(self, llm: LLMBackend, *, slots: int = 1, on_wait: WaitObserver | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.llm = llm
        self.name = llm.name
        self.slots = slots
        self.on_wait = on_wait
        self.busy = 0
        self.served = 0
        self.queued_total = 0  # requests that had to wait
        self.cache_owner: SessionLLM | None = None  # whose conversation the KV cache holds (the last served)
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def for_session(self, on_queued: QueuedCallback | None = None) -> SessionLLM:
        return SessionLLM(self, on_queued)

    async def acquire(self, on_queued: QueuedCallback | None) -> float:
        """Wait for a slot, first come first served; returns the seconds waited."""
        t0 = time.perf_counter()
        if self.busy >= self.slots or self._waiters:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            self.queued_total += 1
            if on_queued is not None:
                on_queued(len(self._waiters))
            try:
                await fut  # release() hands its slot over: ``busy`` already counts us
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

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 2, max_new: int = 16) -> int:
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

        waited = await self.shared.acquire(note_queued)
        wait = Completion(queue_wait_ms=round(waited * 1000.0, 1), queued=bool(queued))
        report(wait)
        self.shared.cache_owner = self
        extra = {"continue_from": continue_from} if continue_from.strip() else {}
        inner = self.shared.llm.stream(messages, max_tokens=max_tokens, temperature=temperature, **extra)

        def figures() -> None:
            if inner.completion is not None:
                report(replace(inner.completion, queue_wait_ms=wait.queue_wait_ms, queued=wait.queued))

        try:
            first = True
            async for piece in inner:
                if first:  # the engine reports its prompt figures before its first piece
                    figures()
                    first = False
                queue.put_nowait(("piece", piece))
            queue.put_nowait(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait(("error", exc))
        finally:
            figures()
            self.shared.release()
