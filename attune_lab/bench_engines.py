"""Engine benchmarks: ``bench-asr`` (real-time factor and WER on LibriVox clips), ``bench-llm`` (time to first
token and tokens/s) and ``bench-tts`` (real-time factor and time to first audio per provider)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from attune.backends.base import LLMBackend
from attune.commands.flags import renamed
from attune.config import Config
from attune.core.stats import percentile

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
_WORD_MAP = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-asr", help="ASR real-time factor and WER on pocketsphinx-testdata's LibriVox clips")
    p.add_argument("--data", default=str(LIBRIVOX_DIR), help="folder of LibriVox clips with their transcripts")
    renamed(p, "--asr-models", "--models", default="tiny.en,base", help="comma-separated Whisper models")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_asr)
    p = sub.add_parser("bench-llm", help="LLM time to first token and tokens/s, with and without prefix reuse")
    renamed(p, "--llm-model", "--model", default=None, help="qwen2.5-1.5b | qwen2.5-0.5b (default: llm.model)")
    p.add_argument("--turns", type=int, default=5, help="turns timed with and without prefix reuse")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_llm)
    p = sub.add_parser("bench-tts", help="TTS real-time factor and time to first audio per provider")
    p.add_argument("--providers", default="piper,espeak", help="comma-separated TTS providers")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_tts)


def normalize_words(text: str) -> list[str]:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
    return [_WORD_MAP.get(w, w) for w in words]


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (substitutions + insertions + deletions)."""
    prev = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def librivox_pairs(folder: Path) -> list[tuple[Path, str]]:
    """(wav, transcript) pairs from the ``transcription`` file (``<s> words </s> (fileid)`` lines)."""
    listing = folder / "transcription"
    if not listing.is_file():
        return []
    pairs = []
    for line in listing.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^)]+)\)\s*$", line)
        if m and (folder / f"{m.group(2)}.wav").is_file():
            pairs.append((folder / f"{m.group(2)}.wav", m.group(1).strip()))
    return pairs


def bench_asr(config: Config, folder: Path, model: str) -> dict[str, Any]:
    from attune.backends.asr.asr_factory import create_asr
    from attune.core.audio import load_wav
    from attune.core.frames import AudioChunk

    asr = create_asr(config, model=model)
    pairs = librivox_pairs(folder)
    errors = words = 0
    audio_s = compute_s = 0.0
    asr.transcribe(AudioChunk(*load_wav(pairs[0][0])))  # warm-up
    rtfs = []
    for wav, ref in pairs:
        samples, rate = load_wav(wav)
        t0 = time.perf_counter()
        hyp = asr.transcribe(AudioChunk(samples, rate)).text
        dt = time.perf_counter() - t0
        ref_words = normalize_words(ref)
        errors += word_errors(ref_words, normalize_words(hyp))
        words += len(ref_words)
        audio_s += len(samples) / rate
        compute_s += dt
        rtfs.append(dt / (len(samples) / rate))
    return {"model": model, "clips": len(pairs), "audio_s": round(audio_s, 2), "wer": round(errors / words, 4),
            "rtf": round(compute_s / audio_s, 4), "rtf_p95": round(percentile(rtfs, 95, empty=0.0), 4)}


def cmd_bench_asr(args: argparse.Namespace, config: Config) -> int:
    folder = Path(args.data)
    if not librivox_pairs(folder):
        print(f"no LibriVox clips in {folder} (apt-get install pocketsphinx-testdata)")
        return 1
    results = [bench_asr(config, folder, m) for m in args.asr_models.split(",")]
    _report(results, args.json, "ASR on pocketsphinx-testdata LibriVox clips")
    return 0


def _report(results: list[dict[str, Any]], as_json: bool, title: str) -> None:
    load1 = round(os.getloadavg()[0], 2)  # figures from a busy machine are read against this
    for r in results:
        r["load1"] = load1
    if as_json:
        print(json.dumps(results))
        return
    print(title)
    for r in results:
        print("  " + "  ".join(f"{k}={v}" for k, v in r.items()))


BENCH_SYSTEM = ("You are Attune, a warm and attentive voice companion. You listen closely to how people feel and "
                "answer in one or two short, kind sentences without lists or emoji. The user's emotion is given "
                "in brackets before their words; let it shape your tone, but never name it back to them.")
BENCH_TURNS = ("[sad] My dog died this morning.", "[anxious] I have a job interview tomorrow.",
               "[happy] I just passed my driving test!", "[tired] Work was so long today.",
               "[angry] My neighbour parked in my spot again.", "[calm] What a quiet evening.")


async def _llm_turns(llm: LLMBackend, turns: int, max_tokens: int) -> list[dict[str, float]]:
    from attune.backends.base import ChatMessage

    out: list[dict[str, float]] = []
    for i in range(turns):
        messages = [ChatMessage("system", BENCH_SYSTEM), ChatMessage("user", BENCH_TURNS[i % len(BENCH_TURNS)])]
        t0 = time.perf_counter()
        first = 0.0
        pieces = 0
        stream = llm.stream(messages, max_tokens=max_tokens, temperature=0.0)
        async for _ in stream:
            if pieces == 0:
                first = time.perf_counter() - t0
            pieces += 1
        total = time.perf_counter() - t0
        c = stream.completion
        out.append({"ttft": first, "tok_s": (pieces - 1) / max(total - first, 1e-6) if pieces > 1 else 0.0,
                    "prompt": c.prompt_tokens if c else 0, "reused": c.reused_tokens if c else 0})
    return out


def cmd_bench_llm(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.llm.llm_factory import create_llm

    model = args.llm_model or config.llm.model
    results = []
    for reuse in (False, True):
        llm = create_llm(config, backend="llama-cpp", model=model, prefix_cache=reuse)
        asyncio.run(_llm_turns(llm, 1, 8))  # warm-up (with reuse on, this also leaves the prefix cached)
        turns = asyncio.run(_llm_turns(llm, args.turns, 48))
        ttfts = [t["ttft"] * 1000 for t in turns]
        results.append({"model": model, "prefix_cache": reuse, "turns": len(turns),
                        "ttft_ms_p50": round(percentile(ttfts, 50, empty=0.0), 1),
                        "ttft_ms_p95": round(percentile(ttfts, 95, empty=0.0), 1),
                        "tok_s": round(statistics.mean(t["tok_s"] for t in turns), 1),
                        "prompt_tokens": round(statistics.mean(t["prompt"] for t in turns)),
                        "evaluated_tokens": round(statistics.mean(t["prompt"] - t["reused"] for t in turns))})
        del llm
    from attune_lab.engine_isa import engine_isa

    _report(results, args.json, f"LLM (llama-cpp, 2 threads, built for {engine_isa()['llama_cpp']})")
    return 0


BENCH_SENTENCES = ("I am so sorry to hear that.", "Your heart is hurting, and that is completely understandable.",
                   "Take a slow breath with me; we can go through tomorrow one step at a time.",
                   "That is wonderful news, congratulations!")


async def _bench_provider(router: Any, name: str) -> dict[str, Any]:
    firsts, rtfs = [], []
    for text in BENCH_SENTENCES:
        t0 = time.perf_counter()
        first = 0.0
        audio_s = 0.0
        async for chunk in router.synthesize(text, provider=name):
            if audio_s == 0.0:
                first = time.perf_counter() - t0
            audio_s += chunk.duration_s
        total = time.perf_counter() - t0
        firsts.append(first * 1000)
        rtfs.append(total / audio_s)
    return {"provider": name, "sentences": len(BENCH_SENTENCES),
            "first_audio_ms_p50": round(percentile(firsts, 50, empty=0.0), 1),
            "first_audio_ms_p95": round(percentile(firsts, 95, empty=0.0), 1), "rtf": round(statistics.mean(rtfs), 4)}


def cmd_bench_tts(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.tts.tts_factory import create_tts

    names = tuple(args.providers.split(","))
    router = create_tts(config, only=names)
    for name, why in router.unavailable.items():
        print(f"skipping {name}: {why}")

    async def run() -> list[dict[str, Any]]:
        results = []
        for name in router.providers:
            async for _ in router.synthesize("Warming up.", provider=name):
                pass
            results.append(await _bench_provider(router, name))
        return results

    _report(asyncio.run(run()), args.json, "TTS per provider (whole sentence per request)")
    return 0
