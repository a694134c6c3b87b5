"""The one gate every request to the server passes before a route sees it: ``Host`` against an allow-list (DNS
rebinding: a page whose name an attacker re-points at 127.0.0.1 sends its own name as ``Host``) on every route,
and ``Origin`` on every state-changing HTTP request and every WebSocket handshake (a page the user happens to
open may post to, or open a socket on, a server on their machine; only its ``Origin`` tells).

Pure: ``RequestGuard.check_request(scope)`` reads an ASGI scope and returns a ``Refusal`` or None, so any route
(``/ws``, ``/v1/realtime``, the persona API) can ask it again; ``GuardMiddleware`` asks it for the whole app and
answers the refusals (HTTP: ``{"error": {...}}`` with the status; WebSocket: the handshake's HTTP denial). Token
auth is the routes' own (``AttuneServer._authorized``); this gate is what protects a server without tokens.

Allowed hosts: the bound address, ``localhost``, ``127.0.0.1``, ``[::1]``, ``server.allowed_hosts`` (a leading
dot matches the subdomains too; ``*`` any) and the hosts of ``server.origins``; bound to a wildcard address
(``0.0.0.0``, ``::``) any IP literal too (an IP cannot be rebound). Allowed origins: ``server.origins`` (``*``
any), and the server's own: an origin whose host is allowed and equals the request's ``Host`` (port included).
A request without ``Origin`` is not a browser's and passes; ``Origin: null`` (sandboxed frames, files) does not.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the HTTP ``status``, an error ``code`` and a one-line ``message``."""

    status: int
    code: str
    message: str


def header(scope: Scope, name: str) -> str | None:
    """The first value of header ``name`` (lower case) in an ASGI scope, decoded as Latin-1."""
    key = name.encode("latin-1")
    for k, v in scope.get("headers") or ():
        if k.lower() == key:
            return bytes(v).decode("latin-1")
    return None


def _host_port(netloc: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (``[v6]:port`` too) -> (lower-case host without a trailing dot, port or None); None when
    it does not parse."""
    try:
        parts = urlsplit("//" + netloc.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query:
        return None
    return host.rstrip("."), port


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, the default port filled in; None when it is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    return scheme, host.rstrip("."), port if port is not None else DEFAULT_PORTS[scheme]


class RequestGuard:
    """The allow-lists of one server. ``bound_host``: the address it listens on."""

    def __init__(self, *, bound_host: str = "127.0.0.1", allowed_hosts: Iterable[str] = (),
                 origins: Iterable[str] = ()) -> None:
        origins = tuple(origins)
        self.any_origin = "*" in origins
        self.origins = {k for o in origins if o != "*" and (k := _origin_key(o)) is not None}
        names = [*LOCAL_HOSTS, bound_host, *allowed_hosts, *(h for _, h, _ in self.origins)]
        self.any_host = "*" in names
        cleaned = {n.strip().lower().strip("[]").rstrip(".") for n in names if n and n != "*"}
        self.suffixes = tuple(n for n in cleaned if n.startswith("."))
        self.hosts = frozenset(n for n in cleaned if not n.startswith("."))
        self.any_ip = bound_host.strip("[]") in WILDCARD_BINDS

    @classmethod
    def from_settings(cls, settings: Any, bound_host: str | None = None) -> RequestGuard:
        """From ``ServerConfig`` (``host``, ``allowed_hosts``, ``origins``); ``bound_host`` overrides ``host``."""
        return cls(bound_host=bound_host or settings.host, allowed_hosts=settings.allowed_hosts,
                   origins=settings.origins)

    def host_allowed(self, host: str) -> bool:
        """``host`` (a name or IP, no port) is one this server answers to."""
        host = host.lower().strip("[]").rstrip(".")
        if self.any_host or host in self.hosts:
            return True
        if any(host.endswith(s) or host == s[1:] for s in self.suffixes):
            return True
        return self.any_ip and _ip_literal(host)

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """A browser's ``Origin`` may talk to this server: listed, or the server's own page (an allowed host that
        is also the request's ``Host``, whose port defaults to the origin scheme's)."""
        if self.any_origin:
            return True
        key = _origin_key(origin)
        if key is None:  # "null", file://, chrome-extension://: never the server's own page
            return False
        if key in self.origins:
            return True
        scheme, host, port = key
        target = _host_port(host_header or "")
        if target is None or not self.host_allowed(host):
            return False
        return target[0] == host and (target[1] if target[1] is not None else DEFAULT_PORTS[scheme]) == port

    def check_request(self, scope: Scope) -> Refusal | None:
        """None when the request (an ASGI ``http`` or ``websocket`` scope) may go on to its route."""
        if scope.get("type") not in ("http", "websocket"):
            return None
        host = header(scope, "host")
        if host is not None:
            parsed = _host_port(host)
            if parsed is None:
                return Refusal(400, "bad_host", "the Host header does not parse")
            if not self.host_allowed(parsed[0]):
                return Refusal(403, "host_not_allowed", f"this server does not answer to {parsed[0][:64]!r} "
                                                        "(server.allowed_hosts)")
        changes_state = scope["type"] == "websocket" or str(scope.get("method", "GET")).upper() not in SAFE_METHODS
        origin = header(scope, "origin")
        if changes_state and origin is not None and not self.origin_allowed(origin, host):
            return Refusal(403, "origin_not_allowed", f"origin {origin[:80]!r} not allowed (server.origins)")
        return None


class GuardMiddleware:
    """ASGI middleware: ``guard.check_request`` for every request; a refusal is answered here and logged, the
    first of each code at info level and the rest at debug level (a page may send many; a client's bad request
    is not the server's error), and counted by ``on_refusal``."""

    def __init__(self, app: ASGIApp, guard: RequestGuard, on_refusal: Callable[[Refusal], None] | None = None) -> None:
        self.app = app
        self.guard = guard
        self.on_refusal = on_refusal
        self.logged: set[str] = set()  # refusal codes already logged at info level

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        refusal = self.guard.check_request(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        level = logging.DEBUG if refusal.code in self.logged else logging.INFO
        self.logged.add(refusal.code)
        log.log(level, "refused %s %s: %s%s", scope["type"], scope.get("path", ""), refusal.message,
                "" if level == logging.DEBUG else " (more of these are logged at debug level)")
        if self.on_refusal is not None:
            self.on_refusal(refusal)
        if scope["type"] == "websocket":
            await deny_websocket(scope, receive, send, refusal)
        else:
            await _http_refusal(send, refusal)


def refusal_body(refusal: Refusal) -> bytes:
    """The persona API's error shape: ``{"error": {"code", "field": null, "message"}}``."""
    return json.dumps({"error": {"code": refusal.code, "field": None, "message": refusal.message}}).encode()


async def _http_refusal(send: Callable[[Any], Awaitable[None]], refusal: Refusal,
                        extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = refusal_body(refusal)
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": body})


async def deny_websocket(scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]],
                         refusal: Refusal, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Refuse a WebSocket handshake with an HTTP response (the ``websocket.http.response`` extension), or a
    plain close (HTTP 403) where the server lacks it."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = refusal_body(refusal)
    await send({"type": "websocket.http.response.start", "status": refusal.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "websocket.http.response.body", "body": body})
