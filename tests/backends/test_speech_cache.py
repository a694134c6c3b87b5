"""The synthesised-speech cache on disk: keys, the memory front over the store, least-recently-used eviction to
the size cap, the time-to-live (an injected clock), corrupt entries, and two processes sharing one directory."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from attune.backends.tts.cache import (
    SpeechCache,
    SpeechKey,
    SpeechStore,
    default_cache_dir,
    speech_cache_from_config,
)
from attune.config import load_config
from attune.core.prosody import ProsodyParameters, profile_for

LAYER = "unit"  # STYLE.md layer 1: loop-free, no models (files in a temporary directory)
RATE = 24000


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def key(text: str, **kw: object) -> SpeechKey:
    args: dict[str, object] = {"voice": "joe", "provider": "piper", "emotion": "calm",
                               "prosody": ProsodyParameters(), "sample_rate": RATE}
    args.update(kw)
    return SpeechKey.of(text, **args)  # type: ignore[arg-type]


def audio(n: int = 2400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


def test_the_key_covers_everything_that_changes_the_sound_and_names_the_file(tmp_path: Path) -> None:
    base = key("Oh  no.")
    assert base == key(" Oh no. ") == key("Oh\tno.\n")
    assert key("caf\u00e9") == key("cafe\u0301")  # NFC: the same word typed two ways
    for other in (key("Oh no!"), key("Oh no.", voice="amy"), key("Oh no.", provider="espeak"),
                  key("Oh no.", emotion="sad"), key("Oh no.", prosody=profile_for("calm", 0.7)),
                  key("Oh no.", sample_rate=16000)):
        assert other != base and other.digest() != base.digest()
    store = SpeechStore(tmp_path, max_bytes=10**7)
    assert store.path_of(base).name == hashlib.sha256(base.canonical().encode()).hexdigest() + ".npz"
    assert '"sample_rate":24000' in base.canonical() and '"text":"Oh no."' in base.canonical()


def test_a_disk_hit_in_a_new_cache_is_the_same_sound_and_is_promoted_to_memory(tmp_path: Path) -> None:
    store = SpeechStore(tmp_path, max_bytes=10**7)
    first = SpeechCache(store=store)
    samples = audio()
    first.put(key("I see."), samples, RATE)
    cold = SpeechCache(store=SpeechStore(tmp_path, max_bytes=10**7))  # as a fresh process would
    assert cold.get_memory(key("I see.")) is None
    got = cold.get(key("I see."))
    assert got is not None and got.sample_rate == RATE and np.array_equal(got.samples, samples)
    assert cold.stats.disk_hits == 1 and cold.get(key("I see.")) is not None and cold.stats.hits == 1
    assert cold.get(key("Okay.")) is None and cold.misses == 1
    assert not got.samples.flags.writeable
    with pytest.raises(ValueError):
        cold.put(key("x"), np.zeros(0), RATE)


def test_the_memory_front_keeps_its_bound_least_recently_used_first_out() -> None:
    cache = SpeechCache(max_items=2)
    assert cache.put(key("a"), audio(), RATE).duration_s == pytest.approx(0.1)  # 2400 samples at 24 kHz
    cache.put(key("b"), audio(), RATE)
    assert cache.get(key("a")) is not None  # a is now the most recently used
    cache.put(key("c"), audio(), RATE)
    assert cache.get(key("b")) is None and cache.get(key("a")) is not None and len(cache) == 2


def test_eviction_to_the_size_cap_takes_the_least_recently_used(tmp_path: Path) -> None:
    clock = Clock()
    probe = SpeechStore(tmp_path / "probe", max_bytes=10**9, clock=clock)
    probe.put(key("probe"), SpeechCache().put(key("probe"), audio(), RATE))
    size = probe.path_of(key("probe")).stat().st_size
    store = SpeechStore(tmp_path / "s", max_bytes=int(3.5 * size), clock=clock)
    cache = SpeechCache(max_items=1, store=store)  # a one-item front: reads go to the disk
    for i, text in enumerate(["a", "b", "c"]):
        clock.t += 10
        cache.put(key(text), audio(seed=i), RATE)
    clock.t += 10
    assert cache.get(key("a")) is not None  # touched: now b is the least recently used
    clock.t += 10
    cache.put(key("d"), audio(seed=9), RATE)  # four do not fit in 3.5
    assert not store.path_of(key("b")).exists()
    assert all(store.path_of(key(t)).exists() for t in "acd")
    clock.t += 10
    cache.put(key("e"), audio(seed=8), RATE)  # then c goes, the oldest use left
    assert not store.path_of(key("c")).exists()
    result = store.sweep()
    assert result.bytes <= store.max_bytes and result.entries == 3


def test_the_time_to_live_expires_on_read_and_on_sweep(tmp_path: Path) -> None:
    clock = Clock()
    store = SpeechStore(tmp_path, max_bytes=10**7, ttl_s=100.0, clock=clock)
    cache = SpeechCache(store=store)
    cache.put(key("old"), audio(), RATE)
    clock.t += 60
    cache.put(key("young"), audio(), RATE)
    clock.t += 50  # old is 110 s old, young 50 s
    assert cache.get(key("old")) is None and not store.path_of(key("old")).exists()  # the front expires it too
    assert cache.get(key("young")) is not None  # a read does not renew the life
    clock.t += 60
    other = SpeechCache(store=SpeechStore(tmp_path, max_bytes=10**7, ttl_s=100.0, clock=clock))
    assert other.get(key("young")) is None  # 110 s: expired on a disk read
    cache.put(key("swept"), audio(), RATE)
    clock.t += 101
    assert store.sweep().expired == 1 and not any(tmp_path.glob("*.npz"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other_key"])
def test_a_corrupt_entry_is_a_miss_removed_and_logged_once(tmp_path: Path, damage: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    store = SpeechStore(tmp_path, max_bytes=10**7)
    cache = SpeechCache(store=store)
    cache.put(key("whole"), audio(), RATE)
    path = store.path_of(key("whole"))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not an entry" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a whole, valid entry under the wrong name: its key does not match
        cache.put(key("another"), audio(seed=3), RATE)
        os.replace(store.path_of(key("another")), path)
    cold = SpeechCache(store=store)
    with caplog.at_level(logging.WARNING, logger="attune.backends.tts.cache"):
        assert cold.get(key("whole")) is None
        assert cold.get(key("whole")) is None
    assert not path.exists()
    warnings = [r for r in caplog.records if "removed entry" in r.getMessage()]
    assert len(warnings) == 1 and path.name in warnings[0].getMessage()
    cold.put(key("whole"), audio(), RATE)  # and the entry can be written again
    assert SpeechCache(store=store).get(key("whole")) is not None


def test_stale_temp_files_and_foreign_files(tmp_path: Path) -> None:
    clock = Clock()
    store = SpeechStore(tmp_path, max_bytes=10**7, clock=clock)
    stale, fresh, foreign = tmp_path / ".tmp-dead.npz", tmp_path / ".tmp-live.npz", tmp_path / "notes.txt"
    for p in (stale, fresh, foreign):
        p.write_bytes(b"x")
    os.utime(stale, (clock.t - 7200, clock.t - 7200))
    os.utime(fresh, (clock.t - 5, clock.t - 5))
    assert store.sweep().temp == 1
    assert not stale.exists() and fresh.exists() and foreign.exists()


def test_a_directory_that_cannot_be_written_only_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = SpeechCache(store=SpeechStore(blocker / "speech", max_bytes=10**7))
    with caplog.at_level(logging.WARNING, logger="attune.backends.tts.cache"):
        item = cache.put(key("Okay."), audio(), RATE)
        cache.put(key("Right."), audio(), RATE)
    assert cache.get(key("Okay.")) is item  # the memory front still serves it
    assert sum("cannot write" in r.getMessage() for r in caplog.records) == 1


def _expected(text: str) -> float:
    return 0.25 if text in ("shared", "filler") else int(text.split("-")[1]) / 10 + 0.05


def _writer(directory: str, worker: int, rounds: int, max_bytes: int) -> None:
    """One process: writes the shared keys and its own, and reads its neighbour's back, many times."""
    store = SpeechStore(directory, max_bytes=max_bytes)
    cache = SpeechCache(max_items=1, store=store)
    for r in range(rounds):
        for text in ("shared", f"own-{worker}-{r % 5}", "filler"):
            cache.put(key(text), np.full(4800, _expected(text), np.float32), RATE)
        for text in ("shared", "filler", f"own-{1 - worker}-{r % 5}"):
            got = store.get(key(text))  # a reader never sees half an entry: the whole one or none
            if got is not None and not np.all(got.samples == np.float32(_expected(text))):
                raise AssertionError(f"{text}: read {got.samples.size} samples, not the entry written")


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    one = tmp_path / "one"
    SpeechStore(one, max_bytes=10**9).put(key("size"), SpeechCache().put(key("size"), audio(4800), RATE))
    size = next(one.glob("*.npz")).stat().st_size
    cap = 8 * size + size // 2  # room for 8 of the 12 distinct keys the two write
    shared = tmp_path / "shared"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(shared), w, 40, cap)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]  # no reader saw a partial entry, no writer raised
    files = list(shared.iterdir())
    assert all(not f.name.startswith(".tmp-") for f in files)  # no temporary file left behind
    assert 1 <= len(files) <= 8 and sum(f.stat().st_size for f in files) <= cap  # the size cap kept
    store = SpeechStore(shared, max_bytes=cap)
    texts = ["shared", "filler", *(f"own-{w}-{i}" for w in (0, 1) for i in range(5))]
    by_path = {store.path_of(key(t)): t for t in texts}
    assert set(files) <= set(by_path)
    for f in files:  # every entry left is whole and holds what its key was written with
        got = store.get(key(by_path[f]))
        assert got is not None and np.all(got.samples == np.float32(_expected(by_path[f])))
    assert store.path_of(key("filler")) in files  # each round's last write: the most recently used


def test_the_cache_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "attune" / "speech"
    cfg = load_config(environ={}, overrides={"speech_cache": {"dir": str(tmp_path / "d"), "max_mb": 2.0,
                                                              "ttl_s": 60.0, "memory_items": 3}})
    cache = speech_cache_from_config(cfg)
    assert cache.store is not None and cache.store.directory == tmp_path / "d"
    assert cache.store.max_bytes == 2 * 1024 * 1024 and cache.ttl_s == 60.0 and cache.max_items == 3
    off = speech_cache_from_config(load_config(environ={}, overrides={"speech_cache": {"enabled": False}}))
    assert off.store is None


def test_the_memory_front_also_keeps_a_byte_bound() -> None:
    """A long conversation's short reply sentences fill the front: its audio, not only its count, is bounded."""
    one = audio().astype(np.float32).nbytes
    cache = SpeechCache(max_items=100, max_bytes=int(2.5 * one))
    for name in "abc":
        cache.put(key(name), audio(), RATE)
    assert len(cache) == 2 and cache.memory_bytes == 2 * one and cache.get_memory(key("a")) is None
    cache.put(key("c"), audio(), RATE)  # the same key again: replaced, not counted twice
    assert len(cache) == 2 and cache.memory_bytes == 2 * one
    big = SpeechCache(max_items=100, max_bytes=one // 2)
    big.put(key("long"), audio(), RATE)  # larger than the bound: the newest item still stays
    assert big.get_memory(key("long")) is not None and big.memory_bytes == one
    cfg = load_config(environ={}, overrides={"speech_cache": {"enabled": False, "memory_mb": 0.5}})
    assert speech_cache_from_config(cfg).max_bytes == 512 * 1024
