"""The kiosk's ``GET /health`` over HTTP: a one-route Starlette app on uvicorn (the stack ``serve`` uses), in the
kiosk's own event loop. The kiosk owns the process's signals, so this server installs no handlers of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HEALTHY = ("ok", "starting")  # statuses answered with 200; degraded or stopping get 503


def health_app(snapshot: Callable[[], dict[str, Any]]) -> Starlette:
    """``GET /health``: ``snapshot()`` as JSON, 200 while the kiosk is ok or starting, else 503."""

    async def health(request: Request) -> Response:
        snap = snapshot()
        return JSONResponse(snap, status_code=200 if snap.get("status") in HEALTHY else 503)

    return Starlette(routes=[Route("/health", health)])


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers (the kiosk's SIGTERM handler stops it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_health(snapshot: Callable[[], dict[str, Any]], host: str, port: int, stop: asyncio.Event) -> None:
    """Answer ``GET /health`` on ``host:port`` until ``stop`` is set."""
    server = _QuietServer(uvicorn.Config(health_app(snapshot), host=host, port=port, lifespan="off",
                                         log_level="warning", log_config=None))
    task = asyncio.create_task(server.serve(), name="kiosk-health")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task
