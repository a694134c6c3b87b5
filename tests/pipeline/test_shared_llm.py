"""One LLM shared by sessions: first come first served, waiting sessions told their place, figures per session,
cancellation releases the slot, errors reach the right session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from attune.backends.base import ChatMessage, Completion, LLMCapabilities, TokenStream
from attune.core.errors import LLMError, ServerBusy
from attune.pipeline.shared_llm import SharedLLM
from tests.fakes import GatedLLM, ScriptedLLM

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

MSG = [ChatMessage("user", "hi")]


class CountingLLM(ScriptedLLM):
    """Reports llama-cpp-style figures per request: prompt tokens = the request's number, half of them cached."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.active = 0
        self.most_active = 0

    def stream(self, messages, *, max_tokens=128, temperature=0.7):  # type: ignore[no-untyped-def]
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
    shared = SharedLLM(llm, on_wait=waits.append, max_wait_s=6.0)
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
    shared = SharedLLM(llm, slots=2, max_wait_s=6.0)
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
    assert a.capabilities.prefill
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


async def test_a_backend_without_prefill_is_not_prefilled() -> None:
    class ServerLLM(CountingLLM):
        capabilities = LLMCapabilities()  # a server keeps its own cache

        def prefill(self, messages, *, keep_back=0, max_new=16):  # type: ignore[no-untyped-def]
            raise AssertionError("a backend that declares no prefill is never asked to")

    view = SharedLLM(ServerLLM()).for_session()
    assert not view.capabilities.prefill and view.prefill(MSG) == 0


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
    one = SharedLLM(ScriptedLLM(), slots=1)  # max_wait_s 0: the last admitted waits about one reply
    for hold in (0.3, 2.0, 7.0):
        one.calibrate(hold)
        assert one.capacity == 2


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
    from attune.pipeline.session_backends import SessionBackends, Voice
    from attune.pipeline.stack import warm_up
    from attune.pipeline.turn import EnergyVAD
    from tests.fakes import FixedASR, ToneTTS

    llm = ScriptedLLM(tokens=["a"] * 20, delay_s=0.02)
    backends = SessionBackends(asr=FixedASR(), llm=llm, voice=Voice(ToneTTS()), vad=EnergyVAD())
    config = load_config(environ={}, overrides={"speech_cache": {"prewarm": False}})
    out = await warm_up(backends, config)
    assert out["llm_s_per_token"] >= 0.019  # each token slept 20 ms
    assert out["asr_pass_s"] >= 0 and len(backends.asr.calls) == 2  # type: ignore[attr-defined]  # load, then a pass
    shared = SharedLLM(llm, max_wait_s=6.0)
    assert shared.calibrate_from_speed(0.02, max_tokens=96) == pytest.approx((40 + 16) * 0.02)
    assert shared.capacity == 1 + 5  # 6 s of waiting at 1.12 s a reply
    assert shared.calibrate_from_speed(0.02, max_tokens=8) == pytest.approx((8 + 16) * 0.02)


async def test_a_place_taken_before_the_request_counts_and_passes_to_it() -> None:
    """``admit`` at the end of the speech takes a place (counted while the reply's ASR runs): past the capacity
    the next is refused at once and ``would_admit`` says so; the reply's request takes its place over without
    being asked again (though the LLM is full), and a place given up frees it."""
    shared = SharedLLM(CountingLLM(tokens=["a"] * 5, delay_s=0.01), max_requests=2)
    a, b, c = (shared.for_session() for _ in range(3))
    place_a = a.admit()
    assert shared.reserved == 1 and shared.in_flight() == 1 and c.would_admit()
    place_b = b.admit()
    assert shared.full and not c.would_admit()
    with pytest.raises(ServerBusy):
        c.admit()
    assert shared.refused_total == 1 and shared.reserved == 2
    assert await _run(a, 1) == "aaaaa"  # its place, though the LLM is full
    assert shared.reserved == 1 and shared.in_flight() == 1 and shared.refused_total == 1
    place_a.release()  # the request took it: nothing more to give
    assert shared.in_flight() == 1
    place_b.release()  # b's reply ended before its request (an empty turn, a cancelled one)
    place_b.release()
    assert shared.reserved == 0 and not shared.full and c.would_admit()
    assert await _run(b, 2) == "aaaaa"  # no place held: the request is admitted on its own
    assert shared.busy == 0 and shared.reserved == 0


async def test_a_place_taken_on_one_worker_counts_on_the_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from attune.pipeline.admission_ledger import AdmissionLedger

    path = tmp_path / "admission.sqlite3"
    one, two = (SharedLLM(CountingLLM(tokens=["a"]), max_requests=1, ledger=AdmissionLedger(path)) for _ in range(2))
    view = one.for_session()
    place = view.admit()
    assert one.full and two.full and not two.for_session().would_admit()
    with pytest.raises(ServerBusy):
        two.for_session().admit()
    place.release()
    assert not two.full and two.in_flight() == 0
    view.admit()
    assert await _run(view, 3) == "a" and one.in_flight() == 0 and two.in_flight() == 0


def test_the_derived_capacity_serves_the_last_admitted_within_twice_a_lone_voice_to_voice() -> None:
    """With a lone session's voice-to-voice known (``calibrate_voice``): k replies while the k - 1 holds ahead
    of the last fit in one voice-to-voice; a slow host, whose reply holds the LLM longer than that, admits one."""
    shared = SharedLLM(ScriptedLLM())
    shared.calibrate(2.4)
    shared.calibrate_voice(2.0)
    assert shared.capacity == 1  # a second would wait 2.4 s on top of its own 2.0 s: 4.4 > 2 x 2.0
    shared.calibrate(1.0)
    assert shared.capacity == 3  # the third waits two holds (2.0 s): within one voice-to-voice
    shared.calibrate_voice(2.2)
    assert shared.capacity == 3
    shared.calibrate(0.7)
    assert shared.capacity == 4
    shared.calibrate_voice(0.0)  # unknown: ignored, the estimate stands
    assert shared.voice_to_voice_s == 2.2
    assert SharedLLM(ScriptedLLM(), max_wait_s=6.0).capacity == 1 + 3  # an explicit wait still decides
    unknown = SharedLLM(ScriptedLLM())
    unknown.calibrate(2.4)
    assert unknown.capacity == 2  # no voice-to-voice measured: one reply's hold, as before


async def test_only_the_turns_that_free_places_would_answer_work_ahead() -> None:
    """Turns in progress are counted in the order they began: with two places, the first two turns may work
    ahead of their replies and a third may not, until a place frees or a turn ahead of it ends."""
    shared = SharedLLM(CountingLLM(tokens=["a"] * 3, delay_s=0.01), max_requests=2)
    a, b, c = (shared.for_session() for _ in range(3))
    assert a.would_admit() and c.would_admit()  # no turn in progress: only the places are asked about
    for view in (a, b, c):
        view.mid_turn(True)
        view.mid_turn(True)  # every frame says so: counted once
    assert [v.would_admit() for v in (a, b, c)] == [True, True, False]
    place = a.admit()  # a's turn ended: its place is taken, its turn no longer counted
    a.mid_turn(True)  # still speaking by the frame, but counted as its place
    assert shared.turns_ahead(c._turn or 0) == 1 and shared.in_flight() == 1
    assert [v.would_admit() for v in (a, b, c)] == [True, True, False]
    b.mid_turn(False)  # b's turn was noise: it ends without a reply
    assert c.would_admit()
    c.mid_turn(False)
    place.release()
    a.mid_turn(False)
    assert shared.turns_ahead(10 ** 6) == 0 and not shared.full


async def test_a_session_that_holds_its_place_goes_on_working_ahead() -> None:
    """A speculative reply's place is its own: ``would_admit`` stays True for it though the LLM is full."""
    shared = SharedLLM(CountingLLM(tokens=["a"]), max_requests=1)
    view, other = shared.for_session(), shared.for_session()
    view.mid_turn(True)
    view.admit()
    assert shared.full and view.would_admit() and not other.would_admit()


def test_the_lone_voice_to_voice_follows_the_replies_served_alone() -> None:
    """Start-up's estimate, then the moving average of replies admitted alone: a first one sets it when none was
    estimated, and the capacity follows it."""
    shared = SharedLLM(ScriptedLLM())
    shared.calibrate(1.0)
    shared.calibrate_voice(0.8)  # start-up's estimate
    assert shared.capacity == 1
    shared.observe_voice(2.5)  # the first measured replaces it
    assert shared.voice_to_voice_s == 2.5 and shared.capacity == 3
    for _ in range(30):
        shared.observe_voice(1.2)
    assert shared.voice_to_voice_s == pytest.approx(1.2, abs=0.01) and shared.capacity == 2
    shared.observe_voice(0.0)  # no figure: ignored
    assert shared.voice_to_voice_s == pytest.approx(1.2, abs=0.01)


def test_a_place_is_alone_only_with_no_other_reply_or_turn_in_progress() -> None:
    shared = SharedLLM(CountingLLM(tokens=["a"]), max_requests=4)
    a, b, c = (shared.for_session() for _ in range(3))
    a.mid_turn(True)
    first = a.admit()  # its own turn does not count against it
    assert first.alone and shared.turns_in_progress() == 0
    second = b.admit()
    assert not second.alone  # a's reply is in flight
    first.release()
    second.release()
    c.mid_turn(True)  # someone is speaking
    assert not b.admit().alone


def test_admitted_replies_over_twice_a_lone_one_lower_the_derived_capacity() -> None:
    """The derived capacity (hold 1 s, lone voice-to-voice 2.2 s: 3) loses a place to a reply heard at 5 s, and
    gets it back after replies heard alone; an explicit ``max_requests`` is not governed."""
    shared = SharedLLM(ScriptedLLM())
    shared.calibrate(1.0)
    shared.observe_reply(2.2, alone=True)
    assert shared.capacity == shared.derived_capacity == 3
    shared.observe_reply(5.0, admitted_at=3)
    assert shared.derived_capacity == 3 and shared.capacity == 2 and shared.governor_state().cut == 1
    for _ in range(4):
        shared.observe_reply(2.2, alone=True)
    assert shared.capacity == 3
    shared.observe_reply(2.2, alone=True, queued=True)  # waited: not a lone one's figure, still a sample
    assert shared.lone_voice_s() == pytest.approx(2.2)
    fixed = SharedLLM(ScriptedLLM(), max_requests=2)
    fixed.observe_reply(2.0, alone=True)
    fixed.observe_reply(9.0)
    assert fixed.capacity == 2 and fixed.governor_state().cut == 0


async def test_a_place_records_the_capacity_it_was_taken_at() -> None:
    shared = SharedLLM(CountingLLM(tokens=["a"]), max_requests=3)
    assert shared.for_session().admit().capacity == 3


async def test_the_start_up_pass_timed_for_admission_is_the_listeners_own_warm_up() -> None:
    """With a listener's handle (partial passes on), its warm-up pass is the timed one: no third pass at start-up."""
    from attune.config import load_config
    from attune.pipeline.session_backends import SessionBackends, Voice
    from attune.pipeline.stack import warm_up
    from attune.pipeline.turn import EnergyVAD
    from tests.fakes import FixedASR, ToneTTS

    asr, listen = FixedASR(), FixedASR()
    backends = SessionBackends(asr=asr, llm=ScriptedLLM(tokens=["a"] * 20), voice=Voice(ToneTTS()), vad=EnergyVAD(),
                               listen_asr=listen)
    config = load_config(environ={}, overrides={"speech_cache": {"prewarm": False}})
    out = await warm_up(backends, config)
    assert len(asr.calls) == 1 and len(listen.calls) == 1  # type: ignore[attr-defined]
    assert out["asr_s"] >= out["asr_pass_s"] >= 0
    assert "first_clause_speech_s" not in out  # a kiosk's or a console's start-up does not time it
    served = await warm_up(backends, config, admission=True)  # the server's: its admission reckons with it
    assert served["first_clause_speech_s"] > 0


def test_the_crowds_listening_takes_places_off_the_derived_capacity() -> None:
    """Each session whose user is mid-turn costs the admitted replies ``listen_cost_s`` of the lone voice-to-voice
    (hold 1.8 s, lone 2.7 s: 2 places alone; a listener's end-of-turn pass took 0.3 s of CPU on 2 cores: 0.15 s
    each): a few listeners leave 2 places, a crowd's leave 1, and the places come back as their turns end."""
    shared = SharedLLM(ScriptedLLM())
    shared.calibrate(1.8)
    shared.calibrate_voice(2.7)
    assert shared.calibrate_listening(0.3, cores=2) == pytest.approx(0.15)
    assert shared.capacity == 2
    views = [shared.for_session() for _ in range(10)]
    for view in views[:5]:
        view.mid_turn(True)
    assert shared.turns_in_progress() == 5 and shared.capacity == 2  # 1.8 + 5 x 0.15 <= 2.7
    for view in views[5:]:
        view.mid_turn(True)
    assert shared.capacity == 1  # 1.8 + 10 x 0.15 > 2.7: a second reply would be heard past twice a lone one
    first = views[0].admit()  # its turn ends: nine listen on
    assert first.listening == 9 and first.ahead == 0 and not first.alone
    with pytest.raises(ServerBusy):
        views[1].admit()
    for view in views[2:]:
        view.mid_turn(False)
    assert shared.capacity == 2  # the crowd's turns ended (refused aloud): two places again
    second = views[1].admit()
    assert second.ahead == 1 and second.listening == 0
    assert SharedLLM(ScriptedLLM(), max_requests=2).derived_for(50) == 2  # an explicit capacity is not reckoned


def test_a_listening_sessions_cost_is_learned_from_the_replies_admitted_in_a_crowd() -> None:
    """What a reply admitted among listeners took beyond the lone voice-to-voice and the holds ahead of it, over
    the listeners, is a sample of a listening session's cost (the first sets it, a moving average after); a
    reply faster than the formula lowers it, never below the start-up floor; a reply heard alone says nothing."""
    shared = SharedLLM(ScriptedLLM())
    shared.calibrate(1.8)
    shared.calibrate_voice(2.7)
    shared.calibrate_listening(0.1, cores=2)
    assert shared.listen_cost_s() == pytest.approx(0.05)
    shared.observe_reply(2.7, alone=True)
    assert shared.listen_cost_s() == pytest.approx(0.05)  # no listeners: no sample
    shared.observe_reply(5.7, listening=8, ahead=1)  # 5.7 - 2.7 - 1.8 = 1.2 s over 8 listeners
    assert shared.listen_cost_s() == pytest.approx(0.15)
    assert shared.derived_for(4) == 2 and shared.derived_for(7) == 1  # 1.8 + 7 x 0.15 > 2.7
    for _ in range(20):
        shared.observe_reply(3.0, listening=3, ahead=1)  # faster than the lone one and a hold: no listening cost
    assert shared.listen_cost_s() == pytest.approx(0.05)  # the floor: the CPU a listener's pass takes


def test_the_listening_cost_is_the_hosts_on_a_ledger(tmp_path: Path) -> None:
    """One worker's replies teach every worker of the host the cost of a listening session."""
    from attune.pipeline.admission_ledger import AdmissionLedger

    one, two = (SharedLLM(ScriptedLLM(), ledger=AdmissionLedger(tmp_path / "ledger.sqlite3")) for _ in range(2))
    for shared in (one, two):
        shared.calibrate(1.8)
        shared.calibrate_voice(2.7)
    one.observe_reply(5.1, listening=6, ahead=1)  # (5.1 - 2.7 - 1.8) / 6
    assert two.listen_cost_s() == pytest.approx(0.1)
    for view in [two.for_session() for _ in range(10)]:
        view.mid_turn(True)  # ten users mid-turn on the other worker
    assert one.turns_in_progress() == 10 and one.capacity == 1 and two.capacity == 1


async def test_a_paused_stream_holds_the_engine_itself_and_its_wait_is_no_stall() -> None:
    """The pump takes each piece as it comes, so the consumer's pause must reach the engine's own stream; and a
    pause longer than the stall bound (the first clause synthesised on a slow voice) is the consumer's wait, not a
    stalled engine giving its slot up."""
    llm = GatedLLM(tokens=["a"] * 8, delay_s=0.02)
    shared = SharedLLM(llm, stall_s=0.05)
    stream = shared.for_session().stream(MSG)
    first = await anext(stream)
    stream.pause()
    assert llm.gate is not None and not llm.gate.is_open
    await asyncio.sleep(0.05)  # the token in progress
    held = llm.written
    await asyncio.sleep(0.3)  # six stall bounds
    assert llm.written == held < 8
    stream.resume()
    rest = [p async for p in stream]
    assert first + "".join(rest) == "a" * 8 and shared.stalled_total == 0 and shared.busy == 0
