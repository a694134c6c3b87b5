"""One LLM shared by sessions: first come first served, waiting sessions told their place, figures per session,
cancellation releases the slot, errors reach the right session."""

from __future__ import annotations

import asyncio

import pytest

from attune.backends.base import ChatMessage, Completion, LLMCapabilities, TokenStream
from attune.core.errors import LLMError
from attune.pipeline.shared_llm import SharedLLM
from tests.fakes import ScriptedLLM

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

MSG = [ChatMessage("user", "hi")]


class CountingLLM(ScriptedLLM):
    """Reports llama-cpp-style figures per request: prompt tokens = the request's number, half of them cached."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.active = 0
        self.most_active = 0

    def stream(self, messages, *, max_tokens=128, temperature=0.7, continue_from=""):  # type: ignore[no-untyped-def]
        inner = super().stream(messages, max_tokens=max_tokens, temperature=temperature)
        n = int(messages[0].content)

        async def pieces(report):  # type: ignore[no-untyped-def]
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            report(Completion(prompt_tokens=n, reused_tokens=n // 2))
            try:
                async for piece in inner:
                    yield piece
            finally:
                self.active -= 1

        return TokenStream(pieces)


async def _call(view, n: int) -> tuple[str, Completion | None]:  # type: ignore[no-untyped-def]
    stream = view.stream([ChatMessage("user", str(n))])
    return "".join([p async for p in stream]), stream.completion


async def _run(view, n: int) -> str:  # type: ignore[no-untyped-def]
    return (await _call(view, n))[0]


async def test_one_slot_serves_in_arrival_order_and_tells_the_waiting() -> None:
    llm = CountingLLM(tokens=["a", "b"], delay_s=0.01)
    waits: list[float] = []
    shared = SharedLLM(llm, on_wait=waits.append)
    places: dict[int, list[int]] = {1: [], 2: [], 3: []}
    views = {i: shared.for_session(places[i].append) for i in places}
    calls = await asyncio.gather(*(_call(views[i], 10 * i) for i in places))
    assert [text for text, _ in calls] == ["ab", "ab", "ab"]
    assert llm.most_active == 1
    assert places == {1: [], 2: [1], 3: [2]}
    done = [c for _, c in calls]
    assert all(c is not None for c in done)
    assert [c.queued for c in done] == [False, True, True]  # type: ignore[union-attr]
    assert done[2].queue_wait_ms >= done[1].queue_wait_ms > 0  # type: ignore[union-attr]
    assert [c.prompt_tokens for c in done] == [10, 20, 30]  # type: ignore[union-attr]  # each call its own
    assert [c.reused_tokens for c in done] == [5, 10, 15]  # type: ignore[union-attr]
    assert shared.served == 3 and shared.queued_total == 2 and len(waits) == 3
    assert shared.busy == 0 and shared.waiting == 0


async def test_two_slots_run_two_at_once() -> None:
    llm = CountingLLM(tokens=["a"] * 5, delay_s=0.01)
    shared = SharedLLM(llm, slots=2)
    await asyncio.gather(*(_run(shared.for_session(), i) for i in range(4)))
    assert llm.most_active == 2


async def test_cancelled_requests_free_their_place() -> None:
    llm = CountingLLM(tokens=["a"] * 50, delay_s=0.01)
    shared = SharedLLM(llm)
    first = asyncio.create_task(_run(shared.for_session(), 1))
    await asyncio.sleep(0.03)
    waiting = asyncio.create_task(_run(shared.for_session(), 2))
    await asyncio.sleep(0.01)
    assert shared.waiting == 1
    waiting.cancel()
    first.cancel()
    await asyncio.gather(first, waiting, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert shared.busy == 0 and shared.waiting == 0
    assert await _run(shared.for_session(), 3) == "a" * 50


async def test_an_error_reaches_its_session_and_frees_the_slot() -> None:
    shared = SharedLLM(ScriptedLLM(fail_after=1))
    with pytest.raises(LLMError):
        await _run(shared.for_session(), 1)
    assert shared.busy == 0
    with pytest.raises(ValueError):
        SharedLLM(ScriptedLLM(), slots=0)


async def test_a_session_prefills_only_while_the_llm_is_idle_and_holds_its_conversation() -> None:
    llm = ScriptedLLM(delay_s=0.01)
    shared = SharedLLM(llm)
    a, b = shared.for_session(), shared.for_session()
    assert a.capabilities.continue_reply and a.capabilities.prefill
    assert a.prefill([ChatMessage("user", "one two")]) == 2  # nobody served yet: any session may
    assert b.prefill([ChatMessage("user", "three")]) == 0  # the cache holds a's turn: b would evict it
    assert [p async for p in b.stream(MSG)]  # b is served: the cache holds b's conversation now
    assert a.prefill([ChatMessage("user", "four")]) == 0
    assert b.prefill([ChatMessage("user", "five six")]) == 2
    gen = b.stream(MSG)
    await gen.__anext__()  # a generation holds the slot: nobody prefills, not even its own session
    assert b.prefill([ChatMessage("user", "seven")]) == 0 and a.prefill([ChatMessage("user", "eight")]) == 0
    await gen.aclose()
    assert llm.prefills == ["one two", "five six"]
    assert (a.prefill_skipped, b.prefill_skipped) == (2, 2)
    assert [p async for p in a.stream(MSG, continue_from="Oh no,")]  # an opening goes through to the backend
    assert llm.continued_from[-1] == "Oh no,"


async def test_a_backend_without_prefill_is_not_prefilled() -> None:
    class ServerLLM(CountingLLM):
        capabilities = LLMCapabilities()  # a server keeps its own cache

        def prefill(self, messages, *, keep_back=2, max_new=16):  # type: ignore[no-untyped-def]
            raise AssertionError("a backend that declares no prefill is never asked to")

    view = SharedLLM(ServerLLM()).for_session()
    assert not view.capabilities.prefill and view.prefill(MSG) == 0
