"""The persona store: ``PersonaRecord`` rows in SQLite (``<data_dir>/personas.sqlite3``, standard ``sqlite3``) and
the voice samples beside it (``<data_dir>/samples/<sha256>.wav``); user Piper voices live in ``<data_dir>/voices/``.

The schema is versioned: ``schema_version`` holds the version and ``MIGRATIONS`` the steps, applied in order in
one transaction each; a new database is seeded from the configuration (the agent's name and persona become
persona ``default``; ``personas.seed`` adds more). A file that is not a readable database, or one from a newer
Attune, is a ``StoreError`` naming it, and the file is never written, overwritten or deleted. Every operation
opens its own connection (WAL journal, a busy timeout), so concurrent requests from worker threads are safe;
writes take ``BEGIN IMMEDIATE``. Blocking: call it from a worker thread (``asyncio.to_thread``) on the event
loop's side.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from attune.agent.persona_model import PersonaRecord, Sample, VoiceConfig, parse_persona, record_from_json
from attune.config import Config
from attune.core.errors import ConfigError, PersonaError, StoreError

DB_NAME = "personas.sqlite3"
DEFAULT_ID = "default"
BUSY_TIMEOUT_S = 10.0


def _v1(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE personas (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL, "
               "updated_at TEXT NOT NULL)")


def _v2(db: sqlite3.Connection) -> None:
    """Samples get their own table (one file may serve several personas); v1 bodies that carried a sample in
    ``voice.sample`` have it moved there."""
    db.execute("CREATE TABLE samples (sha256 TEXT PRIMARY KEY, meta TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute("ALTER TABLE personas ADD COLUMN sample_sha256 TEXT REFERENCES samples(sha256)")
    for pid, body in db.execute("SELECT id, body FROM personas").fetchall():
        obj = json.loads(body)
        sample = (obj.get("voice") or {}).pop("sample", None)
        if sample:
            db.execute("INSERT OR IGNORE INTO samples VALUES (?, ?, ?)",
                       (sample["sha256"], json.dumps(sample), _now()))
        db.execute("UPDATE personas SET body = ?, sample_sha256 = ? WHERE id = ?",
                   (json.dumps(obj), sample["sha256"] if sample else None, pid))


def _v3(db: sqlite3.Connection) -> None:
    """Personas get a ``greeting`` (spoken first by a kiosk, prewarmed in the persona's voice): "" for every
    persona stored before."""
    for pid, body in db.execute("SELECT id, body FROM personas").fetchall():
        obj = json.loads(body)
        obj.setdefault("greeting", "")
        db.execute("UPDATE personas SET body = ? WHERE id = ?", (json.dumps(obj, sort_keys=True), pid))


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]  # step i brings version i to i + 1
SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def seed_record(config: Config) -> PersonaRecord:
    """Persona ``default`` as the configuration describes the agent today (its name, persona text, strategy,
    TTS provider or tier, and Piper voice)."""
    t = config.tts
    model = str(config.resolve_path(t.piper_model)) if t.piper_model.endswith(".onnx") else ""
    return PersonaRecord(id=DEFAULT_ID, name=config.agent.name, description="The configured agent",
                         traits=config.agent.persona, strategy=config.expression.strategy,
                         voice=VoiceConfig(provider=t.provider, fallback=(), model=model, quality=t.tier))


def seed_records(config: Config) -> list[PersonaRecord]:
    """``personas.seed``: each entry validated as a persona API body; a bad one (or an id given twice, or
    ``default``, which is the configured agent) is a ``ConfigError`` naming the entry and its field."""
    records: list[PersonaRecord] = []
    seen = {DEFAULT_ID}
    for i, body in enumerate(config.personas.seed):
        try:
            record = parse_persona(body)
        except PersonaError as exc:
            raise ConfigError(f"config key 'personas.seed[{i}]': {exc}") from None
        if record.id in seen:
            why = "is the configured agent's" if record.id == DEFAULT_ID else "is given twice"
            raise ConfigError(f"config key 'personas.seed[{i}].id': {record.id!r} {why}")
        seen.add(record.id)
        records.append(record)
    return records


class PersonaStore:
    """Open (creating, migrating and seeding as needed) the store under ``data_dir``. ``seed`` and ``more`` are
    stored only when the database is new (``default`` first, then ``personas.seed`` in order)."""

    def __init__(self, data_dir: Path, seed: PersonaRecord | None = None,
                 more: tuple[PersonaRecord, ...] | list[PersonaRecord] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.samples_dir = self.data_dir / "samples"
        self.voices_dir = self.data_dir / "voices"
        try:
            for d in (self.data_dir, self.samples_dir, self.voices_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"persona data directory {self.data_dir} cannot be created: {exc}") from None
        self._open(seed, tuple(more))

    @classmethod
    def from_config(cls, config: Config) -> PersonaStore:
        """The store of ``personas.data_dir``, seeded (when new) from the configuration: ``default`` and
        ``personas.seed``, which is validated on every start (a ConfigError naming the entry)."""
        more = seed_records(config)
        return cls(config.personas_dir(), seed_record(config), more)

    def _fail(self, exc: Exception) -> StoreError:
        return StoreError(f"persona database {self.path} cannot be used ({exc}); it was left untouched: move it "
                          "aside or restore a backup, and a new one is made on the next start")

    def _open(self, seed: PersonaRecord | None, more: tuple[PersonaRecord, ...] = ()) -> None:
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            with self._connect() as db:
                if existed:
                    db.execute("PRAGMA schema_version").fetchone()  # reads the header: garbage fails here
                    check = db.execute("PRAGMA quick_check").fetchone()
                    if check is None or check[0] != "ok":
                        raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
                db.execute("PRAGMA journal_mode=WAL")
                version = self._version(db)
                if version > SCHEMA_VERSION:
                    raise StoreError(f"persona database {self.path} has schema version {version}, newer than this "
                                     f"Attune's {SCHEMA_VERSION}; it was left untouched")
                for step in range(version, SCHEMA_VERSION):
                    db.execute("BEGIN IMMEDIATE")
                    MIGRATIONS[step](db)
                    db.execute("DELETE FROM schema_version")
                    db.execute("INSERT INTO schema_version VALUES (?)", (step + 1,))
                    db.execute("COMMIT")
                if version == 0 and (seed is not None or more):  # a new database: seeded once, never again
                    db.execute("BEGIN IMMEDIATE")
                    for record in (seed, *more) if seed is not None else more:
                        self._insert(db, record)
                    db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from None

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")

    def default_persona(self, default_id: str) -> PersonaRecord | None:
        """The persona of sessions that choose none (``personas.default_id``); None for "" (the configured agent).
        An id that is not stored is a ``ConfigError`` naming the key and the ids there are."""
        if not default_id:
            return None
        try:
            return self.get(default_id)
        except PersonaError:
            known = ", ".join(r.id for r in self.list())
            raise ConfigError(f"config key 'personas.default_id': no persona {default_id!r} in {self.path} "
                              f"(stored: {known})") from None

    # ---- rows ----
    @staticmethod
    def _insert(db: sqlite3.Connection, record: PersonaRecord) -> PersonaRecord:
        now = _now()
        record = replace(record, created_at=record.created_at or now, updated_at=now)
        db.execute("INSERT INTO personas (id, body, created_at, updated_at, sample_sha256) VALUES (?, ?, ?, ?, ?)",
                   (record.id, _body(record), record.created_at, record.updated_at,
                    record.voice.sample.sha256 if record.voice.sample else None))
        return record

    def _record(self, db: sqlite3.Connection, row: tuple[str, str, str, str, str | None]) -> PersonaRecord:
        pid, body, created, updated, sha = row
        obj = json.loads(body)
        sample = None
        if sha:
            meta = db.execute("SELECT meta FROM samples WHERE sha256 = ?", (sha,)).fetchone()
            sample = json.loads(meta[0]) if meta else None
        obj["voice"] = {**(obj.get("voice") or {}), "sample": sample}
        return record_from_json({**obj, "id": pid, "created_at": created, "updated_at": updated})

    _SELECT = "SELECT id, body, created_at, updated_at, sample_sha256 FROM personas"

    def list(self) -> list[PersonaRecord]:
        with self._connect() as db:
            return [self._record(db, r) for r in db.execute(self._SELECT + " ORDER BY id").fetchall()]

    def get(self, pid: str) -> PersonaRecord:
        with self._connect() as db:
            row = db.execute(self._SELECT + " WHERE id = ?", (pid,)).fetchone()
            if row is None:
                raise _not_found(pid)
            return self._record(db, row)

    def create(self, record: PersonaRecord) -> PersonaRecord:
        with self._write() as db:
            if db.execute("SELECT 1 FROM personas WHERE id = ?", (record.id,)).fetchone():
                raise PersonaError(f"a persona with id {record.id!r} exists already", "exists", "id")
            return self._insert(db, record.with_sample(None))

    def replace(self, record: PersonaRecord) -> PersonaRecord:
        """Whole replacement; the stored sample and creation time are kept."""
        with self._write() as db:
            row = db.execute(self._SELECT + " WHERE id = ?", (record.id,)).fetchone()
            if row is None:
                raise _not_found(record.id)
            old = self._record(db, row)
            new = replace(record.with_sample(old.voice.sample), created_at=old.created_at, updated_at=_now())
            db.execute("UPDATE personas SET body = ?, updated_at = ? WHERE id = ?",
                       (_body(new), new.updated_at, new.id))
            return new

    def delete(self, pid: str) -> None:
        """Raises ``not_found``, or ``last_persona`` when it is the only one left (a server always has one)."""
        with self._write() as db:
            row = db.execute("SELECT sample_sha256 FROM personas WHERE id = ?", (pid,)).fetchone()
            if row is None:
                raise _not_found(pid)
            if db.execute("SELECT count(*) FROM personas").fetchone()[0] <= 1:
                raise PersonaError(f"persona {pid!r} is the last one; create another before deleting it",
                                   "last_persona", "id")
            db.execute("DELETE FROM personas WHERE id = ?", (pid,))
            orphan = self._drop_unused_sample(db, row[0])
        self._remove_file(orphan)

    # ---- samples ----
    def sample_path(self, sha256: str) -> Path:
        return self.samples_dir / f"{sha256}.wav"

    def attach_sample(self, pid: str, sample: Sample, wav: bytes) -> PersonaRecord:
        """Store ``wav`` (the validated, mono sample) as ``samples/<sha256>.wav`` and attach it to ``pid``."""
        self.get(pid)  # 404 before anything is written
        target = self.sample_path(sample.sha256)
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=self.samples_dir, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(wav)
            os.replace(tmp, target)
        with self._write() as db:
            row = db.execute("SELECT sample_sha256 FROM personas WHERE id = ?", (pid,)).fetchone()
            if row is None:
                raise _not_found(pid)
            db.execute("INSERT OR IGNORE INTO samples VALUES (?, ?, ?)",
                       (sample.sha256, json.dumps(sample.to_json()), _now()))
            db.execute("UPDATE personas SET sample_sha256 = ?, updated_at = ? WHERE id = ?",
                       (sample.sha256, _now(), pid))
            orphan = self._drop_unused_sample(db, row[0]) if row[0] != sample.sha256 else None
        self._remove_file(orphan)
        return self.get(pid)

    def detach_sample(self, pid: str) -> PersonaRecord:
        """The persona without its sample; the file goes only when no other persona uses it."""
        with self._write() as db:
            row = db.execute("SELECT sample_sha256 FROM personas WHERE id = ?", (pid,)).fetchone()
            if row is None:
                raise _not_found(pid)
            db.execute("UPDATE personas SET sample_sha256 = NULL, updated_at = ? WHERE id = ?", (_now(), pid))
            orphan = self._drop_unused_sample(db, row[0])
        self._remove_file(orphan)
        return self.get(pid)

    def _drop_unused_sample(self, db: sqlite3.Connection, sha: str | None) -> str | None:
        if not sha or db.execute("SELECT 1 FROM personas WHERE sample_sha256 = ?", (sha,)).fetchone():
            return None
        db.execute("DELETE FROM samples WHERE sha256 = ?", (sha,))
        return sha

    def _remove_file(self, sha: str | None) -> None:
        if sha:
            with contextlib.suppress(FileNotFoundError):
                self.sample_path(sha).unlink()


def _body(record: PersonaRecord) -> str:
    obj = record.to_json()
    for key in ("id", "created_at", "updated_at"):
        obj.pop(key)
    obj["voice"].pop("sample")
    return json.dumps(obj, sort_keys=True)


def _not_found(pid: str) -> PersonaError:
    return PersonaError(f"no persona with id {pid!r}", "not_found", "id")
