"""An OpenAI-compatible chat server (vLLM, llama.cpp's server, LM Studio): server-sent events from
``POST {base_url}/chat/completions`` with ``stream: true``, ending in ``data: [DONE]``.

This is how the LLM moves to a GPU fleet. A stream that ends without ``[DONE]`` counts as a dropped connection.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from attune.backends.base import ChatMessage, LLMCapabilities, TokenStream
from attune.backends.llm.llm_common import check_messages, timed_stream
from attune.config import Config
from attune.core.errors import BackendUnavailable, LLMError

INSTALL_HINT = "pip install httpx==0.28.1"


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

    @classmethod
    def from_config(cls, config: Config) -> OpenAICompatLLM:
        c = config.llm
        return cls(c.openai_base_url, c.openai_model, api_key_env=c.openai_api_key_env, timeout_s=c.timeout_s)

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7,
               continue_from: str = "") -> TokenStream:
        """The reply's pieces as the server streams them (``continue_from`` is not offered: see
        ``capabilities``)."""
        return timed_stream(lambda: self._pieces(messages, max_tokens, temperature))

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 2, max_new: int = 16) -> int:
        return 0  # the server keeps its own cache: nothing to evaluate ahead from here

    async def _pieces(self, messages: Sequence[ChatMessage], max_tokens: int,
                      temperature: float) -> AsyncGenerator[str, None]:
        httpx = self._httpx
        body = {"model": self.model, "messages": check_messages(messages, self.name), "stream": True,
                "max_tokens": max_tokens, "temperature": temperature}
        url = f"{self.base_url}/chat/completions"
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s)) as client:
                async with client.stream("POST", url, json=body, headers=self._headers) as resp:
                    if resp.status_code != 200:
                        detail = (await resp.aread()).decode("utf-8", "replace")[:300]
                        raise LLMError(f"{url} answered HTTP {resp.status_code}: {detail}",
                                       retryable=resp.status_code >= 500 or resp.status_code == 429,
                                       backend=self.name)
                    async for line in resp.aiter_lines():
                        data = parse_sse_data(line)
                        if data is None:
                            continue
                        if data == "[DONE]":
                            return
                        text = self._delta(data)
                        if text:
                            yield text
        except httpx.TimeoutException as exc:
            raise LLMError(f"{url} stalled past {self.timeout_s} s", retryable=True, backend=self.name) from exc
        except httpx.ConnectError as exc:
            raise LLMError(f"OpenAI-compatible server not reachable at {self.base_url}: {exc}", retryable=True,
                           backend=self.name) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise LLMError(f"stream from {url} broke off: {exc!r}", retryable=True, backend=self.name) from exc
        raise LLMError(f"stream from {url} ended without [DONE]", retryable=True, backend=self.name)

    def _delta(self, data: str) -> str:
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise LLMError(f"malformed SSE event from {self.base_url}: {data[:120]!r}", retryable=True,
                           backend=self.name) from exc
        if "error" in event:
            raise LLMError(f"server error in stream: {event['error']}", retryable=False, backend=self.name)
        choices = event.get("choices") or [{}]
        delta = choices[0].get("delta") or {}
        content = delta.get("content")
        return content if isinstance(content, str) else ""
