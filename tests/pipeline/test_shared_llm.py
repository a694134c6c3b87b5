"""One LLM shared by sessions: first come first served, waiting sessions told their place, figures per session,
cancellation releases the slot, errors reach the right session."""

from __future__ import annotations

import asyncio

import pytest

from attune.backends.base import ChatMessage
from attune.core.errors import LLMError
from attune.pipeline.shared_llm import SharedLLM
from tests.fakes import ScriptedLLM

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

MSG = [ChatMessage("user", "hi")]


class CountingLLM(ScriptedLLM):
    """Sets llama-cpp-style figures per request: prompt tokens = the request's number."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.active = 0
        self.most_active = 0
        self.last_prompt_tokens = 0
        self.last_reused_tokens = 0

    async def stream(self, messages, *, max_tokens=128, temperature=0.7):  # type: ignore[no-untyped-def]
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.last_prompt_tokens = int(messages[0].content)
        self.last_reused_tokens = int(messages[0].content) // 2
        try:
            async for piece in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
                yield piece
        finally:
            self.active -= 1


async def _run(view, n: int) -> str:  # type: ignore[no-untyped-def]
    return "".join([p async for p in view.stream([ChatMessage("user", str(n))])])


async def test_one_slot_serves_in_arrival_order_and_tells_the_waiting() -> None:
    llm = CountingLLM(tokens=["a", "b"], delay_s=0.01)
    waits: list[float] = []
    shared = SharedLLM(llm, on_wait=waits.append)
    places: dict[int, list[int]] = {1: [], 2: [], 3: []}
    views = {i: shared.for_session(places[i].append) for i in places}
    out = await asyncio.gather(*(_run(views[i], 10 * i) for i in places))
    assert out == ["ab", "ab", "ab"]
    assert llm.most_active == 1
    assert places == {1: [], 2: [1], 3: [2]}
    assert [views[i].last_queued for i in places] == [False, True, True]
    assert views[3].last_queue_wait_ms >= views[2].last_queue_wait_ms > 0
    assert [views[i].last_prompt_tokens for i in places] == [10, 20, 30]  # each its own, not the last request's
    assert [views[i].last_reused_tokens for i in places] == [5, 10, 15]
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
    assert a.continues_reply and a.can_prefill
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
    view = SharedLLM(CountingLLM()).for_session()
    view.shared.llm.prefill = None  # type: ignore[attr-defined]
    assert not view.can_prefill and view.prefill(MSG) == 0
