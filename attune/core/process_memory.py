"""Process memory: the allocator settings that keep a long session's RSS flat, and the pages of a mapped file
handed back (the LLM's embedding table); the RSS readings of the benchmarks are in ``attune_lab.rss``.

glibc's malloc raises its mmap threshold each time a large block is freed, after which large buffers (a
sentence's synthesis tensors, a turn's audio) come from the heap and their pages stay resident after ``free``;
it also grows one arena per thread. ``tune_allocator()`` pins the threshold and caps the arenas, so large
buffers go back to the system when freed. Linux with glibc only; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path

M_ARENA_MAX = -8  # mallopt parameters from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024  # blocks this large are mmap'ed and returned to the system on free
ARENA_MAX = 2  # malloc arenas at most (default: 8 per core)
MADV_DONTNEED = 4  # madvise advice (Linux): drop the range's pages from this process (file pages stay cached)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # probe: glibc only


def tune_allocator() -> bool:
    """Pin glibc's mmap threshold and cap its arenas for the rest of the process; True when applied.

    Call once at start-up, before the models load; it affects allocations made after the call."""
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    return bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and ok)


def release_free_memory() -> None:
    """Hand freed heap pages back to the system (``malloc_trim``); a no-op without glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _mappings_of(path: Path) -> list[tuple[int, int, int]]:
    """``(start, end, file_offset)`` of this process's read-only mappings of ``path`` (/proc/self/maps); a writable
    one is left out, since dropping its pages would lose what was written to them."""
    target = os.path.realpath(path)
    out = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == target and "w" not in parts[1]:
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    out.append((start, end, int(parts[2], 16)))
    except OSError:
        pass
    return out


def mapped_pages(path: Path, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(address, length)`` of the whole pages that hold ``path``'s byte ``ranges`` (``(offset, nbytes)``)
    wherever the file is mapped read-only in this process; a neighbour's page at either end is left out. A mapping
    keeps its address for its life, so a caller resolves this once and drops the pages as often as it needs."""
    page = mmap.PAGESIZE
    out = []
    for start, end, file_offset in _mappings_of(path):
        for offset, nbytes in ranges:
            lo = -(-max(start, start + offset - file_offset) // page) * page
            hi = min(end, start + offset + nbytes - file_offset) // page * page
            if hi > lo:
                out.append((lo, hi - lo))
    return out


def drop_pages(pages: list[tuple[int, int]]) -> int:
    """Take the resident pages of ``pages`` (from ``mapped_pages``) out of this process's memory
    (``madvise(MADV_DONTNEED)``). They stay in the page cache, so a later read faults them back in without touching
    the disk. Returns the bytes advised (0 off Linux)."""
    libc = _libc()
    if libc is None or not pages:
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return sum(length for address, length in pages if madvise(address, length, MADV_DONTNEED) == 0)


def drop_mapped_pages(path: Path, ranges: list[tuple[int, int]]) -> int:
    """``drop_pages(mapped_pages(path, ranges))``: 0 where nothing is mapped read-only. Writable mappings are
    never touched: a private page written to would lose its writes."""
    return drop_pages(mapped_pages(path, ranges))

