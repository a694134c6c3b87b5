"""The request gate on ASGI scopes alone: Host against the allow-list (DNS rebinding), Origin on state-changing
requests and WebSocket handshakes, an Origin that merely equals an attacker's Host refused, and what a reverse
proxy needs configured."""

from __future__ import annotations

from typing import Any

import pytest

from attune.transports.guard import RequestGuard

LAYER = "unit"


def scope(kind: str = "http", method: str = "GET", **headers: str) -> dict[str, Any]:
    return {"type": kind, "method": method, "path": "/",
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


def code(guard: RequestGuard, s: dict[str, Any]) -> str | None:
    refusal = guard.check_request(s)
    return None if refusal is None else refusal.code


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "127.0.0.1",
                                  "localhost.:8765"])
def test_loopback_names_are_served(host: str) -> None:
    assert code(RequestGuard(), scope(host=host)) is None


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "10.0.0.5:8765"])
def test_other_hosts_are_refused_on_every_route(host: str) -> None:
    guard = RequestGuard()
    assert code(guard, scope(host=host)) == "host_not_allowed"
    assert code(guard, scope("websocket", host=host)) == "host_not_allowed"
    assert guard.check_request(scope(host=host)).status == 403  # type: ignore[union-attr]


def test_an_origin_equal_to_an_attackers_host_does_not_pass() -> None:
    """DNS rebinding: the page at evil.example:8765 now resolves to 127.0.0.1; Host and Origin both name it."""
    guard = RequestGuard()
    s = scope("websocket", host="evil.example:8765", origin="http://evil.example:8765")
    assert code(guard, s) == "host_not_allowed"
    # Even where a proxy let every Host through, the Origin must be listed or an allowed host's.
    lax = RequestGuard(allowed_hosts=["*"])
    assert code(lax, scope("websocket", host="127.0.0.1:8765", origin="http://evil.example:8765")) == \
        "origin_not_allowed"


def test_origin_is_checked_on_state_changing_requests_and_websockets_only() -> None:
    guard = RequestGuard()
    evil = {"host": "127.0.0.1:8765", "origin": "https://evil.example"}
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert code(guard, scope(method=method, **evil)) == "origin_not_allowed"
    assert code(guard, scope("websocket", **evil)) == "origin_not_allowed"
    assert code(guard, scope(method="GET", **evil)) is None  # reading needs CORS, which this server never grants
    assert code(guard, scope(method="POST", host="127.0.0.1:8765")) is None  # no Origin: not a browser


@pytest.mark.parametrize(("origin", "host", "allowed"), [
    ("http://127.0.0.1:8765", "127.0.0.1:8765", True),  # the page this server serves
    ("http://localhost:8765", "localhost:8765", True),
    ("http://[::1]:8765", "[::1]:8765", True),
    ("http://localhost:3000", "localhost:8765", False),  # another local app's page
    ("http://localhost:8765", "127.0.0.1:8765", False),  # another origin, though both are loopback
    ("null", "127.0.0.1:8765", False),  # a sandboxed frame or a file
    ("file://", "127.0.0.1:8765", False),
])
def test_own_origin(origin: str, host: str, allowed: bool) -> None:
    got = code(RequestGuard(), scope(method="POST", host=host, origin=origin))
    assert (got is None) is allowed


def test_listed_origins_and_any() -> None:
    guard = RequestGuard(origins=["https://app.example"])
    assert code(guard, scope("websocket", host="127.0.0.1:8765", origin="https://app.example")) is None
    assert code(guard, scope("websocket", host="127.0.0.1:8765", origin="https://app.example:443")) is None
    assert code(guard, scope("websocket", host="127.0.0.1:8765", origin="http://app.example")) == \
        "origin_not_allowed"  # another scheme is another origin
    assert code(guard, scope(host="app.example")) is None  # a listed origin's host is served
    anyone = RequestGuard(origins=["*"])
    assert code(anyone, scope("websocket", host="127.0.0.1", origin="https://whoever.example")) is None


def test_behind_a_reverse_proxy() -> None:
    """nginx passing Host on (proxy_set_header Host $host) with TLS in front: the public name is allowed, and the
    page's https origin on the default port is the server's own."""
    guard = RequestGuard(allowed_hosts=["voice.example.org", ".clinic.example"])
    s = scope("websocket", host="voice.example.org", origin="https://voice.example.org")
    assert code(guard, s) is None
    assert code(guard, scope(host="kiosk1.clinic.example")) is None
    assert code(guard, scope(host="clinic.example")) is None
    assert code(guard, scope(host="evilclinic.example")) == "host_not_allowed"


def test_a_wildcard_bind_serves_ip_literals_but_not_names() -> None:
    guard = RequestGuard(bound_host="0.0.0.0")
    assert code(guard, scope(host="192.168.1.20:8765")) is None  # an IP cannot be rebound
    assert code(guard, scope(host="[fe80::1]:8765")) is None
    assert code(guard, scope(host="attune.lan:8765")) == "host_not_allowed"
    assert code(RequestGuard(bound_host="192.168.1.20"), scope(host="192.168.1.20:8765")) is None


@pytest.mark.parametrize("host", ["", "a b", "user@127.0.0.1", "127.0.0.1:notaport", "127.0.0.1/path"])
def test_a_host_that_does_not_parse_is_400(host: str) -> None:
    refusal = RequestGuard().check_request(scope(host=host))
    assert refusal is not None and refusal.status in (400, 403)


def test_lifespan_and_hostless_requests_pass() -> None:
    guard = RequestGuard()
    assert guard.check_request({"type": "lifespan"}) is None
    assert guard.check_request(scope()) is None  # HTTP/1.0 without Host: not a browser
