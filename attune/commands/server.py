"""Server subcommands: ``serve`` (the WebSocket server and web client), ``client`` (the reference client: a WAV
file in, the reply audio and the event log out) and ``bench-load`` (N concurrent sessions against one server)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from attune.config import REPO_ROOT, Config
from attune.core.audio import SAMPLE_RATE, load_wav, prepare, write_wav
from attune.core.errors import AttuneError, AudioInputError

log = logging.getLogger(__name__)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("serve", help="the WebSocket server: /ws, the web client at /, /health, /metrics")
    p.add_argument("--host", default=None, help="address to bind (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: server.port, 8765; 0 = any free port)")
    p.add_argument("--llm-model", default=None, help="override llm.model (qwen2.5-1.5b | qwen2.5-0.5b)")
    p.set_defaults(handler=cmd_serve)
    p = sub.add_parser("client", help="stream a WAV file to a server in real time; save the reply and the events")
    p.add_argument("--url", required=True, help="ws://HOST:PORT/ws")
    p.add_argument("--input", required=True, help="WAV file (8-48 kHz; other rates are resampled to 16 kHz)")
    p.add_argument("--output", required=True, help="WAV of the reply audio, on the input's timeline")
    p.add_argument("--events", default=None, help="JSON-lines event log (default: OUTPUT with .events.jsonl)")
    p.add_argument("--token", default=None, help="bearer token (default: the first of $ATTUNE_TOKENS)")
    p.add_argument("--strategy", default=None, help="session.update strategy (match | complement | amplify | "
                                                     "neutral)")
    p.add_argument("--tail", type=float, default=30.0, help="s of silence streamed at most after the file")
    p.set_defaults(handler=cmd_client)
    p = sub.add_parser("bench-load", help="N concurrent real-time sessions: emotion lag and turn latency vs N")
    p.add_argument("--sessions", default="1,10,25,50", help="comma-separated session counts (e.g. 50)")
    p.add_argument("--input", default=None, help="utterance WAV (default: the shortest LibriVox clip of "
                                                 "pocketsphinx-testdata, 3 s)")
    p.add_argument("--url", default=None, help="an already running server; default: start `serve` on a free port")
    p.add_argument("--llm-model", default="qwen2.5-0.5b", help="llm.model of the started server")
    p.add_argument("--tail", type=float, default=15.0, help="s of silence each client streams at most after it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_load)


async def _serve(args: argparse.Namespace, config: Config) -> int:
    import uvicorn  # noqa: F401 - fail early with the install hint below if it is missing

    from attune.agent.persona_store import PersonaStore
    from attune.pipeline.stack import build_backends, for_session, warm_up
    from attune.transports.server import (
        AttuneServer,
        Engines,
        GracefulServer,
        check_bind,
        tokens_from_env,
        uvicorn_config,
    )

    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    tokens = tokens_from_env(config.server)
    check_bind(host, tokens, config.server.token_env)
    personas = PersonaStore.from_config(config)  # a corrupt database stops here, before the engines load
    personas.default_persona(config.personas.default_id)  # so does an unknown personas.default_id
    base = build_backends(config, emotion=False)
    timings = await warm_up(base, config)
    engines = Engines(config, lambda: for_session(config, base), llm=base.llm, tts=base.tts, asr=base.asr)
    attune = AttuneServer(engines, tokens=tokens, personas=personas, bound_host=host)
    if "llm_s_per_token" in timings:  # admission (server.max_replying 0) reckons from the LLM's measured speed
        hold = attune.shared_llm.calibrate_from_speed(timings["llm_s_per_token"], config.llm.max_tokens)
        log.info("LLM: %.0f ms a token, a reply about %.1f s: %d replies prepared or waiting at once",
                 1000 * timings["llm_s_per_token"], hold, attune.shared_llm.capacity)
    server = GracefulServer(uvicorn_config(attune.app, host, port, config.server), attune)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no "started" event
        await asyncio.sleep(0.05)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname()[1]
        print(f"serving on http://{host}:{bound}/ (WebSocket at ws://{host}:{bound}/ws)"
              f"{'; token auth on' if tokens else ''}", flush=True)
    # Every persona's greeting and acknowledgements, in its voice, rendered once the port is open (a first start
    # renders 4-5 s per persona; later starts find them on disk): a session that needs one first renders it itself.
    prewarming = asyncio.create_task(attune.personas.prewarm(base.phrases), name="persona-prewarm")
    try:
        await serving
    finally:
        prewarming.cancel()
        await asyncio.gather(prewarming, return_exceptions=True)
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    if args.llm_model:
        from dataclasses import replace

        config = replace(config, llm=replace(config.llm, model=args.llm_model))
    return asyncio.run(_serve(args, config))


def _load_for_client(path: str) -> tuple[Any, int]:
    samples, rate = load_wav(path)
    if 8000 <= rate <= 48000:
        mono, _ = prepare(samples, rate, rate)
        return mono, rate
    mono, _ = prepare(samples, rate, SAMPLE_RATE)
    return mono, SAMPLE_RATE


def cmd_client(args: argparse.Namespace, config: Config) -> int:
    from attune.transports.client import stream_file

    samples, rate = _load_for_client(args.input)
    token = args.token or next(iter(os.environ.get(config.server.token_env, "").split(",")), "") or None
    session = {"strategy": args.strategy} if args.strategy else None

    def show(event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "conversation.item.input_audio_transcription.completed":
            print(f"  you: {event['transcript']}")
        elif kind == "response.created":
            print(f"  strategy: {event.get('strategy')} -> expressing {event.get('expressed_emotion')}")
        elif kind == "response.output_audio_transcript.delta":
            print(f"  agent: {event['delta']}")
        elif kind == "response.done":
            print(f"  (turn {event['turn']} {event['status']}; voice-to-voice "
                  f"{event['trace'].get('voice_to_voice_ms')} ms)")
        elif kind == "error":
            print(f"  error [{event['error']['code']}]: {event['error']['message']}")
        sys.stdout.flush()

    run = asyncio.run(stream_file(args.url, samples, rate, token=token, tail_max_s=args.tail, session=session,
                                  on_event=show))
    write_wav(args.output, run.output(), run.output_rate)
    events_path = Path(args.events or str(Path(args.output).with_suffix("")) + ".events.jsonl")
    events_path.write_text("".join(json.dumps(e) + "\n" for e in run.events), encoding="utf-8")
    print(f"{len(run.of('response.done'))} repl(ies); audio in {args.output}, events in {events_path}; "
          f"closed {run.close_code}")
    return 0 if run.of("response.done") else 1


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
    from attune.transports.load import run_load

    counts = [int(n) for n in str(args.sessions).split(",") if n.strip()]
    samples, rate = _load_for_client(args.input or _default_utterance())
    eot = config.pipeline.end_of_turn_silence_ms
    results = []
    result_cpu: dict[int, tuple[int | None, float]] = {}
    ctx = contextlib.nullcontext((args.url, None)) if args.url else _server_process(args.llm_model, max(counts))
    with ctx as (url, pid):
        for n in counts:
            cpu0, t0 = _cpu_s(pid), time.perf_counter()
            result = asyncio.run(run_load(url, samples, rate, n, end_of_turn_ms=eot, tail_max_s=args.tail))
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
