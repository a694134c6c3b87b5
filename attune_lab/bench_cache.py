"""The speech cache's subcommand: ``bench-cache`` times, on the configured (real) TTS, synthesis + prosody DSP of
stock phrases against a hit in the memory front and a disk hit in a freshly started process; p50 / p95 in ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attune.config import Config
from attune.core.stats import percentile


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-cache", help="speech cache hit latency (memory, disk in a cold process) vs synthesis")
    p.add_argument("--phrases", type=int, default=12,
                   help="stock phrases to time (the speech cache's acknowledgements, the first sounds)")
    p.add_argument("--repeats", type=int, default=3, help="renders of each phrase, and cold processes for disk")
    p.add_argument("--dir", default=None, help="entry directory (default: a fresh temporary one, removed after)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_cache)


def _cold_disk_reads(directory: str, max_bytes: int, ttl_s: float, keys: list[Any]) -> list[float]:
    """In a new process: the first read of each key from disk (an empty memory front), ms each."""
    from attune.backends.tts.cache import SpeechCache, SpeechStore

    cache = SpeechCache(store=SpeechStore(directory, max_bytes=max_bytes, ttl_s=ttl_s))
    out = []
    for key in keys:
        t = time.perf_counter()
        hit = cache.get(key)
        out.append(1000.0 * (time.perf_counter() - t))
        if hit is None:
            raise RuntimeError(f"no disk entry for {key.text!r}")
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 3), "p95_ms": round(percentile(values, 95), 3)}


async def _bench(config: Config, directory: Path, n: int, repeats: int) -> dict[str, Any]:
    from attune.backends.tts.cache import SpeechCache, SpeechStore
    from attune.backends.tts.tts_factory import create_tts
    from attune.pipeline.phrases import PhraseVoice, stock_phrases
    from attune.pipeline.session import default_dsp_factory

    tts = create_tts(config)
    dsp = default_dsp_factory() if config.expression.apply_prosody else None
    rate = config.pipeline.output_sample_rate
    phrases = stock_phrases(config)[:max(1, n)]
    await PhraseVoice(tts, dsp, rate).render("Hello.", "neutral", None)  # load the voice: not timed
    synth: list[float] = []
    for _ in range(repeats):
        for ph in phrases:
            fresh = PhraseVoice(tts, dsp, rate, SpeechCache())  # memory only, empty: every render a miss
            t = time.perf_counter()
            made = await fresh.render(ph.text, ph.emotion, ph.prosody)
            synth.append(1000.0 * (time.perf_counter() - t))
            if made is None:
                raise RuntimeError(f"TTS failed on {ph.text!r}")
    max_bytes = int(config.speech_cache.max_mb * 1024 * 1024)
    store = SpeechStore(directory, max_bytes=max_bytes, ttl_s=config.speech_cache.ttl_s)
    voice = PhraseVoice(tts, dsp, rate, SpeechCache(store=store))
    seconds = [s.duration_s for ph in phrases if (s := await voice.render(ph.text, ph.emotion, ph.prosody))]
    keys = [voice.key(ph.text, ph.emotion, ph.prosody) for ph in phrases]
    memory: list[float] = []
    for _ in range(repeats * 100):
        for key in keys:
            t = time.perf_counter()
            voice.cache.get(key)
            memory.append(1000.0 * (time.perf_counter() - t))
    return {"tts": getattr(tts, "planned_provider", lambda: tts.name)(), "phrases": len(phrases),
            "repeats": repeats, "audio_s_mean": round(sum(seconds) / max(1, len(seconds)), 3),
            "synthesis": _stats(synth), "memory_hit": _stats(memory), "keys": keys}


def _disk_phase(config: Config, directory: Path, keys: list[Any], repeats: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    disk: list[float] = []
    args = (str(directory), int(config.speech_cache.max_mb * 1024 * 1024), config.speech_cache.ttl_s, keys)
    for _ in range(repeats):
        with ctx.Pool(1) as pool:  # a new process each round: nothing of the cache in its memory
            disk += pool.apply(_cold_disk_reads, args)
    size = sum(p.stat().st_size for p in directory.glob("*.npz"))
    return {"entry_kib_mean": round(size / 1024 / max(1, len(keys)), 1), "disk_hit_cold_process": _stats(disk)}


def cmd_bench_cache(args: argparse.Namespace, config: Config) -> int:
    if args.phrases < 1 or args.repeats < 1:
        print("error: --phrases and --repeats must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="attune-bench-cache-") as tmp:
        directory = Path(args.dir) if args.dir else Path(tmp)
        result = asyncio.run(_bench(config, directory, args.phrases, args.repeats))
        result.update(_disk_phase(config, directory, result.pop("keys"), args.repeats))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['phrases']} stock phrases x {result['repeats']} on {result['tts']} "
          f"(mean {result['audio_s_mean']} s of audio, {result['entry_kib_mean']} KiB on disk each):")
    for name, label in (("synthesis", "synthesis + DSP"), ("memory_hit", "memory hit"),
                        ("disk_hit_cold_process", "disk hit, cold process")):
        s = result[name]
        print(f"  {label:24s} p50 {s['p50_ms']:9.3f} ms  p95 {s['p95_ms']:9.3f} ms  (n {s['n']})")
    return 0
