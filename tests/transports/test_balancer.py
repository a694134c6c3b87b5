"""Two workers behind nginx, configured with the very block docs/DEPLOY.md gives (its ports and ``listen``
swapped for the test's): conversations go through it and spread over both workers, the Host and Origin gate
holds behind it (nginx passes the client's Host on), a draining worker's handshakes go to the other one, and
workers sharing an admission ledger admit no more replies together than its capacity. The workers run the fake
engines; skipped where nginx is not installed (``apt-get install nginx-light``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import ScriptedLLM
from tests.ws_util import FakeStack, Log, collect, connect, running_server, wait_for

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends
DOC = Path(__file__).resolve().parents[2] / "docs" / "DEPLOY.md"
PUBLIC = "voice.example.org"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")


def documented_block() -> str:
    found = re.search(r"```nginx\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert found, "docs/DEPLOY.md has no nginx block"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def nginx(tmp: Path, worker_ports: list[int]) -> AsyncIterator[int]:
    block = documented_block()
    documented = re.findall(r"server 127\.0\.0\.1:(\d+)", block)
    assert len(documented) == len(worker_ports) == 2
    for old, new in zip(documented, worker_ports, strict=True):
        block = block.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    port = _free_port()
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{block}
}}
""")
    assert NGINX is not None
    proc = await asyncio.create_subprocess_exec(NGINX, "-p", str(tmp), "-c", str(conf), stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            if proc.returncode is not None:
                raise AssertionError(f"nginx stopped: {(await proc.stderr.read()).decode() if proc.stderr else ''}")
            await asyncio.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _typed(text: str) -> str:
    return json.dumps({"type": "conversation.item.create", "text": text})


async def _conversation(port: int, origin: str | None) -> Log:
    """A conversation through nginx at ``port`` addressed to the public name (the socket goes to 127.0.0.1)."""
    log = Log()
    kw: dict[str, Any] = {"sock": socket.create_connection(("127.0.0.1", port))}
    if origin is not None:
        kw["origin"] = origin
    async with connect(f"ws://{PUBLIC}:{port}/ws", **kw) as ws:
        reader = asyncio.create_task(collect(ws, log))
        await wait_for(log, "session.created")
        await ws.send(_typed("Hello there."))
        await wait_for(log, "response.done", 20)
        await ws.close()
        await reader
    return log


def _sessions(worker: Any) -> int:
    """Sessions a worker has opened, from its /metrics text."""
    found = re.search(r"^attune_sessions_total (\S+)$", worker.attune.metrics.render().decode(), flags=re.M)
    assert found
    return int(float(found[1]))


async def test_two_workers_behind_the_documented_nginx(tmp_path: Path) -> None:
    stack = FakeStack(llm=ScriptedLLM(delay_s=0.01))
    settings = {"allowed_hosts": [PUBLIC]}
    async with running_server(stack, server=settings) as a, running_server(stack, server=settings) as b, \
            nginx(tmp_path, [a.port, b.port]) as port:
        # A browser on the public page: Host and Origin are the public name (nginx passes Host on).
        page = {"Host": PUBLIC}
        logs = await asyncio.gather(*(_conversation(port, f"http://{PUBLIC}") for _ in range(4)))
        assert all(lg.of("response.done")[0]["status"] == "completed" for lg in logs)
        served = [_sessions(w) for w in (a, b)]
        assert sum(served) == 4 and min(served) >= 1, served  # least_conn spread them
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.get("/health", headers=page)).status_code == 200
            rebound = await c.get("/v1/personas", headers={"Host": f"evil.example:{port}"})
            assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_allowed"
            post = await c.post("/v1/personas", headers={**page, "Origin": "https://evil.example"},
                                json={"id": "pwned"})
            assert post.status_code == 403 and post.json()["error"]["code"] == "origin_not_allowed"
            own = await c.post("/v1/personas", headers={**page, "Origin": f"http://{PUBLIC}"}, json={"id": "desk"})
            assert own.status_code == 201
        with pytest.raises(Exception, match="403"):
            await _conversation(port, "https://evil.example")
        # One worker drains: every handshake nginx gives it is answered 503 at once and tried on the other.
        a.attune.draining = True
        before = _sessions(b)
        logs = await asyncio.gather(*(_conversation(port, None) for _ in range(3)))
        a.attune.draining = False
        after = _sessions(b)
    assert all(lg.of("response.done") for lg in logs) and after - before == 3


async def _turn_at(port: int, ready: asyncio.Event, go: asyncio.Event) -> Log:
    """A conversation through nginx that sets ``ready`` once open and sends its turn when ``go`` is set; its log
    (refused turns included)."""
    log = Log()
    async with connect(f"ws://{PUBLIC}:{port}/ws", sock=socket.create_connection(("127.0.0.1", port))) as ws:
        reader = asyncio.create_task(collect(ws, log))
        await wait_for(log, "session.created")
        ready.set()
        await go.wait()
        await ws.send(_typed("Hello there."))
        await wait_for(log, "response.done", 20)
        await ws.close()
        await reader
    return log


async def test_workers_sharing_a_ledger_admit_its_capacity_together(tmp_path: Path) -> None:
    """Four conversations, two on each worker, speak at once with a capacity of two replies: alone each worker
    would take its two; on one ledger two are answered and two refused at once (server_busy), and every turn that
    was admitted is answered."""
    stack = FakeStack(llm=ScriptedLLM(delay_s=0.1))
    settings = {"allowed_hosts": [PUBLIC], "max_replying": 2, "admission_ledger": str(tmp_path / "admission.db")}
    async with running_server(stack, server=settings) as a, running_server(stack, server=settings) as b, \
            nginx(tmp_path, [a.port, b.port]) as port:
        go, ready = asyncio.Event(), [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(_turn_at(port, r, go)) for r in ready]
        await asyncio.gather(*(r.wait() for r in ready))
        assert (_sessions(a), _sessions(b)) == (2, 2)
        go.set()
        logs = await asyncio.gather(*tasks)
    status = sorted(lg.of("response.done")[0]["status"] for lg in logs)
    busy = [lg for lg in logs if any(e["error"]["code"] == "server_busy" for e in lg.of("error"))]
    assert status == ["completed", "completed", "failed", "failed"] and len(busy) == 2
    assert all(lg.of("error")[0]["retry_after_s"] > 0 for lg in busy)
