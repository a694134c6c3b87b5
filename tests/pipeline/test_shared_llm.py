"""One LLM shared by sessions: first come first served, waiting sessions told their place, figures per session,
cancellation releases the slot, errors reach the right session."""

from __future__ import annotations

import asyncio

import pytest

from attune.backends.base import ChatMessage
from attune.core.errors import LLMError, ServerBusy
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


async def test_admission_refuses_past_the_capacity_at_once() -> None:
    """Two may hold or wait (one generating, one queued); the third is refused with ServerBusy at once, with an
    estimate of when to try again, and is counted; once the queue drains, requests are served again."""
    shared = SharedLLM(CountingLLM(tokens=["a"] * 20, delay_s=0.01), max_requests=2)
    shared.calibrate(0.4)
    first = asyncio.create_task(_run(shared.for_session(), 1))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(_run(shared.for_session(), 2))
    await asyncio.sleep(0.02)
    assert shared.full and (shared.busy, shared.waiting) == (1, 1)
    with pytest.raises(ServerBusy) as busy:
        await _run(shared.for_session(), 3)
    assert busy.value.retryable and busy.value.code == "server_busy"
    assert busy.value.retry_after_s == pytest.approx(0.8)  # two places ahead of it at 0.4 s each
    assert await asyncio.gather(first, second) == ["a" * 20, "a" * 20]
    assert shared.refused_total == 1 and shared.served == 2 and not shared.full
    assert await _run(shared.for_session(), 4) == "a" * 20


def test_derived_capacity_follows_the_measured_speed() -> None:
    """With max_requests 0: as many as are served within max_wait_s at the mean hold time, per slot."""
    shared = SharedLLM(ScriptedLLM(), slots=1, max_wait_s=6.0)
    shared.calibrate(2.0)
    assert shared.capacity == 4  # one generating + three waiting, the last about 6 s
    shared.calibrate(0.5)
    assert shared.capacity == 13
    for _ in range(30):  # replies that take 3 s: the moving average follows, the capacity shrinks
        shared.observe_hold(3.0)
    assert shared.hold_s == pytest.approx(3.0, abs=0.01) and shared.capacity == 3
    assert SharedLLM(ScriptedLLM(), slots=2, max_wait_s=6.0).capacity == 2 * 4
    assert shared.estimated_wait_s(2) == pytest.approx(6.0, abs=0.1)
    assert SharedLLM(ScriptedLLM(), max_requests=5).capacity == 5


async def test_a_waiting_request_is_told_its_place_again_while_it_waits() -> None:
    """A slow LLM never leaves a waiting session in silence: the place is told on joining the queue and every
    ``notice_s``, falling as the requests ahead are served."""
    shared = SharedLLM(CountingLLM(tokens=["a"] * 10, delay_s=0.03), notice_s=0.05, max_requests=10)
    places: list[int] = []
    tasks = [asyncio.create_task(_run(shared.for_session(), 1))]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(_run(shared.for_session(), 2)))
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(_run(shared.for_session(places.append), 3)))
    await asyncio.gather(*tasks)
    assert places[0] == 2 and places.count(2) >= 2 and 1 in places  # told again, then its place fell
    assert places == sorted(places, reverse=True)


async def test_the_start_up_estimate_comes_from_the_llms_measured_speed() -> None:
    """warm_up measures the LLM's time per token after the first; the shared LLM's first estimate of a reply's
    hold (and so its derived capacity) is reckoned from it, before any reply has been served."""
    from attune.config import load_config
    from attune.pipeline.session import SessionBackends
    from attune.pipeline.stack import warm_up
    from attune.pipeline.turn import EnergyVAD
    from tests.fakes import FixedASR, ToneTTS

    llm = ScriptedLLM(tokens=["a"] * 20, delay_s=0.02)
    backends = SessionBackends(asr=FixedASR(), llm=llm, tts=ToneTTS(), vad=EnergyVAD())
    out = await warm_up(backends, load_config(environ={}, overrides={"speech_cache": {"prewarm": False}}))
    assert out["llm_s_per_token"] >= 0.019  # each token slept 20 ms
    shared = SharedLLM(llm, max_wait_s=6.0)
    assert shared.calibrate_from_speed(0.02, max_tokens=96) == pytest.approx((40 + 16) * 0.02)
    assert shared.capacity == 1 + 5  # 6 s of waiting at 1.12 s a reply
    assert shared.calibrate_from_speed(0.02, max_tokens=8) == pytest.approx((8 + 16) * 0.02)
