"""What every LLM backend shares: message validation, the thread -> asyncio token hand-off, and a server's
stream with its time to the first piece."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence

from attune.backends.base import ChatMessage, Completion, Gate, TokenStream
from attune.backends.pooled_http import backoff, retry_allowed
from attune.core.errors import LLMError

ROLES = ("system", "user", "assistant")
TOKEN_QUEUE_SIZE = 1  # pieces buffered between the generating thread and the consumer. A consumer that only stops
# reading still lets the worker write the piece in progress and one more into the freed slot, two tokens on cores
# the first clause's synthesis needs: a reply that holds the LLM closes its stream's gate (``TokenStream.pause``)
_DONE = object()


def check_messages(messages: Sequence[ChatMessage], backend: str) -> list[dict[str, str]]:
    """The messages as plain dicts, or a non-retryable ``LLMError`` for an empty list or a bad role/content."""
    if not messages:
        raise LLMError("no messages to answer", backend=backend)
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, ChatMessage) or m.role not in ROLES or not isinstance(m.content, str):
            raise LLMError(f"message {i} is not a ChatMessage with role in {ROLES}: {m!r}", backend=backend)
        out.append({"role": m.role, "content": m.content})
    if out[-1]["role"] == "assistant":
        raise LLMError("the last message must come from the user or system, not the assistant", backend=backend)
    return out


async def stream_from_thread(produce: Callable[[threading.Event], Iterator[str]],
                             maxsize: int = TOKEN_QUEUE_SIZE, gate: Gate | None = None) -> AsyncIterator[str]:
    """Run the blocking generator ``produce(stop)`` in a worker thread and yield its pieces here.

    At most ``maxsize`` pieces wait in between (a semaphore holds the worker back). A closed ``gate``
    (``TokenStream.pause``) holds the worker before it asks ``produce`` for its next piece, so no more than the
    piece in progress is computed while it is closed. When the consumer stops early or is cancelled, ``stop`` is
    set; the worker sees it before its next piece (or while held) and ends.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    slots = threading.Semaphore(maxsize)
    stop = threading.Event()

    def worker() -> None:
        try:
            for piece in produce(stop):
                while not slots.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(queue.put_nowait, piece)
                while gate is not None and not gate.wait(0.05):
                    if stop.is_set():
                        return
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it on the event loop
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, exc)

    task = asyncio.ensure_future(asyncio.to_thread(worker))
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            slots.release()
            yield str(item)
    finally:
        stop.set()
        if not task.done():
            # Let the worker notice the flag; never leave it holding the model when the next turn starts.
            await asyncio.shield(task)


def timed_stream(pieces: Callable[[], AsyncGenerator[str, None]]) -> TokenStream:
    """A ``TokenStream`` over a server's pieces (Ollama, an OpenAI-compatible server): its ``completion`` carries
    the time to the first piece (the server tokenises and caches on its side: no prompt figures)."""

    async def run(report: Callable[[Completion], None]) -> AsyncGenerator[str, None]:
        t0 = time.perf_counter()
        first = True
        async for piece in pieces():
            if first:
                report(Completion(ttft_s=time.perf_counter() - t0))
                first = False
            yield piece

    return TokenStream(run)


def retried_stream(attempt: Callable[[], AsyncGenerator[str, None]]) -> TokenStream:
    """A server's reply (``attempt()``: one request's pieces) as a ``TokenStream``: a retryable failure before the
    first piece is tried once more after a short backoff, never after one (the words said cannot be taken back);
    the completion carries the time to the first piece."""

    async def pieces() -> AsyncGenerator[str, None]:
        for n in range(2):
            answered = False
            try:
                async with contextlib.aclosing(attempt()) as request:  # closed at once if the consumer stops early
                    async for text in request:
                        answered = True
                        yield text
                return
            except LLMError as exc:
                if not retry_allowed(exc, n, answered):
                    raise
            await backoff()

    return timed_stream(pieces)
