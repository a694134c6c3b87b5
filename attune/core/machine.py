"""The machine beside every figure: the CPU's model and the instruction sets that change the engines' speed
(AVX2, AVX-512, VNNI), read from ``/proc/cpuinfo``, and how fast this machine's LLM writes, measured at start-up.

A latency figure means little without them: the same stack answered in 2.5 s on a 2-core AVX2-only EPYC and in
about half that on an AVX-512/VNNI one. ``parse_cpuinfo`` is pure; ``cpu_info()`` reads the running machine.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int  # CPUs this process may run on
    avx2: bool
    avx512: bool  # AVX-512 Foundation
    vnni: bool  # AVX-512 VNNI or AVX-VNNI: int8 dot products (llama.cpp's and CTranslate2's quantised kernels)

    def short(self) -> str:
        isa = "AVX-512" if self.avx512 else "AVX2" if self.avx2 else "no AVX2"
        return f"{self.model}, {self.cores} cores, {isa}{' + VNNI' if self.vnni else ''}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_cpuinfo(text: str, cores: int) -> CpuInfo:
    """The first processor's model name and flags from ``/proc/cpuinfo``'s text (x86 Linux)."""
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown", cores, "avx2" in flags,
                   "avx512f" in flags, bool({"avx512_vnni", "avx_vnni"} & flags))


def cpu_info() -> CpuInfo:
    """This machine's CPU (the flags read as none where ``/proc/cpuinfo`` cannot be read: not Linux)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text, cores)


@dataclass(frozen=True)
class LLMSpeed:
    """How fast the LLM ran here, measured at start-up: ``tokens_per_s`` generated, ``first_token_ms`` for a short
    prompt tail (a few tokens after a cached prefix)."""

    tokens_per_s: float
    first_token_ms: float

    def to_dict(self) -> dict[str, float]:
        return {"tokens_per_s": round(self.tokens_per_s, 1), "first_token_ms": round(self.first_token_ms, 1)}
