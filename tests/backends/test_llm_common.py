"""The thread -> asyncio token hand-off: bounded, stoppable, errors re-raised; and the LLM factory table."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from attune.backends.base import Gate
from attune.backends.llm.llm_common import stream_from_thread
from attune.backends.llm.llm_factory import create_llm
from attune.backends.llm.ollama_backend import OllamaLLM
from attune.backends.llm.openai_backend import OpenAICompatLLM, parse_sse_data
from attune.config import Config
from attune.core.errors import ConfigError, LLMError

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


async def test_worker_is_held_back_by_a_slow_consumer_and_stops_on_break() -> None:
    produced: list[int] = []
    stopped = threading.Event()

    def produce(stop: threading.Event) -> Iterator[str]:
        for i in range(1000):
            if stop.is_set():
                stopped.set()
                return
            produced.append(i)
            yield str(i)

    got = []
    stream = stream_from_thread(produce, maxsize=4)
    async for piece in stream:
        got.append(piece)
        await asyncio.sleep(0.05)
        if len(got) == 3:
            break
    await stream.aclose()
    assert got == ["0", "1", "2"]
    assert len(produced) <= 3 + 4 + 1  # never more than the bound ahead of the consumer
    assert stopped.is_set() or len(produced) < 1000


@pytest.mark.parametrize("gated", [True, False])
async def test_a_closed_gate_holds_the_worker_after_the_piece_in_progress(gated: bool) -> None:
    """A reply holding the LLM while its first clause is synthesised: with the gate closed the engine writes at most
    the piece it was writing; a consumer that only stops reading lets it write two more (the one in progress and
    one into the freed slot), on the cores the synthesis needs."""
    produced: list[int] = []
    stopped = threading.Event()

    def produce(stop: threading.Event) -> Iterator[str]:
        for i in range(20):
            if stop.is_set():
                stopped.set()
                return
            time.sleep(0.01)  # a token's work
            produced.append(i)
            yield str(i)

    gate = Gate()
    stream = stream_from_thread(produce, gate=gate if gated else None)
    first = await anext(stream)
    gate.close()
    await asyncio.sleep(0.2)  # twenty tokens' time
    held = len(produced)
    assert (held <= 2) if gated else (held == 3), produced
    gate.open()
    rest = [piece async for piece in stream]
    assert [first, *rest] == [str(i) for i in range(20)]  # nothing lost to the hold


async def test_a_worker_held_by_its_gate_still_stops_when_the_consumer_does() -> None:
    finished = threading.Event()

    def produce(stop: threading.Event) -> Iterator[str]:
        try:
            for i in range(20):
                yield str(i)
        finally:
            finished.set()

    gate = Gate()
    stream = stream_from_thread(produce, gate=gate)
    assert await anext(stream) == "0"
    gate.close()
    await stream.aclose()
    assert await asyncio.to_thread(finished.wait, 5)


async def test_worker_errors_reach_the_consumer() -> None:
    def produce(stop: threading.Event) -> Iterator[str]:
        yield "a"
        raise LLMError("boom", retryable=True)

    got = []
    with pytest.raises(LLMError, match="boom"):
        async for piece in stream_from_thread(produce):
            got.append(piece)
    assert got == ["a"]


async def test_cancelling_the_consumer_stops_the_worker() -> None:
    finished = threading.Event()

    def produce(stop: threading.Event) -> Iterator[str]:
        try:
            while not stop.is_set():
                time.sleep(0.01)
                yield "x"
        finally:
            finished.set()

    async def consume() -> None:
        async for _ in stream_from_thread(produce, maxsize=2):
            await asyncio.sleep(0.01)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(finished.wait, 5)


@pytest.mark.real
def test_factory_builds_network_backends_from_config() -> None:
    config = Config()
    ollama = create_llm(replace(config, llm=replace(config.llm, backend="ollama", ollama_host="http://gpu:11434")))
    assert isinstance(ollama, OllamaLLM) and ollama.host == "http://gpu:11434"
    openai = create_llm(config, backend="openai", openai_base_url="http://fleet:8000/v1/")
    assert isinstance(openai, OpenAICompatLLM) and openai.base_url == "http://fleet:8000/v1"
    with pytest.raises(ConfigError, match="'llm.backend'.*'gpt'"):
        create_llm(config, backend="gpt")


def test_sse_data_lines() -> None:
    assert parse_sse_data('data: {"a": 1}') == '{"a": 1}'
    assert parse_sse_data("data: [DONE]") == "[DONE]"
    assert parse_sse_data(": comment") is None and parse_sse_data("event: x") is None


async def test_a_dropped_token_stream_lets_go_of_its_generator_at_once() -> None:
    """A ``break`` out of a reply's stream must close the engine's generator as soon as the stream is dropped (its
    ``finally`` is what frees llama.cpp's lock), not whenever the cyclic garbage collector happens to run."""
    import gc

    from attune.backends.base import Completion, TokenStream

    closed: list[bool] = []

    async def pieces(report):  # type: ignore[no-untyped-def]
        report(Completion(prompt_tokens=3))
        try:
            for i in range(10):
                yield str(i)
        finally:
            closed.append(True)

    gc.disable()
    try:
        stream = TokenStream(pieces)
        async for _ in stream:
            break
        assert stream.completion == Completion(prompt_tokens=3)
        del stream
        for _ in range(3):
            await asyncio.sleep(0)
        assert closed == [True]
    finally:
        gc.enable()
