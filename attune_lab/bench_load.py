"""``bench-load``: N concurrent real-time sessions against one server (a started ``serve`` or ``--url``):
emotion lag, end-of-turn lag, voice-to-voice latency and the LLM queue's wait, against N."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from attune.commands.serve import load_for_client
from attune.config import REPO_ROOT, Config
from attune.core.errors import AttuneError, AudioInputError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-load", help="N concurrent real-time sessions: emotion lag and turn latency vs N")
    p.add_argument("--sessions", default="1,10,25,50", help="comma-separated session counts (e.g. 50)")
    p.add_argument("--input", default=None, help="utterance WAV (default: the shortest LibriVox clip of "
                                                 "pocketsphinx-testdata, 3 s)")
    p.add_argument("--url", default=None, help="an already running server; default: start `serve` on a free port")
    p.add_argument("--llm-model", default="qwen2.5-0.5b", help="llm.model of the started server")
    p.add_argument("--tail", type=float, default=15.0, help="s of silence each client streams at most after it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_load)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server_process(llm_model: str, max_sessions: int) -> Any:
    """``run_agent.py serve`` on a free port in a child process; yields its WebSocket URL once /health answers."""
    import httpx

    port = _free_port()
    env = {**os.environ, "ATTUNE_SERVER__MAX_SESSIONS": str(max(64, max_sessions)), "ATTUNE_LOGGING__LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "run_agent.py"), "serve", "--port", str(port),
                             "--llm-model", llm_model], env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise AttuneError(f"the server exited with {proc.returncode} before it answered /health")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            time.sleep(0.25)
        yield f"ws://127.0.0.1:{port}/ws", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _default_utterance() -> str:
    folder = Path("/usr/share/pocketsphinx/test/data/librivox")
    clips = sorted(folder.glob("*.wav"), key=lambda p: p.stat().st_size) if folder.is_dir() else []
    if not clips:
        raise AudioInputError("no --input given and no pocketsphinx-testdata clips found (apt-get install "
                              "pocketsphinx-testdata)")
    return str(clips[0])


def cmd_bench_load(args: argparse.Namespace, config: Config) -> int:
    from attune_lab.load_client import run_load

    counts = [int(n) for n in str(args.sessions).split(",") if n.strip()]
    samples, rate = load_for_client(args.input or _default_utterance())
    eot = config.pipeline.end_of_turn_silence_ms
    results = []
    result_cpu: dict[int, tuple[int | None, float]] = {}
    ctx = contextlib.nullcontext((args.url, None)) if args.url else _server_process(args.llm_model, max(counts))
    with ctx as (url, pid):
        for n in counts:
            cpu0, t0 = _cpu_s(pid), time.perf_counter()
            result = asyncio.run(run_load(url, samples, rate, n, end_of_turn_silence_ms=eot, tail_max_s=args.tail))
            cpu1, t1 = _cpu_s(pid), time.perf_counter()
            load = None if cpu0 is None or cpu1 is None else round(100.0 * (cpu1 - cpu0) / (t1 - t0))
            results.append(result)
            load1 = round(os.getloadavg()[0], 1)
            cpu_text = (f" | server CPU {load}% of one core" if load is not None else "") + f" | load1 {load1}"
            if args.json:
                result_cpu[n] = (load, load1)
            else:
                print(f"N={n:3d}: emotion lag p50/p95/max {_fmt(result.emotion_lag_ms)} ms | end-of-turn lag "
                      f"{_fmt(result.stop_lag_ms)} ms | voice-to-voice {_fmt(result.voice_to_voice_ms)} ms | LLM "
                      f"queue wait {_fmt(result.llm_wait_ms)} ms | {result.hops} hops, {result.turns} turns, "
                      f"{result.failures} failed | {'real time' if result.realtime else 'REAL TIME LOST'}{cpu_text}",
                      flush=True)
    lost = next((r.sessions for r in results if not r.realtime), None)
    if args.json:
        print(json.dumps({"results": [{**r.to_dict(), "server_cpu_pct": result_cpu[r.sessions][0],
                                       "load1": result_cpu[r.sessions][1]} for r in results],
                          "realtime_lost_at": lost}))
    else:
        print(f"real time lost at N={lost}" if lost else f"real time held up to N={max(counts)}")
    return 0


def _cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc (Linux); None elsewhere."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fmt(stats: tuple[float, float, float]) -> str:
    return "/".join("-" if math.isnan(v) else f"{v:.0f}" for v in stats)
