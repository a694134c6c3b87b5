"""The network backends' HTTP client: one pooled ``httpx.AsyncClient`` per backend (keep-alive connections to the
LLM or CSM server, instead of a new TCP connection per reply or sentence), and the retry rule they share: a
request that failed before anything of its answer arrived is tried once more after a short backoff; one that
failed after is never tried again (the words already spoken cannot be taken back, livekit/agents' rule)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from attune.core.errors import BackendError

RETRY_BACKOFF_S = 0.25  # s before the one retry (plus up to 50 % jitter, so many sessions do not retry in step)
MAX_CONNECTIONS = 32  # open connections per backend (one per concurrent request; llm_slots bounds the LLM's)
KEEPALIVE_S = 30.0  # s an idle pooled connection is kept


class PooledHTTP:
    """``client()`` is this backend's ``httpx.AsyncClient`` for the running event loop, made on first use and kept
    (a process runs one loop; a new loop, as in tests, gets a client of its own). Copies of a backend share it."""

    def __init__(self, httpx: Any, timeout_s: float, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self._httpx = httpx
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.made = 0  # clients made: 1 per loop when the pool works

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            httpx = self._httpx
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=self.max_connections,
                                    max_keepalive_connections=self.max_connections, keepalive_expiry=KEEPALIVE_S))
            self._loop = loop
            self.made += 1
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


async def backoff() -> None:
    """The wait before the one retry."""
    await asyncio.sleep(RETRY_BACKOFF_S * (1.0 + 0.5 * random.random()))  # noqa: S311 - jitter, not a secret


def retry_allowed(exc: BackendError, attempt: int, answered: bool) -> bool:
    """Whether a failed request is tried again: only the first attempt, only a retryable failure, and only
    while nothing of its answer has arrived."""
    return attempt == 0 and exc.retryable and not answered
