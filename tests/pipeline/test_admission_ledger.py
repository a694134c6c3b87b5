"""Admission shared by workers through one ledger file: together they admit no more replies than the capacity,
a dead worker's rows do not hold places, and the hold a worker measures is the server's time on its reply."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attune.backends.base import ChatMessage
from attune.core.errors import ConfigError, ServerBusy
from attune.pipeline.admission_ledger import AdmissionLedger
from attune.pipeline.shared_llm import SharedLLM
from tests.fakes import ScriptedLLM

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends


async def _reply(shared: SharedLLM) -> str:
    return "".join([p async for p in shared.for_session().stream([ChatMessage("user", "hi")])])


async def test_two_workers_on_one_ledger_admit_the_capacity_together(tmp_path: Path) -> None:
    """Each worker alone would admit 2 (4 together); on one ledger the third reply of the two is refused at once,
    and once the two are served both workers admit again."""
    llm = ScriptedLLM(tokens=["a"] * 20, delay_s=0.01)
    path = tmp_path / "admission.sqlite3"
    a, b = (SharedLLM(llm, max_requests=2, ledger=AdmissionLedger(path)) for _ in range(2))
    first = asyncio.create_task(_reply(a))
    second = asyncio.create_task(_reply(b))
    await asyncio.sleep(0.05)
    assert a.full and b.full and a.in_flight() == 2
    with pytest.raises(ServerBusy) as busy:
        await _reply(a)
    assert busy.value.retry_after_s > 0 and a.refused_total == 1 and b.refused_total == 0
    assert await asyncio.gather(first, second) == ["a" * 20] * 2
    assert not a.full and a.in_flight() == 0
    assert await asyncio.gather(_reply(a), _reply(b)) == ["a" * 20] * 2
    alone = [SharedLLM(llm, max_requests=2) for _ in range(2)]  # without the ledger: each counts its own only
    tasks = [asyncio.create_task(_reply(s)) for s in alone]
    await asyncio.sleep(0.05)
    assert not alone[0].full and not alone[1].full
    await asyncio.gather(*tasks)


def test_a_dead_workers_replies_hold_no_place(tmp_path: Path) -> None:
    path = tmp_path / "admission.sqlite3"
    code = (f"from attune.pipeline.admission_ledger import AdmissionLedger; import os\n"
            f"assert AdmissionLedger({str(path)!r}).enter(5) is not None\nos._exit(0)")  # dies holding a row
    subprocess.run([sys.executable, "-c", code], check=True)
    ledger = AdmissionLedger(path)
    assert ledger.in_flight() == 1
    ticket = ledger.enter(1)  # the dead worker's row is dropped on entering: the one place is free
    assert ticket is not None and ledger.in_flight() == 1
    assert ledger.enter(1) is None
    # A row older than stale_s is dropped too, its process alive or not (another PID namespace, a reused id).
    stale = AdmissionLedger(path, stale_s=0.05)
    assert stale.enter(1) is None
    time.sleep(0.1)
    assert stale.enter(1) is not None


def test_the_hold_is_the_servers_time_on_the_reply(tmp_path: Path) -> None:
    """A reply sent while another worker's generation ran is timed from that one's end (the server serves its
    slot in turn), not from when it was sent."""
    path = tmp_path / "admission.sqlite3"
    a, b = (SharedLLM(ScriptedLLM(), ledger=AdmissionLedger(path)) for _ in range(2))
    a.calibrate(1.0)
    now = time.time()
    b.generation_ended(now - 3.0, now - 1.0)  # b's generation ended 1 s ago
    a.hold_s = 1.0
    a.generation_ended(now - 2.5, now)  # sent 2.5 s ago, but served only after b's ended: 1 s on the server
    assert a.hold_s == pytest.approx(1.0, abs=0.05)
    private = SharedLLM(ScriptedLLM())  # no ledger: from when it was sent
    private.calibrate(1.0)
    private.generation_ended(now - 2.0, now)
    assert private.hold_s == pytest.approx(1.2, abs=0.05)


def test_an_unusable_ledger_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="admission_ledger"):
        AdmissionLedger(tmp_path / "file" / "admission.sqlite3")


def test_the_stall_bound_follows_the_measured_speed_and_the_queue_ahead() -> None:
    shared = SharedLLM(ScriptedLLM())
    shared.calibrate(2.0)
    assert shared.stall_bound_s() == pytest.approx(6.0) and shared.stall_bound_s(ahead=2) == pytest.approx(18.0)
    shared.calibrate(0.1)
    assert shared.stall_bound_s() == pytest.approx(2.0)  # never below the floor
    assert SharedLLM(ScriptedLLM(), stall_s=0.5).stall_bound_s(ahead=1) == pytest.approx(1.0)


def test_turns_in_progress_are_one_queue_across_workers(tmp_path: Path) -> None:
    """Two workers' sessions speaking at once are counted in the order their turns began; a turn that ends leaves
    the queue, and a dead worker's turns hold no place in it."""
    path = tmp_path / "admission.sqlite3"
    one, two = (SharedLLM(ScriptedLLM(), max_requests=2, ledger=AdmissionLedger(path)) for _ in range(2))
    first = one.turn_began()
    second = two.turn_began()
    third = one.turn_began()
    assert [one.turns_ahead(first), two.turns_ahead(second), one.turns_ahead(third)] == [0, 1, 2]
    assert one.may_work_ahead(first) and two.may_work_ahead(second) and not one.may_work_ahead(third)
    two.turn_ended(second)
    assert one.turns_ahead(third) == 1 and one.may_work_ahead(third)
    code = (f"from attune.pipeline.admission_ledger import AdmissionLedger; import os\n"
            f"AdmissionLedger({str(path)!r}).turn_began()\nos._exit(0)")  # dies mid-turn
    subprocess.run([sys.executable, "-c", code], check=True)
    late = two.turn_began()  # entering drops the dead worker's row
    assert two.turns_ahead(late) == 2
    assert one.ledger is not None
    one.ledger.close()  # a worker that stops takes its turns with it
    assert two.turns_ahead(late) == 0


def test_the_lone_voice_to_voice_one_worker_measures_is_the_hosts(tmp_path: Path) -> None:
    """Every worker derives its capacity from the same figure: the one measured by whichever served a reply alone
    (its start-up estimate until then)."""
    path = tmp_path / "admission.sqlite3"
    one, two = (SharedLLM(ScriptedLLM(), ledger=AdmissionLedger(path)) for _ in range(2))
    for shared in (one, two):
        shared.calibrate(1.0)
        shared.calibrate_voice(0.8 if shared is one else 1.1)
    assert (one.capacity, two.capacity) == (1, 2)  # each its own estimate
    one.observe_voice(2.2)
    assert one.lone_voice_s() == two.lone_voice_s() == 2.2 and one.capacity == two.capacity == 3
    two.observe_voice(1.2)
    assert one.lone_voice_s() == pytest.approx(2.2 + 0.2 * (1.2 - 2.2))


def test_the_hold_one_worker_measures_is_the_hosts(tmp_path: Path) -> None:
    """Workers whose start-up estimates differ derive the same capacity once one has served a reply: the host's
    mean hold, moved from that worker's estimate."""
    path = tmp_path / "admission.sqlite3"
    one, two = (SharedLLM(ScriptedLLM(), ledger=AdmissionLedger(path)) for _ in range(2))
    for shared, hold in ((one, 2.4), (two, 2.8)):
        shared.calibrate(hold)
        shared.calibrate_voice(2.5)
    assert (one.capacity, two.capacity) == (2, 1)
    now = time.time()
    one.generation_ended(now - 2.0, now)  # held 2.0 s
    assert one.host_hold_s() == two.host_hold_s() == pytest.approx(2.4 + 0.2 * (2.0 - 2.4))
    assert one.capacity == two.capacity == 2


def test_a_figure_not_measured_for_an_hour_no_longer_counts(tmp_path: Path) -> None:
    """The ledger file outlives the workers (a restart may bring another model): an old figure gives way to the
    worker's own estimate, and the next measurement starts afresh from it."""
    ledger = AdmissionLedger(tmp_path / "admission.sqlite3")
    assert ledger.note("hold_s", 2.0, 0.2) == 2.0 and ledger.figure("hold_s") == 2.0
    ledger._db.execute("UPDATE figures SET at = at - 4000")
    assert ledger.figure("hold_s") is None
    assert ledger.note("hold_s", 1.0, 0.2, start=3.0) == pytest.approx(3.0 + 0.2 * (1.0 - 3.0))


def test_the_capacity_cut_is_the_hosts(tmp_path: Path) -> None:
    """A late reply on one worker lowers both workers' capacity, and replies with room on the other give it back:
    the governor's state is the ledger's."""
    path = tmp_path / "admission.sqlite3"
    one, two = (SharedLLM(ScriptedLLM(), ledger=AdmissionLedger(path)) for _ in range(2))
    for shared in (one, two):
        shared.calibrate(1.0)
    one.observe_reply(2.2, alone=True)
    one.generation_ended(time.time() - 1.0, time.time())
    assert one.capacity == two.capacity == 3
    one.observe_reply(6.0)
    assert one.capacity == two.capacity == 2
    assert "another worker" in two.governor_state().reason
    for _ in range(4):
        two.observe_reply(2.2, alone=True)
    assert one.capacity == two.capacity == 3


def test_open_sessions_are_the_hosts_and_only_a_dead_workers_are_dropped(tmp_path: Path) -> None:
    """Every worker's open sessions listen on the host's cores: counted together; a session is never too old to
    count (it lasts as long as its user talks), a dead worker's are dropped."""
    path = tmp_path / "admission.sqlite3"
    code = (f"from attune.pipeline.admission_ledger import AdmissionLedger; import os\n"
            f"AdmissionLedger({str(path)!r}).session_opened()\nos._exit(0)")  # dies with a session open
    subprocess.run([sys.executable, "-c", code], check=True)
    one, two = AdmissionLedger(path, stale_s=0.05), AdmissionLedger(path, stale_s=0.05)
    assert one.sessions() == 1
    a = one.session_opened()  # entering drops the dead worker's
    two.session_opened()
    assert one.sessions() == two.sessions() == 2
    time.sleep(0.1)
    two.session_opened()  # past stale_s: sessions stay
    assert one.sessions() == 3
    one.session_closed(a)
    assert two.sessions() == 2
    two.close()
    assert one.sessions() == 0


def test_the_other_open_sessions_listen_against_the_capacity(tmp_path: Path) -> None:
    """A worker's admission counts every open session of the host but the reply's own (hold 1.8 s, lone 2.7 s,
    0.15 s a listener: 2 places with up to 6 others open, 1 with 7)."""
    one, two = (SharedLLM(ScriptedLLM(), ledger=AdmissionLedger(tmp_path / "ledger.sqlite3")) for _ in range(2))
    for shared in (one, two):
        shared.calibrate(1.8)
        shared.calibrate_voice(2.7)
        shared.calibrate_listening(0.3, cores=2)
    ids = [one.session_opened() for _ in range(4)] + [two.session_opened() for _ in range(3)]
    assert one.listening() == two.listening() == 6 and one.capacity == two.capacity == 2
    two.session_opened()
    assert one.listening() == 7 and one.capacity == 1
    one.session_closed(ids[0])
    assert two.listening() == 6 and two.capacity == 2
    assert two.turns_in_progress() == 0 and one.sessions_open() == 7
