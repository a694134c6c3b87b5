"""The synthesised-speech cache: finished audio (TTS, prosody DSP and output rate applied) keyed by everything that
decides how it sounds, in a small in-memory front (``SpeechCache``) over an optional store on disk
(``SpeechStore``) that outlives the process and is shared by every process pointed at the same directory.

Stock phrases (greetings, acknowledgements) are rendered into it at start-up (``pipeline/phrases.py``)
and cost nothing at run time; a second start finds them on disk.

On disk, one file per entry, named by the SHA-256 of the key's canonical JSON (``<digest>.npz``): the samples as
float32 (exactly what the memory front holds, so a disk hit is bit-identical to a fresh render and never loses the
DSP's headroom to 16-bit rounding; a 1 s phrase at 24 kHz is 94 KiB) and the metadata (the key's canonical JSON,
the rate, the creation time). Writes go to a temporary file in the same directory and are published with
``os.replace``, so a reader sees the whole entry or none (no fsync: the data can be rendered again, and the
truncated file a crash may leave is a miss like any corrupt entry). Recency is the file's modification time
(touched on every hit), so least-recently-used eviction to the size cap works across processes; the time-to-live
counts from the creation time in the metadata and is checked on every read and every sweep. A corrupt or truncated
entry is a miss: removed and logged once, never an exception to the caller; a store that cannot write only logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attune import __version__
from attune.core.prosody import ProsodyParameters

log = logging.getLogger(__name__)
DEFAULT_MAX_ITEMS = 256
DEFAULT_TTL_S = 24 * 3600.0  # the original system's time-to-live
FORMAT = 1  # of the entry file; part of the key, as is the package version (a new DSP may sound different)
STALE_TEMP_S = 3600.0  # a temporary file this old is a crashed writer's, removed on sweep
_ENTRY = re.compile(r"^[0-9a-f]{64}\.npz$")
Clock = Callable[[], float]


def default_cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/attune/speech``: regenerable data, beside setup's wheel cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attune" / "speech"


def normalise_text(text: str) -> str:
    """The text as the key sees it: Unicode NFC, runs of white space as one space, trimmed (case is kept: TTS
    reads "US" and "us" differently)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class SpeechKey:
    """What makes two renderings the same sound: the text (normalised), the voice's identity, the provider, the
    expressed emotion, the prosody parameters (``ProsodyParameters.to_dict()``'s rounded items, so equal
    parameters give equal keys) and the output sample rate."""

    text: str
    voice: str
    provider: str
    emotion: str
    prosody: tuple[tuple[str, float], ...]
    sample_rate: int = 0

    @classmethod
    def of(cls, text: str, *, voice: str, provider: str, emotion: str,
           prosody: ProsodyParameters | None, sample_rate: int = 0) -> SpeechKey:
        items = tuple(sorted((prosody or ProsodyParameters()).to_dict().items()))
        return cls(normalise_text(text), voice, provider, emotion, items, int(sample_rate))

    def canonical(self) -> str:
        """The key as canonical JSON (sorted keys, no spaces), with the entry format and package version."""
        return json.dumps({"text": self.text, "voice": self.voice, "provider": self.provider,
                           "emotion": self.emotion, "prosody": dict(self.prosody), "sample_rate": self.sample_rate,
                           "format": FORMAT, "version": __version__},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedSpeech:
    """Mono float32 audio at ``sample_rate``, ready to send; ``created_s`` is when it was rendered (epoch s)."""

    samples: np.ndarray
    sample_rate: int
    created_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _speech(samples: np.ndarray, sample_rate: int, created_s: float) -> CachedSpeech:
    arr = np.array(samples, dtype=np.float32).ravel()  # a copy: the caller keeps its buffer
    if arr.size == 0 or sample_rate <= 0:
        raise ValueError("cached speech needs samples and a positive sample rate")
    arr.setflags(write=False)
    return CachedSpeech(arr, int(sample_rate), float(created_s))


@dataclass
class SweepResult:
    expired: int = 0
    evicted: int = 0
    corrupt: int = 0
    temp: int = 0
    bytes: int = 0  # what the entries left take
    entries: int = 0


class SpeechStore:
    """The disk half: ``get(key)`` -> CachedSpeech or None, ``put(key, speech)`` -> whether it was written,
    ``sweep()`` expires, removes crashed writers' temporary files and evicts the least recently used entries until
    the directory holds at most ``max_bytes``. Safe for threads and for processes sharing ``directory``.
    ``clock`` (epoch seconds) is injectable for tests; recency and age are both read from it."""

    def __init__(self, directory: str | Path, *, max_bytes: int, ttl_s: float = DEFAULT_TTL_S,
                 clock: Clock = time.time) -> None:
        if max_bytes < 1 or ttl_s <= 0:
            raise ValueError("a speech store needs a positive size cap and time-to-live")
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._lock = threading.Lock()  # one sweep at a time in this process; other processes tolerate each other
        self._reported: set[str] = set()
        self._writable = True
        self._created_of: dict[str, tuple[int, float]] = {}  # name -> (inode, creation time): sweeps stay cheap

    def path_of(self, key: SpeechKey) -> Path:
        return self.directory / f"{key.digest()}.npz"

    def get(self, key: SpeechKey) -> CachedSpeech | None:
        path = self.path_of(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"][()]))
                samples = np.asarray(data["samples"], dtype=np.float32)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - truncated zip, bad JSON, missing member: all a miss
            self._drop(path, f"unreadable ({type(exc).__name__}: {exc})")
            return None
        try:
            created, rate = float(meta["created_s"]), int(meta["sample_rate"])
            if meta["key"] != key.canonical() or samples.ndim != 1 or samples.size == 0 or rate <= 0 \
                    or samples.size != int(meta["samples"]) or not np.isfinite(samples).all():
                raise ValueError("does not match its key or its own length")
        except (KeyError, TypeError, ValueError) as exc:
            self._drop(path, f"inconsistent ({exc})")
            return None
        now = self.clock()
        if now - created > self.ttl_s:
            self._unlink(path)
            return None
        try:
            os.utime(path, (now, now))  # the recency that eviction reads
        except OSError:
            pass
        return _speech(samples, rate, created)

    def put(self, key: SpeechKey, speech: CachedSpeech) -> bool:
        """Write the entry (atomically), then keep the size cap. False, logged, when the disk refuses."""
        meta = {"key": key.canonical(), "sample_rate": speech.sample_rate, "samples": int(speech.samples.size),
                "created_s": speech.created_s}
        tmp = ""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, samples=speech.samples, meta=np.array(json.dumps(meta)))
            now = self.clock()
            os.utime(tmp, (now, now))
            os.replace(tmp, self.path_of(key))
        except OSError as exc:
            if tmp:
                self._unlink(Path(tmp))
            if self._writable:
                log.warning("speech cache: cannot write to %s (%s); going on without storing", self.directory, exc)
            self._writable = False
            return False
        self._writable = True
        self.sweep()
        return True

    def sweep(self) -> SweepResult:
        """Expire old entries, remove stale temporary files, then evict least recently used to the size cap."""
        result = SweepResult()
        now = self.clock()
        with self._lock:
            live: list[tuple[float, int, Path]] = []
            try:
                listing = list(os.scandir(self.directory))
            except OSError:
                return result
            for item in listing:
                path = Path(item.path)
                try:
                    st = item.stat()
                except OSError:
                    continue  # removed meanwhile by another process
                if item.name.startswith(".tmp-"):
                    if now - st.st_mtime > STALE_TEMP_S:
                        result.temp += self._unlink(path)
                    continue
                if not _ENTRY.match(item.name):
                    continue  # not ours: left alone
                created = self._created(path, st.st_ino)
                if created is None:
                    result.corrupt += 1
                elif now - created > self.ttl_s:
                    result.expired += self._unlink(path)
                else:
                    live.append((st.st_mtime, st.st_size, path))
            names = {p.name for _, _, p in live}
            self._created_of = {n: v for n, v in self._created_of.items() if n in names}
            live.sort()  # oldest use first
            total = sum(size for _, size, _ in live)
            while live and total > self.max_bytes:
                _, size, path = live.pop(0)
                result.evicted += self._unlink(path)
                total -= size
            result.bytes, result.entries = total, len(live)
        return result

    def _created(self, path: Path, inode: int) -> float | None:
        """The entry's creation time from its metadata (read once per file version: a rewrite is a new inode);
        None (and removed) when it cannot be read."""
        known = self._created_of.get(path.name)
        if known is not None and known[0] == inode:
            return known[1]
        try:
            with np.load(path, allow_pickle=False) as data:
                created = float(json.loads(str(data["meta"][()]))["created_s"])
        except FileNotFoundError:
            return float("inf")  # gone meanwhile: counts as expired, and unlinking it again is harmless
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is removed
            self._drop(path, f"unreadable ({type(exc).__name__}: {exc})")
            return None
        self._created_of[path.name] = (inode, created)
        return created

    def _drop(self, path: Path, why: str) -> None:
        if path.name not in self._reported:
            self._reported.add(path.name)
            log.warning("speech cache: removed entry %s: %s", path.name, why)
        self._unlink(path)

    @staticmethod
    def _unlink(path: Path) -> int:
        try:
            path.unlink()
            return 1
        except FileNotFoundError:
            return 0
        except OSError:
            return 0


@dataclass
class CacheStats:
    hits: int = 0  # from memory
    disk_hits: int = 0
    misses: int = 0
    stores: int = 0


class SpeechCache:
    """``get(key)`` -> CachedSpeech or None; ``put(key, samples, rate)`` -> CachedSpeech. The memory front holds
    at most ``max_items`` and ``max_bytes`` of audio (least recently used first out; the newest item always
    stays) over ``store`` (None: memory only, nothing outlives the process). A disk hit is promoted into memory.
    With ``ttl_s`` the front expires entries too (measured from their creation, like the store). Thread-safe:
    rendering runs off the event loop."""

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS, *, store: SpeechStore | None = None,
                 ttl_s: float | None = None, clock: Clock | None = None, max_bytes: int | None = None) -> None:
        if max_items < 1 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("a speech cache holds at least one item")
        self.max_items = max_items
        self.max_bytes = max_bytes  # the front's audio at most (None: bounded by items only)
        self._bytes = 0
        self.store = store
        self.ttl_s = ttl_s if ttl_s is not None else (store.ttl_s if store is not None else None)
        self.clock: Clock = clock or (store.clock if store is not None else time.time)
        self._items: OrderedDict[SpeechKey, CachedSpeech] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def hits(self) -> int:
        return self.stats.hits + self.stats.disk_hits

    @property
    def misses(self) -> int:
        return self.stats.misses

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: SpeechKey) -> CachedSpeech | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and self._expired(item):
                del self._items[key]
                self._bytes -= item.samples.nbytes
                item = None
            if item is not None:
                self._items.move_to_end(key)
                self.stats.hits += 1
                return item
        found = self.store.get(key) if self.store is not None else None
        with self._lock:
            if found is None:
                self.stats.misses += 1
                return None
            self.stats.disk_hits += 1
            self._remember(key, found)
        return found

    def get_memory(self, key: SpeechKey) -> CachedSpeech | None:
        """The memory front alone (never touches the disk): for callers on the event loop."""
        with self._lock:
            item = self._items.get(key)
            if item is None or self._expired(item):
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item

    def put(self, key: SpeechKey, samples: np.ndarray, sample_rate: int, *, persist: bool = True) -> CachedSpeech:
        """Keep the audio (a read-only copy) in memory and, with ``persist``, on disk now; without, the caller
        writes it later with ``persist(key, item)`` (off the path that is waiting for it)."""
        item = _speech(samples, sample_rate, self.clock())
        with self._lock:
            self._remember(key, item)
            self.stats.stores += 1
        if persist:
            self.persist(key, item)
        return item

    def persist(self, key: SpeechKey, item: CachedSpeech) -> None:
        if self.store is not None:
            self.store.put(key, item)

    @property
    def memory_bytes(self) -> int:
        """Bytes of audio the memory front holds now."""
        return self._bytes

    def _remember(self, key: SpeechKey, item: CachedSpeech) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.samples.nbytes
        self._items[key] = item
        self._bytes += item.samples.nbytes
        while len(self._items) > 1 and (len(self._items) > self.max_items
                                        or (self.max_bytes is not None and self._bytes > self.max_bytes)):
            _, dropped = self._items.popitem(last=False)
            self._bytes -= dropped.samples.nbytes

    def _expired(self, item: CachedSpeech) -> bool:
        return self.ttl_s is not None and self.clock() - item.created_s > self.ttl_s


def speech_cache_from_config(config: Any) -> SpeechCache:
    """The cache ``config.speech_cache`` describes: a memory front over the store in ``dir`` (empty: the
    default under the user's cache directory) when ``enabled``; memory only when not."""
    c = config.speech_cache
    front = int(c.memory_mb * 1024 * 1024)
    if not c.enabled:
        return SpeechCache(c.memory_items, max_bytes=front)
    directory = config.resolve_path(c.dir) if c.dir else default_cache_dir()
    store = SpeechStore(directory, max_bytes=int(c.max_mb * 1024 * 1024), ttl_s=c.ttl_s)
    return SpeechCache(c.memory_items, store=store, max_bytes=front)
