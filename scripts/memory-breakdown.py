#!/usr/bin/env python3
"""Where the embedded stack's memory goes: RSS after each engine loads, split into anonymous and file-backed
pages (/proc/self/smaps), with the largest mappings. Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/memory-breakdown.py

Linux only. It builds the configured engines one by one as ``pipeline.stack.build_backends`` does, warms them
up, and reads /proc after each step (docs/BENCHMARKS.md, "Memory").
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune.core.memory import peak_rss_mb, rss_mb, tune_allocator  # noqa: E402


def mappings() -> dict[str, int]:
    """Resident kB per mapping name ("[anon]", "[heap]" or a file path)."""
    out: dict[str, int] = {}
    name = "[anon]"
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif line.startswith("Rss:"):
                out[name] = out.get(name, 0) + int(line.split()[1])
    return out


def report(stage: str, top: int = 4) -> None:
    per = mappings()
    file_kb = sum(v for k, v in per.items() if k.startswith("/"))
    anon_kb = sum(v for k, v in per.items() if not k.startswith("/"))
    print(f"{stage:10s} RSS {rss_mb():7.1f} MB (peak {peak_rss_mb():7.1f}): anonymous {anon_kb / 1024:6.1f} MB, "
          f"file-backed {file_kb / 1024:6.1f} MB")
    for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{'':12s}{v / 1024:7.1f} MB  {k}")


def main() -> int:
    tune_allocator()
    from attune.config import load_config

    config = load_config()
    report("start", 0)
    from attune.agent.brain import default_planner
    from attune.backends.asr.factory import create_asr
    from attune.backends.llm.factory import create_llm
    from attune.backends.tts.factory import create_tts
    from attune.pipeline.session import SessionBackends, default_aggregate, default_dsp_factory
    from attune.pipeline.stack import for_session, warm_up
    from attune.pipeline.turn import create_vad

    report("imports", 0)
    asr = create_asr(config)
    report("asr")
    llm = create_llm(config)
    report("llm")
    tts = create_tts(config)
    report("tts")
    backends = for_session(config, SessionBackends(
        asr=asr, llm=llm, tts=tts, vad=create_vad(config), emotion=None, aggregate=default_aggregate(),
        planner=default_planner(), dsp_factory=default_dsp_factory()))
    report("vad+emotion", 0)
    asyncio.run(warm_up(backends, config))
    report("warm-up", 8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
