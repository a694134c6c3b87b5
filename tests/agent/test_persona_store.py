"""The persona model and its SQLite store: validation naming fields, the voice identity, seeding, a v1 database
migrated, a corrupt or newer database refused and left byte for byte as it was, concurrent writers, samples
shared between personas."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from attune.agent.persona_model import PersonaRecord, Sample, VoiceConfig, parse_persona
from attune.agent.persona_store import DB_NAME, SCHEMA_VERSION, PersonaStore, seed_record
from attune.config import Config, load_config
from attune.core.errors import PersonaError, StoreError

LAYER = "unit"

SAMPLE = Sample("ab" * 32, 7.5, 24000, 1, 16, 30.0)


def _store(tmp_path: Path) -> PersonaStore:
    return PersonaStore(tmp_path, seed_record(load_config(environ={})))


def test_parse_defaults_and_field_errors() -> None:
    r = parse_persona({"id": "kiosk"})
    assert r.name == "kiosk" and r.strategy == "complement" and r.voice.chain() == ("piper", "espeak")
    with pytest.raises(PersonaError) as err:
        parse_persona({"id": "k", "voice": {"speed": 0.1}})
    assert (err.value.code, err.value.field) == ("invalid", "voice.speed") and "0.5..2" in str(err.value)
    with pytest.raises(PersonaError) as err:
        parse_persona({"id": "k", "voice": {"pitch": float("nan")}})
    assert err.value.field == "voice.pitch"
    with pytest.raises(PersonaError) as err:
        parse_persona({"id": "a", "description": "two\nlines"})
    assert err.value.field == "description"
    assert parse_persona({"id": "a", "voice": {"sample": {"sha256": "x"}}}).voice.sample is None  # read-only


def test_identity_changes_with_everything_that_changes_the_sound(tmp_path: Path) -> None:
    model = tmp_path / "v.onnx"
    model.write_bytes(b"one")
    base = VoiceConfig(model="v.onnx")
    seen = {base.identity(tmp_path)}
    for changed in (replace(base, pitch=1.0), replace(base, speed=1.1), replace(base, sample=SAMPLE),
                    replace(base, provider="espeak"), replace(base, fallback=()), replace(base, model=""),
                    replace(base, advanced={"alpha": 0.3}), replace(base, quality="fast")):
        ident = changed.identity(tmp_path)
        assert ident not in seen
        seen.add(ident)
    assert base.identity(tmp_path) == base.identity(tmp_path)
    model.write_bytes(b"a different voice")
    assert base.identity(tmp_path) not in seen


def test_seeded_once_from_the_config(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"agent": {"name": "Ada", "persona": "You are Ada."},
                                                "expression": {"strategy": "match"}})
    store = PersonaStore(tmp_path, seed_record(config))
    (only,) = store.list()
    assert (only.id, only.name, only.traits, only.strategy) == ("default", "Ada", "You are Ada.", "match")
    assert only.persona().description == "You are Ada."
    store.create(parse_persona({"id": "b"}))
    store.delete("default")
    again = PersonaStore(tmp_path, seed_record(config))  # a second start never seeds again
    assert [r.id for r in again.list()] == ["b"]


def test_crud_conflicts_and_the_last_persona(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create(parse_persona({"id": "a", "name": "A"}))
    with pytest.raises(PersonaError) as err:
        store.create(parse_persona({"id": "a"}))
    assert err.value.code == "exists"
    new = store.replace(parse_persona({"id": "a", "name": "A2"}))
    assert new.name == "A2" and new.created_at == store.get("a").created_at
    for call in (lambda: store.get("zz"), lambda: store.delete("zz"), lambda: store.replace(PersonaRecord("zz"))):
        with pytest.raises(PersonaError) as err:
            call()
        assert err.value.code == "not_found"
    store.delete("a")
    with pytest.raises(PersonaError) as err:
        store.delete("default")
    assert err.value.code == "last_persona"


def test_a_v1_database_is_migrated(tmp_path: Path) -> None:
    """A database at schema version 1 (samples inside the body) opens as the current version with its data."""
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("CREATE TABLE personas (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL, "
               "updated_at TEXT NOT NULL)")
    body = {"name": "Old", "voice": {"provider": "piper", "pitch": 3.0, "sample": SAMPLE.to_json()}}
    db.execute("INSERT INTO personas VALUES ('old', ?, '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')",
               (json.dumps(body),))
    db.commit()
    db.close()
    store = _store(tmp_path)
    (old,) = store.list()  # not seeded: the database existed
    assert old.name == "Old" and old.voice.pitch == 3.0 and old.voice.sample == SAMPLE
    assert old.created_at == "2025-01-01T00:00:00Z"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert db.execute("SELECT sample_sha256 FROM personas").fetchone()[0] == SAMPLE.sha256


def test_a_v2_database_is_migrated_to_greetings(tmp_path: Path) -> None:
    """A database at schema version 2 (no greeting in the bodies) opens at version 3: every persona with greeting
    "", its sample and times kept; a greeting then round-trips."""
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.execute("CREATE TABLE personas (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL, "
               "updated_at TEXT NOT NULL, sample_sha256 TEXT)")
    db.execute("CREATE TABLE samples (sha256 TEXT PRIMARY KEY, meta TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute("INSERT INTO samples VALUES (?, ?, '2025-01-01T00:00:00Z')",
               (SAMPLE.sha256, json.dumps(SAMPLE.to_json())))
    body = {"name": "Two", "traits": "You are Two.", "strategy": "match", "voice": {"provider": "piper", "speed": 1.2}}
    db.execute("INSERT INTO personas VALUES ('two', ?, '2025-02-02T00:00:00Z', '2025-02-02T00:00:00Z', ?)",
               (json.dumps(body), SAMPLE.sha256))
    db.commit()
    db.close()
    store = _store(tmp_path)
    (two,) = store.list()
    assert two.greeting == "" and two.name == "Two" and two.voice.speed == 1.2 and two.voice.sample == SAMPLE
    assert two.created_at == "2025-02-02T00:00:00Z"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert json.loads(db.execute("SELECT body FROM personas").fetchone()[0])["greeting"] == ""
    again = store.replace(replace(two, greeting="Hello, I am Two."))
    assert store.get("two").greeting == again.greeting == "Hello, I am Two."


def test_greeting_is_validated_and_default_id_is_checked(tmp_path: Path) -> None:
    from attune.core.errors import ConfigError

    assert parse_persona({"id": "k", "greeting": "  Hi there.  "}).greeting == "Hi there."
    for bad in ("x" * 201, "two\nlines", 5):
        with pytest.raises(PersonaError) as err:
            parse_persona({"id": "k", "greeting": bad})
        assert err.value.field == "greeting"
    store = _store(tmp_path)
    assert store.default_persona("") is None
    assert store.default_persona("default") == store.get("default")
    with pytest.raises(ConfigError, match=r"personas\.default_id.*'ghost'.*stored: default"):
        store.default_persona("ghost")


def test_config_seeds_more_personas_on_the_first_start_only(tmp_path: Path) -> None:
    from attune.core.errors import ConfigError

    def config(seed: list[dict[str, Any]]) -> Config:
        return load_config(environ={}, overrides={"personas": {"data_dir": str(tmp_path / "p"), "seed": seed}})

    clinic = {"id": "clinic", "name": "Ada", "traits": "You are Ada.", "strategy": "match",
              "greeting": "Hello, I am Ada.", "voice": {"pitch": -2.0}}
    store = PersonaStore.from_config(config([clinic, {"id": "buddy"}]))
    assert [r.id for r in store.list()] == ["buddy", "clinic", "default"]
    ada = store.get("clinic")
    assert (ada.name, ada.strategy, ada.greeting, ada.voice.pitch) == ("Ada", "match", "Hello, I am Ada.", -2.0)
    store.delete("buddy")
    again = PersonaStore.from_config(config([clinic, {"id": "buddy"}, {"id": "later"}]))
    assert [r.id for r in again.list()] == ["clinic", "default"]  # an existing database is never re-seeded
    for seed, where in (([{"id": "x", "voice": {"speed": 9}}], r"personas\.seed\[0\]': voice\.speed"),
                        ([{"id": "x"}, {"id": "x"}], r"personas\.seed\[1\]\.id': 'x' is given twice"),
                        ([{"id": "default"}], r"personas\.seed\[0\]\.id': 'default'"),
                        ([{"name": "no id"}], r"personas\.seed\[0\]': id")):
        with pytest.raises(ConfigError, match=where):
            PersonaStore.from_config(config(seed))
    with pytest.raises(ConfigError, match=r"personas\.seed\[0\]"):
        load_config(environ={}, overrides={"personas": {"seed": ["not a mapping"]}})


def test_a_corrupt_database_is_refused_and_kept(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 64
    (tmp_path / DB_NAME).write_bytes(garbage)
    with pytest.raises(StoreError) as err:
        _store(tmp_path)
    message = str(err.value)
    assert str(tmp_path / DB_NAME) in message and "\n" not in message and "untouched" in message
    assert (tmp_path / DB_NAME).read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME, "samples", "voices"]


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    _store(tmp_path)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE schema_version SET version = 99")
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match="schema version 99"):
        _store(tmp_path)
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    store = _store(tmp_path)
    errors: list[Exception] = []

    def work(i: int) -> None:
        try:
            store.create(parse_persona({"id": f"p{i}"}))
            store.replace(parse_persona({"id": f"p{i}", "name": f"n{i}"}))
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {r.name for r in store.list()} == {f"n{i}" for i in range(16)} | {"Attune"}


def test_samples_are_shared_and_removed_when_unused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create(parse_persona({"id": "a"}))
    store.create(parse_persona({"id": "b"}))
    for pid in ("a", "b"):
        assert store.attach_sample(pid, SAMPLE, b"RIFF-bytes").voice.sample == SAMPLE
    path = store.sample_path(SAMPLE.sha256)
    assert path.read_bytes() == b"RIFF-bytes"
    assert store.detach_sample("a").voice.sample is None
    assert path.exists()  # b still uses it
    store.delete("b")
    assert not path.exists()
    with pytest.raises(PersonaError):
        store.attach_sample("zz", SAMPLE, b"x")
