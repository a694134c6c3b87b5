"""Ollama and OpenAI-compatible backends against real local HTTP servers speaking each wire format.

Ollama streams newline-delimited JSON from ``POST /api/chat``; OpenAI-compatible servers stream server-sent
events from ``POST /v1/chat/completions`` ending in ``data: [DONE]``. Each server here can also drop the
connection mid-stream or stall past the client's timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from attune.backends.base import ChatMessage
from attune.backends.llm.ollama_backend import OllamaLLM
from attune.backends.llm.openai_backend import OpenAICompatLLM
from attune.core.errors import LLMError
from tests.engines_util import free_port, serve

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

PIECES = ["I'm ", "sorry ", "to hear ", "that."]
MESSAGES = [ChatMessage("system", "Be kind."), ChatMessage("user", "[sad] My dog died.")]


async def _fault(request: web.Request, mode: str) -> bool:
    """Mid-stream faults both servers share: True when the connection was dropped ("disconnect"); "stall"
    waits past the client's timeout and carries on."""
    if mode == "disconnect":
        assert request.transport is not None
        request.transport.close()
        return True
    if mode == "stall":
        await asyncio.sleep(1.5)
    return False


def ollama_app(mode: str, seen: list[dict[str, Any]]) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if body["model"] != "qwen2.5:1.5b-instruct":
            return web.json_response({"error": f"model \"{body['model']}\" not found, try pulling it first"},
                                     status=404)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for i, piece in enumerate(PIECES):
            line = {"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": piece}, "done": False}
            await resp.write((json.dumps(line) + "\n").encode())
            if i == 1 and await _fault(request, mode):
                return resp
        final = {"model": body["model"], "created_at": "2026-01-01T00:00:01Z",
                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                 "eval_count": len(PIECES)}
        await resp.write((json.dumps(final) + "\n").encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    return app


# Events that are JSON but not a chunk: each must fail the stream as an LLMError (an engine failure the session
# answers with llm_failed and a spoken apology), never a TypeError or AttributeError.
MALFORMED = {"list": "[1, 2]", "choices_number": '{"choices": 5}', "choice_text": '{"choices": ["hi"]}',
             "delta_text": '{"choices": [{"delta": "hi"}]}', "huge_int": "1" + "0" * 5000}


def openai_app(mode: str, seen: list[dict[str, Any]]) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append({**body, "auth": request.headers.get("Authorization", "")})
        if mode == "http500":
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        if body["model"] != "qwen":
            return web.json_response({"error": {"message": "model not found"}}, status=404)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": keep-alive comment\n\n")
        if mode in MALFORMED:
            await resp.write(f"data: {MALFORMED[mode]}\n\n".encode())
        if mode == "interrupted":  # llama-cpp-python's server when another request arrives (interrupt_requests)
            await resp.write(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}, '
                             b'"finish_reason": null}]}\n\ndata: [DONE]\n\n')
            await resp.write_eof()
            return resp
        for i, piece in enumerate(PIECES):
            event = {"id": "c1", "object": "chat.completion.chunk", "model": "qwen",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
            if i == 1 and await _fault(request, mode):
                return resp
            if i == 1 and mode == "no_done":
                await resp.write_eof()
                return resp
        await resp.write(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


async def _collect(llm: Any) -> list[str]:
    return [p async for p in llm.stream(MESSAGES, max_tokens=20, temperature=0.2)]


async def test_ollama_streams_ndjson_chat() -> None:
    seen: list[dict[str, Any]] = []
    async with serve(ollama_app("ok", seen)) as url:
        pieces = await _collect(OllamaLLM(url, "qwen2.5:1.5b-instruct", timeout_s=2))
    assert pieces == PIECES
    assert seen[0]["stream"] is True and seen[0]["options"]["num_predict"] == 20
    assert [m["role"] for m in seen[0]["messages"]] == ["system", "user"]


async def test_ollama_model_not_pulled_is_not_retryable() -> None:
    async with serve(ollama_app("ok", [])) as url:
        with pytest.raises(LLMError, match="ollama pull qwen9") as err:
            await _collect(OllamaLLM(url, "qwen9", timeout_s=2))
    assert err.value.retryable is False


@pytest.mark.parametrize("mode", ["disconnect", "stall"])
async def test_ollama_broken_stream_is_retryable(mode: str) -> None:
    got: list[str] = []
    async with serve(ollama_app(mode, [])) as url:
        with pytest.raises(LLMError) as err:
            async for piece in OllamaLLM(url, "qwen2.5:1.5b-instruct", timeout_s=0.5).stream(MESSAGES):
                got.append(piece)
    assert err.value.retryable is True
    assert got == PIECES[:2]
    if mode == "stall":
        assert "stalled" in str(err.value)


async def test_ollama_server_down_is_retryable_and_says_so() -> None:
    with pytest.raises(LLMError, match="not reachable") as err:
        await _collect(OllamaLLM(f"http://127.0.0.1:{free_port()}", "qwen2.5:1.5b-instruct", timeout_s=1))
    assert err.value.retryable is True


async def test_openai_streams_sse_until_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sekrit")
    seen: list[dict[str, Any]] = []
    async with serve(openai_app("ok", seen)) as url:
        pieces = await _collect(OpenAICompatLLM(f"{url}/v1", "qwen", api_key_env="TEST_KEY", timeout_s=2))
    assert pieces == PIECES
    assert seen[0]["stream"] is True and seen[0]["max_tokens"] == 20 and seen[0]["auth"] == "Bearer sekrit"


@pytest.mark.parametrize(("mode", "model", "retryable", "match"), [
    ("disconnect", "qwen", True, "broke off"),
    ("stall", "qwen", True, "stalled"),
    ("no_done", "qwen", True, "without \\[DONE\\]"),
    ("interrupted", "qwen", True, "cut off by the server"),
    ("http500", "qwen", True, "HTTP 500"),
    ("ok", "nope", False, "HTTP 404"),
])
async def test_openai_failures_are_classified(mode: str, model: str, retryable: bool, match: str) -> None:
    async with serve(openai_app(mode, [])) as url:
        with pytest.raises(LLMError, match=match) as err:
            await _collect(OpenAICompatLLM(f"{url}/v1", model, timeout_s=0.5))
    assert err.value.retryable is retryable


@pytest.mark.parametrize("mode", sorted(MALFORMED))
async def test_openai_malformed_events_are_llm_errors(mode: str) -> None:
    async with serve(openai_app(mode, [])) as url:
        with pytest.raises(LLMError, match="malformed") as err:
            await _collect(OpenAICompatLLM(f"{url}/v1", "qwen", timeout_s=2))
    assert err.value.retryable is True


async def test_openai_refused_connection_is_retryable() -> None:
    with pytest.raises(LLMError, match="not reachable") as err:
        await _collect(OpenAICompatLLM(f"http://127.0.0.1:{free_port()}/v1", "qwen", timeout_s=1))
    assert err.value.retryable is True


def counting_app(fail_first: str, seen: list[int]) -> web.Application:
    """An OpenAI-compatible server that notes each request's client port; its first request fails as
    ``fail_first`` says ("http503": before any token; "midway": after two tokens; "interrupted": [DONE] before
    any word and no finish_reason; "" never). "finished_empty": every reply is no words with finish_reason "stop"."""
    async def completions(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        seen.append(request.transport.get_extra_info("peername")[1])
        first = len(seen) == 1
        if first and fail_first == "http503":
            return web.json_response({"error": {"message": "loading"}}, status=503)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        await resp.write(f"data: {json.dumps(role)}\n\n".encode())
        if (first and fail_first == "interrupted") or fail_first == "finished_empty":
            if fail_first == "finished_empty":
                await resp.write(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        for i, piece in enumerate(PIECES):
            event = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
            if first and i == 1 and fail_first == "midway":
                assert request.transport is not None
                request.transport.close()
                return resp
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


async def test_openai_keeps_one_connection_and_retries_once_before_the_first_token() -> None:
    seen: list[int] = []
    async with serve(counting_app("http503", seen)) as url:
        llm = OpenAICompatLLM(f"{url}/v1", "qwen", timeout_s=2)
        assert await _collect(llm) == PIECES  # the 503 came before any token: tried again, answered
        assert await _collect(llm) == PIECES
    assert llm.requests == 3 and len(seen) == 3
    assert len(set(seen)) == 1 and llm.pool.made == 1  # all three over one kept-alive connection


async def test_openai_a_reply_the_server_cut_off_before_its_first_word_is_tried_again() -> None:
    """llama-cpp-python's server ends the running stream with [DONE] and no finish_reason when another request
    arrives (two workers sharing it cut each other's replies to nothing): not an empty reply, a retryable failure."""
    seen: list[int] = []
    async with serve(counting_app("interrupted", seen)) as url:
        llm = OpenAICompatLLM(f"{url}/v1", "qwen", timeout_s=2)
        assert await _collect(llm) == PIECES
    assert llm.requests == 2


async def test_openai_an_empty_reply_that_says_why_is_empty() -> None:
    seen: list[int] = []
    async with serve(counting_app("finished_empty", seen)) as url:
        llm = OpenAICompatLLM(f"{url}/v1", "qwen", timeout_s=2)
        assert await _collect(llm) == []
    assert llm.requests == 1


async def test_openai_never_retries_after_a_token() -> None:
    seen: list[int] = []
    got: list[str] = []
    async with serve(counting_app("midway", seen)) as url:
        llm = OpenAICompatLLM(f"{url}/v1", "qwen", timeout_s=2)
        with pytest.raises(LLMError, match="broke off|without \\[DONE\\]"):
            async for piece in llm.stream(MESSAGES):
                got.append(piece)
    assert got == PIECES[:2] and llm.requests == 1  # the words already given cannot be taken back


async def test_openai_a_refusal_is_not_retried() -> None:
    async with serve(openai_app("ok", [])) as url:
        llm = OpenAICompatLLM(f"{url}/v1", "nope", timeout_s=2)
        with pytest.raises(LLMError, match="HTTP 404"):
            await _collect(llm)
    assert llm.requests == 1


async def test_ollama_retries_once_before_the_first_token_only() -> None:
    async with serve(ollama_app("disconnect", [])) as url:
        llm = OllamaLLM(url, "qwen2.5:1.5b-instruct", timeout_s=2)
        with pytest.raises(LLMError):
            await _collect(llm)
    assert llm.requests == 1  # two pieces had come: never tried again
    with pytest.raises(LLMError, match="not reachable"):
        down = OllamaLLM(f"http://127.0.0.1:{free_port()}", "qwen2.5:1.5b-instruct", timeout_s=1)
        await _collect(down)
    assert down.requests == 2  # nothing had come: tried once more
    async with serve(ollama_app("ok", [])) as url:
        missing = OllamaLLM(url, "qwen9", timeout_s=2)
        with pytest.raises(LLMError, match="ollama pull"):
            await _collect(missing)
    assert missing.requests == 1  # not retryable
