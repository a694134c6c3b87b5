"""Server subcommands: ``serve`` (the WebSocket server and web client) and ``client`` (the reference client: a WAV
file in, the reply audio and the event log out)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from attune.config import Config
from attune.core.audio import SAMPLE_RATE, load_wav, prepare, write_wav

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


async def _serve(args: argparse.Namespace, config: Config) -> int:
    import uvicorn  # noqa: F401 - fail early with the install hint below if it is missing

    from attune.agent.persona_store import PersonaStore
    from attune.pipeline.stack import build_backends, for_session, lone_voice_to_voice_s, warm_up
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
    timings = await warm_up(base, config, admission=True)
    engines = Engines(config, lambda: for_session(config, base), llm=base.llm, tts=base.tts, asr=base.asr)
    attune = AttuneServer(engines, tokens=tokens, personas=personas, bound_host=host)
    if "llm_s_per_token" in timings:  # admission (server.max_replying 0) reckons from the measured speeds
        shared = attune.shared_llm
        hold = shared.calibrate_from_speed(timings["llm_s_per_token"], config.llm.max_tokens)
        lone = lone_voice_to_voice_s(config, base.measured.llm_speed, timings.get("asr_pass_s", 0.0),
                                     timings.get("first_clause_speech_s"))
        shared.calibrate_voice(lone or 0.0)
        listen = shared.calibrate_listening(timings.get("end_of_turn_cpu_s", 0.0))
        log.info("LLM: %.0f ms a token, a reply about %.1f s; a lone voice-to-voice about %.1f s (first token "
                 "%.0f ms, first clause made audible %.0f ms); a listening session about %.0f ms: %d replies "
                 "prepared or waiting at once", 1000 * timings["llm_s_per_token"], hold, lone or 0.0,
                 timings.get("llm_first_token_ms", 0.0), 1000 * timings.get("first_clause_speech_s", 0.0),
                 1000 * listen, shared.capacity)
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
    prewarming = asyncio.create_task(attune.personas.prewarm(base.voice.phrases), name="persona-prewarm")
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


def load_for_client(path: str) -> tuple[Any, int]:
    samples, rate = load_wav(path)
    if 8000 <= rate <= 48000:
        mono, _ = prepare(samples, rate, rate)
        return mono, rate
    mono, _ = prepare(samples, rate, SAMPLE_RATE)
    return mono, SAMPLE_RATE


def cmd_client(args: argparse.Namespace, config: Config) -> int:
    from attune.transports.client import stream_file

    samples, rate = load_for_client(args.input)
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

