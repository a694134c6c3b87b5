"""Interleaved latency A/B of the two wire formats over one running ``serve``: each utterance goes once through
``/ws`` (binary 16 kHz PCM) and once through ``/v1/realtime`` (the official ``openai`` SDK, base64 24 kHz), the
order alternating, streamed in real time with silence after it. Prints, per route, the server's voice-to-voice
latency (its trace: end of speech -> first reply audio) and the client's (last speech sample sent -> first reply
audio received), p50 / p95 over the files, and the A-B difference with its run-to-run spread.

Usage: .venv/bin/python run_agent.py serve &  then
       .venv/bin/python scripts/bench-realtime.py UTTERANCE_DIR [--url http://127.0.0.1:8765] [--rounds 1]
(UTTERANCE_DIR: ``scripts/make-pause-utterances.py OUT_DIR``'s WAVs.) Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect

from attune.core.audio import load_wav, resample

FRAME_S = 0.02
TAIL_S = 2.0  # s of silence after the speech (the end-of-turn wait is part of voice-to-voice)
TIMEOUT_S = 60.0


async def _until(deadline: float, reader: asyncio.Task[None]) -> None:
    """Real-time pacing against an absolute schedule (sleeps do not drift); silence stops once the reply is done."""
    if reader.done():
        return
    await asyncio.sleep(max(0.0, deadline - time.perf_counter()))


def _pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


async def via_ws(url: str, audio16: np.ndarray) -> tuple[float | None, float | None]:
    async with connect(url.replace("http", "ws", 1) + "/ws", max_size=None) as ws:
        await ws.recv()
        step = int(16000 * FRAME_S)
        padded = np.concatenate([audio16, np.zeros(int(TAIL_S * 16000), np.float32)])
        first: float | None = None
        server_v2v = None

        async def read() -> None:
            nonlocal first, server_v2v
            async for message in ws:
                if isinstance(message, bytes):
                    first = first or time.perf_counter()
                elif json.loads(message).get("type") == "response.done":
                    server_v2v = json.loads(message).get("trace", {}).get("voice_to_voice_ms")
                    return

        reader = asyncio.create_task(read())
        t0 = time.perf_counter()
        sent_end = t0 + len(audio16) / 16000  # when the speech ended, in real time
        for n, i in enumerate(range(0, len(padded), step)):
            await ws.send(_pcm16(padded[i:i + step]))
            await _until(t0 + (n + 1) * FRAME_S, reader)
        await asyncio.wait_for(reader, TIMEOUT_S)
    client = None if first is None else 1000 * (first - sent_end)
    return server_v2v, client


async def via_realtime(url: str, audio24: np.ndarray) -> tuple[float | None, float | None]:
    import openai

    client = openai.AsyncOpenAI(api_key="bench", base_url=url + "/v1")
    async with client.realtime.connect(model="attune") as conn:
        step = int(24000 * FRAME_S)  # the same 20 ms framing as /ws, so the two differ only in the wire format
        padded = np.concatenate([audio24, np.zeros(int(TAIL_S * 24000), np.float32)])
        first: float | None = None
        server_v2v = None

        async def read() -> None:
            nonlocal first, server_v2v
            while True:
                event = json.loads(await conn.recv_bytes())
                if event["type"] == "response.output_audio.delta":
                    first = first or time.perf_counter()
                elif event["type"] == "response.done":
                    server_v2v = event.get("attune", {}).get("voice_to_voice_ms")
                    return

        reader = asyncio.create_task(read())
        t0 = time.perf_counter()
        sent_end = t0 + len(audio24) / 24000
        for n, i in enumerate(range(0, len(padded), step)):
            await conn.input_audio_buffer.append(audio=base64.b64encode(_pcm16(padded[i:i + step])).decode())
            await _until(t0 + (n + 1) * FRAME_S, reader)
        await asyncio.wait_for(reader, TIMEOUT_S)
    client_ms = None if first is None else 1000 * (first - sent_end)
    return server_v2v, client_ms


def _row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:28s} n=0"
    q = np.percentile(values, [50, 95])
    return f"{name:28s} n={len(values):3d}  p50 {q[0]:7.1f} ms  p95 {q[1]:7.1f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--url", default="http://127.0.0.1:8765")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    files = sorted(args.folder.glob("*.wav"))
    results: dict[str, dict[str, list[float]]] = {r: {"server": [], "client": []} for r in ("ws", "realtime")}
    diffs: list[float] = []
    for n in range(args.rounds):
        for k, wav in enumerate(files):
            samples, rate = load_wav(wav)
            a16 = resample(samples, rate, 16000).astype(np.float32) if rate != 16000 else samples
            a24 = resample(samples, rate, 24000).astype(np.float32)
            order = ("ws", "realtime") if (k + n) % 2 == 0 else ("realtime", "ws")
            pair: dict[str, float | None] = {}
            for route in order:
                server, client = await (via_ws(args.url, a16) if route == "ws" else via_realtime(args.url, a24))
                for kind, value in (("server", server), ("client", client)):
                    if value is not None:
                        results[route][kind].append(float(value))
                pair[route] = client
                print(f"{wav.name} {route:8s} server v2v {server} ms, client {client and round(client, 1)} ms",
                      flush=True)
            if pair.get("ws") is not None and pair.get("realtime") is not None:
                diffs.append(float(pair["realtime"]) - float(pair["ws"]))  # type: ignore[arg-type]
    print()
    for route in ("ws", "realtime"):
        for kind in ("server", "client"):
            print(_row(f"{route} {kind} voice-to-voice", results[route][kind]))
    if len(diffs) > 1:
        print(f"realtime - ws (client, paired): median {statistics.median(diffs):+.1f} ms, "
              f"spread (stdev) {statistics.stdev(diffs):.1f} ms over {len(diffs)} pairs")


if __name__ == "__main__":
    asyncio.run(main())
