"""The soak benchmark, ``bench-soak``: many turns through one session of the real embedded stack (no fakes),
printing the process's RSS every few turns, to show whether memory stays flat over a long conversation."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import replace
from typing import Any

from attune.config import Config
from attune.core.errors import AttuneError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-soak", help="RSS over many turns of one session through the real embedded stack")
    p.add_argument("--turns", type=int, default=200, help="turns to hold (default 200)")
    p.add_argument("--every", type=int, default=20, help="print RSS every N turns (default 20)")
    p.add_argument("--max-tokens", type=int, default=0,
                   help="longest reply in tokens (default 0: llm.max_tokens, as in a conversation); fewer tokens "
                        "make a turn cheaper on a busy machine")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(handler=cmd_bench_soak)


def cmd_bench_soak(args: argparse.Namespace, config: Config) -> int:
    if args.turns < 1 or args.every < 1:
        raise AttuneError("--turns and --every must be at least 1")
    if args.max_tokens < 0:
        raise AttuneError("--max-tokens must be 0 (the configured llm.max_tokens) or more")
    if args.max_tokens:
        config = replace(config, llm=replace(config.llm, max_tokens=args.max_tokens))
    result = asyncio.run(_soak(config, args.turns, args.every, quiet=args.json))
    if args.json:
        print(json.dumps(result))
    return 0 if result["turns_completed"] else 1


async def _soak(config: Config, turns: int, every: int, *, quiet: bool) -> dict[str, Any]:
    """The demo's two spoken utterances (real Piper speech) alternated as the user's turns, each streamed as
    fast as the session takes it, the agent answering each in full before the next."""
    from attune.commands.conversation import demo_utterances
    from attune.core.process_memory import release_free_memory
    from attune.pipeline.session import Session
    from attune.pipeline.stack import build_backends, warm_up
    from attune.transports.file import stream_file
    from attune_lab.rss import peak_rss_mb, rss_mb, slope_per_100

    utterances = await asyncio.to_thread(demo_utterances, config)  # as the demo: rendered before the stack loads
    release_free_memory()
    backends = build_backends(config)
    await warm_up(backends, config)
    release_free_memory()
    samples: list[dict[str, float]] = [{"turn": 0, "rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                                        "elapsed_s": 0.0}]
    if not quiet:
        print(f"after warm-up: RSS {samples[0]['rss_mb']} MiB (peak {samples[0]['peak_rss_mb']} MiB); "
              f"{turns} turns, RSS every {every}, replies up to {config.llm.max_tokens} tokens; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    async with Session(config, backends) as session:
        for i in range(1, turns + 1):
            await stream_file(session, utterances[i % len(utterances)], speed=0.0)
            if i % every == 0 or i == turns:
                elapsed = time.perf_counter() - t0
                row = {"turn": i, "rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                       "elapsed_s": round(elapsed, 1), "completed": len(session.turns),
                       "s_per_turn": round((elapsed - samples[-1]["elapsed_s"]) / (i - samples[-1]["turn"]), 1),
                       "load1": round(os.getloadavg()[0], 2)}
                samples.append(row)
                if not quiet:
                    print(f"turn {i:4d}: RSS {row['rss_mb']:7.1f} MiB, peak {row['peak_rss_mb']:7.1f} MiB, "
                          f"{row['completed']} replies, {row['elapsed_s']} s ({row['s_per_turn']} s a turn, "
                          f"load {row['load1']:.1f})", flush=True)
    after_first = samples[1:]  # the warm-up reading is before the conversation's bounded state has filled
    growth = samples[-1]["rss_mb"] - samples[1]["rss_mb"] if len(samples) > 2 else 0.0
    slope = slope_per_100([(s["turn"], s["rss_mb"]) for s in after_first])
    result = {"turns": turns, "turns_completed": len(session.turns), "samples": samples,
              "rss_growth_mb_after_first_sample": round(growth, 1), "rss_slope_mb_per_100_turns": round(slope, 1),
              "peak_rss_mb": round(peak_rss_mb(), 1), "load1": round(os.getloadavg()[0], 2)}
    if not quiet:
        print(f"{len(session.turns)} replies in {turns} turns; RSS slope {slope:+.1f} MiB per 100 turns (least "
              f"squares from turn {samples[1]['turn']}), growth {growth:+.1f} MiB, peak {result['peak_rss_mb']} MiB",
              flush=True)
    return result
