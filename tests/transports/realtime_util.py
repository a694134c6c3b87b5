"""Helpers for the ``/v1/realtime`` tests: 24 kHz speech as base64, and a reader that keeps every server event and
validates it against the official SDK's own models (``openai.types.realtime``) or, for Attune's extensions, against
``docs/realtime-extensions.schema.json``."""

from __future__ import annotations

import asyncio
import base64
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "realtime-extensions.schema.json"
RATE = 24000


def tone_speech(seconds: float, rate: int = RATE) -> np.ndarray:
    """What the fake stack's energy VAD hears as speech (the tests' ``speech_frame``, at ``rate``)."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)


def b64(samples: np.ndarray) -> str:
    return base64.b64encode((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()).decode()


def sdk_models() -> dict[str, Any]:
    """The SDK's server-event models by their ``type``."""
    from openai.types.realtime import RealtimeServerEvent

    union = typing.get_args(RealtimeServerEvent)[0]
    out = {}
    for model in typing.get_args(union):
        kind = typing.get_args(model.model_fields["type"].annotation)[0]
        out[kind] = model
    return out


@dataclass
class Received:
    """Every server event in order, each validated as it arrived (``invalid`` lists the ones that did not)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    extensions: list[dict[str, Any]] = field(default_factory=list)
    _models: dict[str, Any] = field(default_factory=sdk_models)
    _schema: Any = None

    def check(self, obj: dict[str, Any]) -> None:
        import jsonschema

        if self._schema is None:
            self._schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
        kind = obj.get("type", "")
        model = self._models.get(kind)
        try:
            if model is not None:
                model.model_validate(obj)
            if model is None or "attune" in obj or "attune" in obj.get("session", {}):
                self.extensions.append(obj)
                jsonschema.validate(obj, self._schema)
        except Exception as exc:  # noqa: BLE001 - collected, asserted by the test
            self.invalid.append(f"{kind}: {str(exc)[:400]}")
        self.events.append(obj)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait(self, kind: str, count: int = 1, timeout_s: float = 15.0, **match: Any) -> dict[str, Any]:
        for _ in range(int(timeout_s * 100)):
            found = [e for e in self.of(kind) if all(_get(e, k) == v for k, v in match.items())]
            if len(found) >= count:
                return found[count - 1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} x{count} {match} within {timeout_s} s; got {self.types()}")


def _get(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("__"):
        obj = obj.get(part) if isinstance(obj, dict) else None  # type: ignore[assignment]
    return obj


async def read_sdk(conn: Any, got: Received) -> None:
    """Read an SDK connection's raw events until it closes."""
    try:
        while True:
            got.check(json.loads(await conn.recv_bytes()))
    except Exception:  # noqa: BLE001 - the connection closed
        return


async def read_ws(ws: Any, got: Received) -> None:
    try:
        async for message in ws:
            got.check(json.loads(message))
    except Exception:  # noqa: BLE001 - the connection closed
        return
