"""Ollama through its ``ollama`` Python client: streamed chat (newline-delimited JSON on ``/api/chat``).

Errors are classified: server down, a stall past ``timeout_s`` and a dropped stream are retryable; a model that
is not pulled is not, and its message gives the ``ollama pull`` command. The client keeps its connection to the
server alive; a request that fails retryably before its first token is tried once more after a short backoff,
never after.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from attune.backends.base import ChatMessage, LLMCapabilities, TokenStream
from attune.backends.llm.llm_common import check_messages, retried_stream
from attune.config import Config
from attune.core.errors import BackendUnavailable, LLMError

INSTALL_HINT = "pip install ollama==0.6.3"


class OllamaLLM:
    name = "ollama"
    capabilities = LLMCapabilities()

    def __init__(self, host: str, model: str, *, timeout_s: float = 30.0) -> None:
        try:
            import httpx
            import ollama
        except ImportError as exc:
            raise BackendUnavailable(f"the ollama client is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        self.host = host
        self.model = model
        self._ollama: Any = ollama
        self._httpx: Any = httpx
        self._client: Any = ollama.AsyncClient(host=host, timeout=httpx.Timeout(timeout_s))  # one pooled client
        self.requests = 0  # requests sent, retries included

    @classmethod
    def from_config(cls, config: Config) -> OllamaLLM:
        c = config.llm
        return cls(c.ollama_host, c.ollama_model, timeout_s=c.timeout_s)

    def _classify(self, exc: BaseException) -> LLMError:
        httpx, ollama = self._httpx, self._ollama
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 or "not found" in str(exc.error).lower():
                return LLMError(f"Ollama at {self.host} has no model '{self.model}'; run: ollama pull {self.model}",
                                retryable=False, backend=self.name)
            return LLMError(f"Ollama error {exc.status_code}: {exc.error}",
                            retryable=exc.status_code >= 500 or exc.status_code == 429, backend=self.name)
        if isinstance(exc, httpx.TimeoutException):
            return LLMError(f"Ollama at {self.host} stalled past the timeout", retryable=True, backend=self.name)
        if isinstance(exc, (ConnectionError, httpx.ConnectError)):
            return LLMError(f"Ollama server not reachable at {self.host} (start it with: ollama serve)",
                            retryable=True, backend=self.name)
        if isinstance(exc, (httpx.TransportError, httpx.StreamError)):
            return LLMError(f"Ollama stream from {self.host} broke off: {exc!r}", retryable=True, backend=self.name)
        return LLMError(f"Ollama failed: {exc!r}", retryable=False, backend=self.name)

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        """The reply's pieces as the server streams them, one retry before the first."""
        dicts = check_messages(messages, self.name)
        options = {"num_predict": max_tokens, "temperature": temperature}
        return retried_stream(lambda: self._attempt(dicts, options))

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 0, max_new: int = 16) -> int:
        return 0  # the server keeps its own cache: nothing to evaluate ahead from here

    async def _attempt(self, dicts: list[dict[str, str]], options: dict[str, Any]) -> AsyncGenerator[str, None]:
        """One request over the client's pooled connection: its pieces of text, or a classified ``LLMError``."""
        done = False
        self.requests += 1
        try:
            response = await self._client.chat(model=self.model, messages=dicts, stream=True, options=options)
            async for part in response:
                text = part.message.content or ""
                if text:
                    yield text
                if part.done:
                    done = True
                    break
        except (self._ollama.ResponseError, self._httpx.HTTPError, self._httpx.StreamError, ConnectionError,
                ValueError) as exc:
            raise self._classify(exc) from exc
        if not done:
            raise LLMError(f"Ollama stream from {self.host} ended before done=true", retryable=True,
                           backend=self.name)
