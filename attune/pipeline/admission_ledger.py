"""Admission shared by the ``serve`` workers of one host (``server.admission_ledger``): a small SQLite file in
which every reply holding or waiting for the LLM server they share is a row, so that together the workers admit
no more replies than that server prepares in time, where each alone would admit as if it were the only one.

``SharedLLM`` enters a row before a reply may wait for the LLM (refused at once when ``capacity`` rows are there)
and leaves it when the reply's generation ends, and notes each generation's end, so a worker can tell how long
the server spent on its reply (a generation starts when it was sent or when the one before it ended, whichever
is later). Each step is one short transaction (WAL journal, no fsync: the rows matter only while the workers
run), under a millisecond, so it runs on the event loop. Rows of a worker that died are dropped: those of a
process id no longer alive, and any older than ``stale_s`` (workers in other PID namespaces, a reused id).

It keeps the host's figures too (``figures``: the mean hold of a reply at the server and a lone session's
voice-to-voice, measured by whichever worker served the reply), so that every worker derives the same capacity,
and the places the host's capacity governor took off it (``pipeline.governor``, updated in one transaction).

It counts the host's open sessions (``sessions``: each listens, on the cores the replies need, so the capacity
reckons with them) and the host's sessions whose users are mid-turn (``turns``: from the start of the speech to
the end of the turn), in the order their turns began, so that only as many of them as there are free places do
work ahead of a reply (``pipeline.shedding``): a crowd speaking at once on two workers is one queue, not two.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from attune.core.errors import ConfigError

BUSY_TIMEOUT_S = 0.5  # s a transaction waits for another worker's; a step takes well under a millisecond
STALE_S = 120.0  # s after which a row is a dead worker's: no reply waits and generates that long
FIGURE_STALE_S = 3600.0  # s after which a measured figure no longer counts (the workers' estimates do again)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class AdmissionLedger:
    """The host's replies in flight at the shared LLM server. Not thread-safe: one per worker, on its loop."""

    def __init__(self, path: str | Path, *, stale_s: float = STALE_S) -> None:
        self.path = Path(path)
        self.pid = os.getpid()
        self.stale_s = stale_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "pid INTEGER NOT NULL, since REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS server (k INTEGER PRIMARY KEY CHECK (k = 0), "
                             "last_end REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS turns (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "pid INTEGER NOT NULL, since REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS figures (name TEXT PRIMARY KEY, value REAL NOT NULL, "
                             "at REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "pid INTEGER NOT NULL, since REAL NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"server.admission_ledger {self.path} cannot be opened: {exc}") from None

    def enter(self, capacity: int) -> int | None:
        """A row for one more reply while fewer than ``capacity`` are in flight on the host: its ticket, or None
        (the host is full; nothing was written)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._drop_dead()
            (count,) = db.execute("SELECT COUNT(*) FROM replies").fetchone()
            if count >= capacity:
                return None
            cur = db.execute("INSERT INTO replies (pid, since) VALUES (?, ?)", (self.pid, time.time()))
            return int(cur.lastrowid or 0)
        finally:
            db.execute("COMMIT")

    def leave(self, ticket: int) -> None:
        self._db.execute("DELETE FROM replies WHERE id = ?", (ticket,))

    def in_flight(self) -> int:
        """Replies of every worker holding or waiting for the server now."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM replies WHERE since > ?",
                                    (time.time() - self.stale_s,)).fetchone()
        return int(count)

    def ahead(self, ticket: int) -> int:
        """Replies in flight that entered before ``ticket``."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM replies WHERE id < ? AND since > ?",
                                    (ticket, time.time() - self.stale_s)).fetchone()
        return int(count)

    def turn_began(self) -> int:
        """A row for one session's turn in progress (its user speaks): its ticket, in the order turns began."""
        return self._insert("turns")

    def turn_ended(self, ticket: int) -> None:
        self._db.execute("DELETE FROM turns WHERE id = ?", (ticket,))

    def turns(self) -> int:
        """Turns in progress on the host (every worker's)."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM turns WHERE since > ?",
                                    (time.time() - self.stale_s,)).fetchone()
        return int(count)

    def turns_ahead(self, ticket: int) -> int:
        """Turns in progress on the host that began before ``ticket``."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM turns WHERE id < ? AND since > ?",
                                    (ticket, time.time() - self.stale_s)).fetchone()
        return int(count)

    def session_opened(self) -> int:
        """A row for one open session (it listens: VAD, emotion windows, end-of-turn passes): its ticket. Sessions
        last as long as their users talk, so only a dead worker's rows are dropped, never old ones."""
        return self._insert("sessions")

    def _insert(self, table: str) -> int:
        """A row of this worker's in ``table`` (a fixed name, never input), the dead workers' dropped first, in one
        transaction: its ticket."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._drop_dead()
            cur = db.execute(f"INSERT INTO {table} (pid, since) VALUES (?, ?)", (self.pid, time.time()))
            return int(cur.lastrowid or 0)
        finally:
            db.execute("COMMIT")

    def session_closed(self, ticket: int) -> None:
        self._db.execute("DELETE FROM sessions WHERE id = ?", (ticket,))

    def sessions(self) -> int:
        """Sessions open on the host (every worker's)."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()
        return int(count)

    def note(self, name: str, value: float, weight: float, start: float | None = None) -> float:
        """One more measurement of the host's figure ``name`` (``hold_s``, ``lone_voice_s``): its moving average
        moves towards ``value`` by ``weight``, from ``start`` when none is noted yet (None: ``value`` sets it).
        Returns the new figure."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            found = self.figure(name)
            old = found if found is not None else start
            new = value if old is None else old + weight * (value - old)
            self._put(name, new, time.time())
        finally:
            db.execute("COMMIT")
        return new

    def update(self, names: tuple[str, ...], change: Callable[[dict[str, float]], dict[str, float]]
               ) -> dict[str, float]:
        """Read the host's figures ``names`` (those not noted, or lapsed, are absent), write what ``change`` makes
        of them, in one transaction (two workers never both act on one reading). Returns the written figures."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            found = self.figures(names)
            new = change(found)
            now = time.time()
            for name, value in new.items():
                self._put(name, value, now)
        finally:
            db.execute("COMMIT")
        return new

    def _put(self, name: str, value: float, at: float) -> None:
        self._db.execute("INSERT INTO figures (name, value, at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "value = excluded.value, at = excluded.at", (name, value, at))

    def figures(self, names: tuple[str, ...]) -> dict[str, float]:
        """The host's figures among ``names`` that are noted and not lapsed (``figure``), in one query."""
        marks = ", ".join("?" for _ in names)
        rows = self._db.execute(f"SELECT name, value FROM figures WHERE name IN ({marks}) AND at > ?",
                                (*names, time.time() - FIGURE_STALE_S)).fetchall()
        return {str(name): float(value) for name, value in rows}

    def figure(self, name: str) -> float | None:
        """The host's figure ``name`` as measured by any worker (None: not measured yet, or not for
        ``FIGURE_STALE_S``: the file outlives the workers, and a restart may bring another model)."""
        return self.figures((name,)).get(name)

    def generation_ended(self, at: float) -> float | None:
        """Note that a generation ended at ``at`` (wall clock, s); returns when the one noted before it ended
        (None: none yet)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT last_end FROM server WHERE k = 0").fetchone()
            db.execute("INSERT INTO server (k, last_end) VALUES (0, ?) ON CONFLICT (k) DO UPDATE SET "
                       "last_end = excluded.last_end", (at,))
        finally:
            db.execute("COMMIT")
        return None if row is None else float(row[0])

    def close(self) -> None:
        self._db.execute("DELETE FROM replies WHERE pid = ?", (self.pid,))
        self._db.execute("DELETE FROM turns WHERE pid = ?", (self.pid,))
        self._db.execute("DELETE FROM sessions WHERE pid = ?", (self.pid,))
        self._db.close()

    def _drop_dead(self) -> None:
        db = self._db
        for table in ("replies", "turns", "sessions"):  # fixed names, never input
            if table != "sessions":  # a session lasts as long as its user talks: only its worker's death ends it
                db.execute(f"DELETE FROM {table} WHERE since <= ?", (time.time() - self.stale_s,))
            for (pid,) in db.execute(f"SELECT DISTINCT pid FROM {table} WHERE pid != ?",
                                     (self.pid,)).fetchall():
                if not _alive(int(pid)):
                    db.execute(f"DELETE FROM {table} WHERE pid = ?", (pid,))
