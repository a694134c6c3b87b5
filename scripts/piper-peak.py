#!/usr/bin/env python3
"""Peak RSS that Piper adds while it synthesises one sentence, by sentence length: the configured TTS router
(the embedded joe voice), freed memory handed back before each sentence, the peak read from VmHWM after
resetting it (/proc/self/clear_refs). Linux only. docs/BENCHMARKS.md, "Memory" (fourth step). Run from the
repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/piper-peak.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune.core.process_memory import release_free_memory, tune_allocator  # noqa: E402
from attune_lab.rss import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

SENTENCES = ["I hear you, that sounds hard.", "I am so sorry to hear that, it must be hard.",
             "Tell me more about what happened at work today and how you felt.",
             "That sounds really difficult and I want you to know that I am here for you today."]


def main() -> int:
    tune_allocator()
    from attune.config import load_config
    from attune.pipeline import stack

    tts = stack.create_tts(load_config())

    async def speak(text: str) -> list:
        return [chunk async for chunk in tts.synthesize(text)]

    asyncio.run(speak("Hello there."))  # the first run's one-off allocations out of the figures
    for text in SENTENCES:
        release_free_memory()
        base = rss_mb()
        reset_peak_rss()
        chunks = asyncio.run(speak(text))
        seconds = sum(len(c.samples) for c in chunks) / chunks[0].sample_rate
        print(f"{len(text):3d} characters, {seconds:.2f} s of audio: peak +{peak_rss_mb() - base:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
