"""An OpenAI-compatible chat server (vLLM, llama.cpp's server, LM Studio): server-sent events from
``POST {base_url}/chat/completions`` with ``stream: true``, ending in ``data: [DONE]``.

This is how the LLM moves to a GPU fleet. A stream that ends without ``[DONE]`` counts as a dropped connection, and
so does one that ends in ``[DONE]`` before any word without saying why (no ``finish_reason``): that is a server
cutting a reply short, as llama-cpp-python's server does to the running request whenever another arrives
(``interrupt_requests``, on by default; scripts/llm-server.sh turns it off), and it is tried again, not heard as an
empty reply.
Requests share one pooled client (keep-alive to the server); a request that fails retryably before its first
token is tried once more after a short backoff, never after (``pooled_http``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from attune.backends.base import ChatMessage, LLMCapabilities, TokenStream
from attune.backends.llm.llm_common import check_messages, retried_stream
from attune.backends.pooled_http import PooledHTTP
from attune.config import Config
from attune.core.errors import BackendUnavailable, LLMError

INSTALL_HINT = "pip install httpx==0.28.1"
DRAIN_S = 1.0  # s to read what follows [DONE] before the connection is given up


def parse_sse_data(line: str) -> str | None:
    """The payload of one SSE ``data:`` line, or None for comments, blank lines and other fields."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


class OpenAICompatLLM:
    name = "openai"
    capabilities = LLMCapabilities()

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 30.0) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise BackendUnavailable(f"httpx is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        self._httpx: Any = httpx
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.pool = PooledHTTP(httpx, timeout_s)
        self.requests = 0  # requests sent, retries included

    @classmethod
    def from_config(cls, config: Config) -> OpenAICompatLLM:
        c = config.llm
        return cls(c.openai_base_url, c.openai_model, api_key_env=c.openai_api_key_env, timeout_s=c.timeout_s)

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        """The reply's pieces as the server streams them, one retry before the first."""
        body = {"model": self.model, "messages": check_messages(messages, self.name), "stream": True,
                "max_tokens": max_tokens, "temperature": temperature}
        return retried_stream(lambda: self._attempt(body))

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 0, max_new: int = 16) -> int:
        return 0  # the server keeps its own cache: nothing to evaluate ahead from here

    async def _attempt(self, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        """One request: its pieces of text, or ``LLMError`` (retryable where trying again may help)."""
        httpx = self._httpx
        url = f"{self.base_url}/chat/completions"
        self.requests += 1
        try:
            async with self.pool.client().stream("POST", url, json=body, headers=self._headers) as resp:
                if resp.status_code != 200:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:300]
                    raise LLMError(f"{url} answered HTTP {resp.status_code}: {detail}",
                                   retryable=resp.status_code >= 500 or resp.status_code == 429, backend=self.name)
                lines = resp.aiter_lines()
                said = finished = False
                async for line in lines:
                    data = parse_sse_data(line)
                    if data is None:
                        continue
                    if data == "[DONE]":
                        await _drain(lines)  # read to the stream's end, so the connection goes back to the pool
                        if not (said or finished):
                            raise LLMError(f"{url} ended the reply before any word without a finish_reason "
                                           "(cut off by the server)", retryable=True, backend=self.name)
                        return
                    text, reason = self._delta(data)
                    finished = finished or bool(reason)
                    if text:
                        said = True
                        yield text
        except httpx.TimeoutException as exc:
            raise LLMError(f"{url} stalled past {self.timeout_s} s", retryable=True, backend=self.name) from exc
        except httpx.ConnectError as exc:
            raise LLMError(f"OpenAI-compatible server not reachable at {self.base_url}: {exc}", retryable=True,
                           backend=self.name) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise LLMError(f"stream from {url} broke off: {exc!r}", retryable=True, backend=self.name) from exc
        raise LLMError(f"stream from {url} ended without [DONE]", retryable=True, backend=self.name)

    def _delta(self, data: str) -> tuple[str, str]:
        """The text of one streamed chunk and its ``finish_reason`` ("" while it goes on); ``LLMError`` for anything
        that is not the chunk shape (``{"choices": [{"delta": {"content": ...}}]}``), so a broken server fails like
        a dead one."""
        try:
            event = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise LLMError(f"malformed SSE event from {self.base_url}: {data[:120]!r}", retryable=True,
                           backend=self.name) from exc
        if not isinstance(event, dict):
            raise LLMError(f"malformed SSE event from {self.base_url} (not an object): {data[:120]!r}",
                           retryable=True, backend=self.name)
        if "error" in event:
            raise LLMError(f"server error in stream: {str(event['error'])[:300]}", retryable=False,
                           backend=self.name)
        choices = event.get("choices") or [{}]
        first = choices[0] if isinstance(choices, list) else None
        delta = (first.get("delta") or {}) if isinstance(first, dict) else None
        if not isinstance(delta, dict):
            raise LLMError(f"malformed SSE event from {self.base_url} (no choices[0].delta object): "
                           f"{data[:120]!r}", retryable=True, backend=self.name)
        content = delta.get("content")
        reason = first.get("finish_reason") if isinstance(first, dict) else None
        return (content if isinstance(content, str) else ""), (reason if isinstance(reason, str) else "")


async def _drain(lines: AsyncIterator[str]) -> None:
    """Whatever follows ``[DONE]`` (normally only the end of the chunked body), for at most ``DRAIN_S``; a server
    that holds the stream open longer costs its connection, never the reply."""
    async def rest() -> None:
        async for _ in lines:
            pass

    with contextlib.suppress(Exception, TimeoutError):
        await asyncio.wait_for(rest(), DRAIN_S)
