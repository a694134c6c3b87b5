"""The server's soak: one real ``attune serve`` (the embedded stack, no fakes) and many short WebSocket sessions
opened and closed against it, printing the server process's RSS as they go, to show whether memory stays flat
over sessions (the issue's target: within 50 MB over 200 sessions).

Each session streams one LibriVox utterance (real speech). Every ``--reply-every``-th one listens to the whole
reply; the others hang up soon after their speech, mid-reply, so the cancel and close paths are soaked too.
``--at-once`` sessions run side by side. RSS (VmRSS of the server, from /proc) is printed as one JSON line after
the first sessions and every ``--every`` sessions, then a summary whose growth is reckoned from the first reading
(``growth_mb``) and from the one after ``--warmup`` sessions (``growth_after_warmup_mb``: caches and the
allocator's pools filled). Memory, not time: it may run under nice.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python scripts/soak-server.py --sessions 200 --every 20 --model 0.5b
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attune.transports.client import ClientError, stream_file  # noqa: E402


def _deploy() -> Any:
    """bench-deploy.py's helpers (free port, start and wait for a process, the utterance)."""
    spec = importlib.util.spec_from_file_location("bench_deploy", REPO / "scripts" / "bench-deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def status_mb(pid: int, field: str = "VmRSS") -> float:
    """A size field of /proc/PID/status in MB: VmRSS, or its parts RssAnon (the heap) and RssFile (mapped model
    files, given back to the page cache under pressure)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return 0.0


def rss_mb(pid: int) -> float:
    return status_mb(pid)


async def one(url: str, samples: Any, rate: int, listen: bool) -> dict[str, Any]:
    """One session: the utterance, then the whole reply (``listen``) or a hang-up 1.5 s after the speech."""
    try:
        run = await stream_file(url, samples, rate, tail_max_s=20.0 if listen else 1.5)
    except ClientError as exc:
        return {"error": str(exc)}
    return {"done": [d.get("status") for d in run.of("response.done")], "audio": bool(run.chunks)}


async def soak(url: str, pid: int, args: argparse.Namespace, samples: Any, rate: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    tally = {"replied": 0, "cut": 0, "errors": 0}
    errors: dict[str, int] = {}
    started = 0

    def record(result: dict[str, Any]) -> None:
        if "error" in result:
            tally["errors"] += 1
            errors[result["error"]] = errors.get(result["error"], 0) + 1
        elif "completed" in result["done"]:
            tally["replied"] += 1
        else:
            tally["cut"] += 1

    while started < args.sessions:
        batch = min(args.at_once, args.sessions - started)
        results = await asyncio.gather(*(one(url, samples, rate, (started + i) % args.reply_every == 0)
                                         for i in range(batch)))
        for r in results:
            record(r)
        before = started
        started += batch
        if before == 0 or started // args.every > before // args.every or started == args.sessions:
            row = {"sessions": started, "rss_mb": rss_mb(pid), "anon_mb": status_mb(pid, "RssAnon"),
                   "file_mb": status_mb(pid, "RssFile"), **tally}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]["rss_mb"]
    rss = [r["rss_mb"] for r in rows]
    warm = next((r for r in rows if r["sessions"] >= args.warmup), rows[0])
    return {"summary": True, "sessions": started, "rss_first_mb": base, "rss_last_mb": rss[-1],
            "growth_after_warmup_mb": round(rss[-1] - warm["rss_mb"], 1),
            "anon_growth_after_warmup_mb": round(rows[-1]["anon_mb"] - warm["anon_mb"], 1),
            "file_growth_after_warmup_mb": round(rows[-1]["file_mb"] - warm["file_mb"], 1),
            "rss_min_mb": min(rss), "rss_max_mb": max(rss), "growth_mb": round(rss[-1] - base, 1),
            "spread_mb": round(max(rss) - min(rss), 1), **tally, "error_kinds": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--every", type=int, default=20, help="print the server's RSS every N sessions")
    ap.add_argument("--at-once", type=int, default=2, help="sessions side by side")
    ap.add_argument("--reply-every", type=int, default=4, help="every Nth session hears its whole reply")
    ap.add_argument("--warmup", type=int, default=20, help="sessions after which growth is reckoned again")
    ap.add_argument("--model", default="1.5b", choices=("0.5b", "1.5b"), help="the embedded LLM")
    args = ap.parse_args()
    if min(args.sessions, args.every, args.at_once, args.reply_every) < 1:
        raise SystemExit("--sessions, --every, --at-once and --reply-every must be >= 1")
    deploy = _deploy()
    tmp = Path(tempfile.mkdtemp(prefix="attune-soak-"))
    port = deploy.free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ATTUNE_LLM__MODEL": f"qwen2.5-{args.model}",
           "ATTUNE_SERVER__MAX_SESSIONS": str(max(8, 2 * args.at_once)),
           "ATTUNE_SERVER__MAX_REPLYING": "100",  # memory is soaked here, not admission: no session is refused
           "ATTUNE_PERSONAS__DATA_DIR": str(tmp / "personas"), "ATTUNE_SPEECH_CACHE__DIR": str(tmp / "speech")}
    samples, rate = deploy.utterance()
    with contextlib.ExitStack() as stack:
        proc = stack.enter_context(deploy.started([sys.executable, "run_agent.py", "--log-level", "WARNING",
                                                   "serve", "--port", str(port)], env, tmp / "serve.log"))
        deploy.wait_http(f"http://127.0.0.1:{port}/health", proc, 600)
        print(json.dumps({"sessions": 0, "rss_mb": round(rss_mb(proc.pid), 1), "note": "started, no session yet"}),
              flush=True)
        print(json.dumps(asyncio.run(soak(f"ws://127.0.0.1:{port}/ws", proc.pid, args, samples, rate))), flush=True)
    print(f"log in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
