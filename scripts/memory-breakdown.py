#!/usr/bin/env python3
"""Where the embedded stack's memory goes: RSS after each engine loads, the peak within each step, the split into
anonymous and file-backed pages (/proc/self/smaps), and the largest mappings. Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/memory-breakdown.py [--turns N]

Linux only. It builds the configured engines one by one in the order ``pipeline.stack.build_backends`` does
(one ASR model, its sibling handle for the partial passes), warms
them up, and with ``--turns N`` holds N turns of the demo's two spoken utterances through one session. The peak
of each step is read from VmHWM, reset before the step (``/proc/self/clear_refs``). docs/BENCHMARKS.md, "Memory".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune.core.process_memory import release_free_memory, tune_allocator  # noqa: E402
from attune_lab.rss import peak_rss_mb, reset_peak_rss, resident_kb_by_mapping, rss_mb  # noqa: E402

_last = [0.0]


def report(stage: str, top: int = 0) -> None:
    per = resident_kb_by_mapping()
    file_kb = sum(v for k, v in per.items() if k.startswith("/"))
    anon_kb = sum(v for k, v in per.items() if not k.startswith("/"))
    now = rss_mb()
    print(f"| {stage} | {now:7.1f} | {now - _last[0]:+7.1f} | {peak_rss_mb():7.1f} | {anon_kb / 1024:6.1f} | "
          f"{file_kb / 1024:7.1f} |", flush=True)
    for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        print(f"|   {k} | {v / 1024:7.1f} | | | | |")
    _last[0] = now
    reset_peak_rss()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=0, help="turns of the demo's utterances after warm-up")
    args = ap.parse_args()
    tune_allocator()
    from attune.config import load_config

    config = load_config()
    print("| step | RSS MiB | change | peak in step | anonymous | file-backed |\n|---|---|---|---|---|---|")
    report("interpreter")
    from attune.backends.tts.cache import speech_cache_from_config
    from attune.commands.conversation import demo_utterances
    from attune.pipeline import stack
    from attune.pipeline.listening import BackgroundWorker
    from attune.pipeline.phrases import PhraseVoice
    from attune.pipeline.session import Session, default_aggregate, default_dsp_factory
    from attune.pipeline.session_backends import SessionBackends, Voice
    from attune.transports.file import stream_file

    report("imports")
    utterances = demo_utterances(config) if args.turns else []
    release_free_memory()
    if args.turns:
        report("demo utterances (router released)")
    background = (BackgroundWorker() if config.pipeline.partial_asr or config.pipeline.prefill_llm else None)
    asr = stack.create_asr(config)
    report("asr")
    llm = stack.create_llm(config)
    report("llm")
    tts = stack.create_tts(config)
    dsp = default_dsp_factory()
    phrases = PhraseVoice(tts, dsp if config.expression.apply_prosody else None, config.pipeline.output_sample_rate,
                          speech_cache_from_config(config))
    report("tts")
    backends = SessionBackends(asr=asr, llm=llm, voice=Voice(tts, phrases), vad=stack.create_vad(config),
                               aggregate=default_aggregate(), planner=stack.default_planner(), dsp_factory=dsp,
                               end_of_turn=stack._end_of_turn_model(config), background=background)
    report("vad + smart-turn")
    if background is not None:
        backends = replace(backends, listen_asr=stack._listen_asr(config, asr))
        report("partial passes' ASR (sibling)")
    backends = stack.for_session(config, backends)
    report("emotion")
    asyncio.run(stack.warm_up(backends, config))
    release_free_memory()
    report("warm-up", 10)

    async def turns() -> None:
        async with Session(config, backends) as session:
            for i in range(args.turns):
                await stream_file(session, utterances[i % len(utterances)], speed=0.0)
                report(f"turn {i + 1}")

    if args.turns:
        asyncio.run(turns())
    return 0


if __name__ == "__main__":
    sys.exit(main())
