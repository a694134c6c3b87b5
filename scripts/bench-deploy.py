"""docs/DEPLOY.md's arrangement on this machine, measured: one shared LLM server (scripts/llm-server.sh), W
``serve`` workers using it (``llm.backend: openai``), nginx in front with DEPLOY.md's block, and N reference
clients at once through nginx, each streaming one LibriVox utterance in real time and then listening.

Prints how many conversations were admitted (the handshake went through) and refused (HTTP 503 with
Retry-After, at once), how many turns were answered, refused aloud (``server_busy``, at once) or failed, how many
admitted turns got neither a reply, a refusal nor an end as noise (``noise``: an empty transcript; ``unanswered``:
the target is 0), and the voice-to-voice latency
of the answered ones (p50/p95) and its p95 over the single-session figure of the same run (``p95_over_single``:
the target is <= 2; give N = 1 first, or several times: the mean of the N = 1 runs so far); for an unanswered
turn, how long the client waited after the server ended it (``unanswered_waited_s``: the reference client
waits ``client.ANSWER_PATIENCE_S`` of quiet). The workers share one admission ledger
(``server.admission_ledger``); ``--no-ledger`` leaves each to count its own replies, as before it existed. A
benchmark prints figures; it asserts nothing. Run it on a quiet machine:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench-deploy.py --workers 2 --sessions 1,5,10,20 --model 0.5b
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attune.core.stats import percentile  # noqa: E402
from attune.transports.client import ClientError, ClientRun, stream_file  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} stopped with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a loopback URL we made
                return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")


@contextlib.contextmanager
def started(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def llm_health(port: int) -> dict[str, Any]:
    """A worker's admission figures from its ``/health`` (read from the 503 body too: full or draining)."""
    import urllib.error

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:  # noqa: S310 - loopback
            report = json.load(r)
    except urllib.error.HTTPError as exc:
        report = json.load(exc)
    llm = report["engines"]["llm"]
    return {k: llm.get(k) for k in ("capacity", "derived_capacity", "capacity_cut", "capacity_reason", "hold_s",
                                    "voice_to_voice_s", "listen_cost_s", "served", "refused_total")}


def seed_cut(ledger: Path, cut: int) -> None:
    """The host's governor state as after ``cut`` misses (``--cut``): its places come back as replies with room
    for one more are heard (``pipeline.governor``)."""
    from attune.pipeline.admission_ledger import AdmissionLedger
    from attune.pipeline.shared_llm import GOVERNOR_FIGURES

    book = AdmissionLedger(ledger)
    book.update(GOVERNOR_FIGURES, lambda _: {"capacity_cut": float(cut), "capacity_fits": 0.0,
                                             "capacity_cuts": float(cut)})
    book.close()


def nginx_conf(tmp: Path, workers: list[int], port: int) -> Path:
    block = re.search(r"```nginx\n(.*?)```", (REPO / "docs" / "DEPLOY.md").read_text(), flags=re.S)
    if block is None:
        raise SystemExit("docs/DEPLOY.md has no nginx block")
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in workers)
    text = re.sub(r"(    server 127\.0\.0\.1:\d+[^\n]*\n)+", servers + "\n", block.group(1))
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = tmp / "nginx.conf"
    temps = "\n".join(f"    {k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx.log warn;\n"
                    f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temps}\n{text}\n}}\n")
    return conf


def utterance() -> tuple[Any, int]:
    import soundfile as sf

    clips = sorted(Path("/usr/share/pocketsphinx/test/data/librivox").glob("*.wav"), key=lambda p: p.stat().st_size)
    if not clips:
        raise SystemExit("no LibriVox clips: apt-get install pocketsphinx-testdata")
    samples, rate = sf.read(str(clips[0]), dtype="float32")
    return samples, int(rate)


async def crowd(url: str, n: int, tail_s: float, traces: bool = False) -> dict[str, Any]:
    samples, rate = utterance()

    async def one(i: int) -> ClientRun | str:
        await asyncio.sleep(0.05 * i)
        try:
            return await stream_file(url, samples, rate, tail_max_s=tail_s)
        except ClientError as exc:
            return str(exc)

    t0 = time.monotonic()
    runs = await asyncio.gather(*(one(i) for i in range(n)))
    admitted = [r for r in runs if isinstance(r, ClientRun)]
    refused = [r for r in runs if isinstance(r, str) and "HTTP 503" in r]
    done = [d for r in admitted for d in r.of("response.done")]
    busy = [e for r in admitted for e in r.of("error") if e["error"]["code"] == "server_busy"]
    v2v = [float(d["trace"]["voice_to_voice_ms"]) for d in done if d.get("status") == "completed"
           and isinstance((d.get("trace") or {}).get("voice_to_voice_ms"), (int, float))]

    def pct(q: float) -> float:
        return round(percentile(v2v, q), 0) if v2v else float("nan")

    def noise(run: ClientRun) -> bool:
        """The server ended the turn as heard as noise (an empty transcript: no reply owed)."""
        return any(e.get("empty") for e in run.of("conversation.item.input_audio_transcription.completed"))

    def answered(run: ClientRun) -> bool:
        return any(d.get("status") == "completed" for d in run.of("response.done")) or any(
            e["error"]["code"] == "server_busy" for e in run.of("error")) or noise(run)

    def waited(run: ClientRun) -> float:
        """Seconds from the server's end of the turn to the client's hang-up (an unanswered turn's patience)."""
        stopped = [e["t"] for e in run.of("input_audio_buffer.speech_stopped")]
        end = run.stream_time(run.sent_at[-1]) if run.sent_at else 0.0
        return round(end - stopped[-1], 1) if stopped else float("nan")

    def detail(d: dict[str, Any]) -> dict[str, Any]:
        """A replied turn's latency parts (ms after the end of speech) and how long it waited for the LLM."""
        tr = d.get("trace") or {}
        lat = tr.get("latency_ms") or {}
        return {"v2v": tr.get("voice_to_voice_ms"), "committed": lat.get("turn_committed"),
                "asr": lat.get("asr_done"), "first_token": lat.get("llm_first_token"),
                "clause": lat.get("first_sentence_ready"), "audio": lat.get("first_audio_out"),
                "queue_wait": tr.get("llm_queue_wait_ms"), "shed": bool(tr.get("speculation_shed")),
                "alone": bool(tr.get("admitted_alone")), "capacity": tr.get("admitted_capacity"),
                "listening": tr.get("admitted_listening"), "words": str(tr.get("reply_text") or "")[:60]}

    outcomes: dict[str, int] = {}
    for d in done:
        outcomes[str(d.get("status"))] = outcomes.get(str(d.get("status")), 0) + 1
    return {"sessions": n, "admitted": len(admitted), "refused_503": len(refused),
            "other_failures": n - len(admitted) - len(refused),
            "replied": sum(d.get("status") == "completed" for d in done), "server_busy": len(busy),
            "failed": sum(d.get("status") == "failed" for d in done) - len(busy),
            "noise": sum(noise(r) for r in admitted), "unanswered": sum(not answered(r) for r in admitted),
            "outcomes": outcomes,
            "unanswered_waited_s": [waited(r) for r in admitted if not answered(r)],
            "v2v_p50_ms": pct(50), "v2v_p95_ms": pct(95), "wall_s": round(time.monotonic() - t0, 1),
            "replies": [detail(d) for d in done if d.get("status") == "completed"] if traces else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sessions", default="1,5,10,20", help="comma-separated crowd sizes, run in turn")
    ap.add_argument("--model", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--tail", type=float, default=30.0, help="s a client listens after its utterance")
    ap.add_argument("--traces", action="store_true",
                    help="also print each replied turn's latency parts and its wait for the LLM")
    ap.add_argument("--no-ledger", action="store_true",
                    help="each worker counts only its own replies (no server.admission_ledger)")
    ap.add_argument("--cut", type=int, default=0,
                    help="start with the capacity governor's cut at this many places, as after that many misses "
                         "(written into the ledger before the first crowd), to watch replies give them back")
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="attune-deploy-"))
    llm_port, nginx_port = free_port(), free_port()
    workers = [free_port() for _ in range(args.workers)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ATTUNE_LLM__BACKEND": "openai",
           "ATTUNE_LLM__OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
           "ATTUNE_LLM__OPENAI_MODEL": f"qwen2.5-{args.model}-instruct",
           "ATTUNE_PERSONAS__DATA_DIR": str(tmp / "personas"), "ATTUNE_SPEECH_CACHE__DIR": str(tmp / "speech")}
    if not args.no_ledger:
        env["ATTUNE_SERVER__ADMISSION_LEDGER"] = str(tmp / "admission.sqlite3")
    with contextlib.ExitStack() as stack:
        llm = stack.enter_context(started(["bash", "scripts/llm-server.sh", args.model, str(llm_port)], env,
                                          tmp / "llm.log"))
        wait_http(f"http://127.0.0.1:{llm_port}/v1/models", llm, 600)
        for port in workers:
            proc = stack.enter_context(started([sys.executable, "run_agent.py", "--log-level", "INFO", "serve",
                                                "--port", str(port)], env, tmp / f"worker-{port}.log"))
            wait_http(f"http://127.0.0.1:{port}/health", proc, 600)
        front = stack.enter_context(started([nginx, "-p", str(tmp), "-c", str(nginx_conf(tmp, workers, nginx_port))],
                                            env, tmp / "nginx.out"))
        wait_http(f"http://127.0.0.1:{nginx_port}/health", front, 30)
        for port in workers:
            start = [ln for ln in (tmp / f"worker-{port}.log").read_text().splitlines() if "LLM:" in ln]
            print(f"worker {port}: {start[-1].split('INFO ')[-1] if start else 'no speed measured'}", flush=True)
        if args.cut > 0 and not args.no_ledger:
            seed_cut(tmp / "admission.sqlite3", args.cut)
            print(f"governor: {args.cut} place(s) cut before the first crowd: {json.dumps(llm_health(workers[0]))}",
                  flush=True)
        singles: list[float] = []  # every N = 1 run so far: one reply's first clause moves it by a second
        for n in (int(x) for x in args.sessions.split(",") if x.strip()):
            row = asyncio.run(crowd(f"ws://127.0.0.1:{nginx_port}/ws", n, args.tail, args.traces))
            if n == 1 and row["v2v_p50_ms"] == row["v2v_p50_ms"]:  # not NaN
                singles.append(row["v2v_p50_ms"])
            single = sum(singles) / len(singles) if singles else None
            row["p95_over_single"] = round(row["v2v_p95_ms"] / single, 2) if single else None
            health = llm_health(workers[0])  # on a ledger the host's capacity after this crowd
            row["capacity_after"] = {k: health[k] for k in ("capacity", "derived_capacity", "capacity_cut",
                                                            "capacity_reason", "listen_cost_s")}
            print(json.dumps(row), flush=True)
        for port in workers:
            print(f"worker {port}: {json.dumps(llm_health(port))}", flush=True)
    print(f"logs in {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
