"""RSS readings for the benchmarks and soaks: this process's resident and peak set size (/proc/self/status),
resident kB per mapping (/proc/self/smaps), the peak's reset, and the soak's growth slope. Linux; elsewhere 0."""

from __future__ import annotations

import os
from pathlib import Path


def resident_kb_by_mapping() -> dict[str, int]:
    """Resident kB of this process per mapping name ("[anon]", "[heap]" or a file path), from /proc/self/smaps;
    empty where it cannot be read."""
    out: dict[str, int] = {}
    name = "[anon]"
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    out[name] = out.get(name, 0) + int(line.split()[1])
                elif not line[:1].isupper():  # a mapping's header line; field lines start with a capital
                    parts = line.split(maxsplit=5)
                    name = parts[5].rstrip("\n") if len(parts) == 6 else "[anon]"
    except OSError:
        pass
    return out


def mapped_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path``; 0 where it is not mapped."""
    return resident_kb_by_mapping().get(os.path.realpath(path), 0)


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb() -> float:
    """Resident set size now, in MB (MiB); 0.0 where /proc is not available."""
    return _status_kb("VmRSS") / 1024.0


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (MiB); 0.0 where /proc is not available."""
    return _status_kb("VmHWM") / 1024.0


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) again from the current RSS, so ``peak_rss_mb`` reads the peak of what follows
    (``/proc/self/clear_refs``, Linux >= 4.0); a no-op where it cannot be written."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def slope_per_100(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(turn, rss_mb)`` points, in MB per 100 turns (0.0 for fewer than two turns):
    the soak's growth trend, less sensitive to one turn's transient than the last reading minus the first."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 100.0 * sxy / sxx
