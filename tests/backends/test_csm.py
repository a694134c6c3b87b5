"""The CSM service module with an injected fake engine, and the CSM client against it over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attune.backends.tts.csm_client import CSMClientTTS
from attune.backends.tts.csm_service import ContextSegment, create_app, load_reference_bank
from attune.core.audio import write_wav
from attune.core.errors import TTSError
from tests.conftest import tone
from tests.engines_util import serve

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends


class FakeCSM:
    """Stands in for Sesame's generator: 24 kHz audio whose length follows the text; records its context."""

    sample_rate = 24000
    device = "cpu-fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, list[ContextSegment]]] = []

    def generate(self, text: str, speaker: int, context: list[ContextSegment]) -> np.ndarray:
        self.calls.append((text, speaker, context))
        return tone(200, 0.05 * len(text), self.sample_rate)


@pytest.fixture()
def bank(tmp_path: Path) -> dict[str, ContextSegment]:
    write_wav(tmp_path / "sad.wav", tone(180, 1.0, 16000), 16000)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"references": [{"emotion": "sad", "file": "sad.wav", "text": "I miss her."},
                        {"emotion": "broken", "file": "missing.wav"}]}))
    return load_reference_bank(tmp_path, 24000)


def test_reference_bank_loads_and_tolerates_absence(bank: dict[str, ContextSegment], tmp_path: Path) -> None:
    assert set(bank) == {"sad"}
    assert bank["sad"].text == "I miss her." and len(bank["sad"].audio) == pytest.approx(24000, abs=2)
    assert load_reference_bank(tmp_path / "nowhere", 24000) == {}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    assert load_reference_bank(tmp_path / "bad", 24000) == {}


async def test_health_reports_the_service_state(bank: dict[str, ContextSegment]) -> None:
    async with serve(create_app(FakeCSM(), bank)) as url:
        health = await CSMClientTTS(url).health()
    assert health == {"status": "ok", "model_loaded": True, "device": "cpu-fake", "sample_rate": 24000,
                      "emotion_references_available": ["sad"]}


async def test_client_gets_24khz_audio_per_call_with_the_reference(bank: dict[str, ContextSegment]) -> None:
    """One request per call, for the text as given (the pipeline's splitter already cut it into sentences)."""
    engine = FakeCSM()
    async with serve(create_app(engine, bank)) as url:
        client = CSMClientTTS(url, speaker=1)
        chunks = [c async for c in client.synthesize("I am here. Take your time.", emotion="sad")]
        later = [c async for c in client.synthesize("It starts at 3 p.m. today.", emotion="sad")]
    assert [c.sample_rate for c in chunks + later] == [24000, 24000]
    assert chunks[0].duration_s == pytest.approx(0.05 * len("I am here. Take your time."), abs=0.01)
    texts = [c[0] for c in engine.calls]
    assert texts == ["I am here. Take your time.", "It starts at 3 p.m. today."]
    assert all(c[1] == 1 and c[2] == [bank["sad"]] for c in engine.calls)


async def test_unknown_emotion_is_a_non_retryable_error(bank: dict[str, ContextSegment]) -> None:
    async with serve(create_app(FakeCSM(), bank)) as url:
        with pytest.raises(TTSError, match="HTTP 400") as err:
            [c async for c in CSMClientTTS(url).synthesize("Hello.", emotion="ecstatic")]
    assert err.value.retryable is False


async def test_model_not_loaded_is_retryable() -> None:
    async with serve(create_app(None, {})) as url:
        client = CSMClientTTS(url)
        assert (await client.health())["model_loaded"] is False
        with pytest.raises(TTSError, match="HTTP 503") as err:
            [c async for c in client.synthesize("Hello.")]
    assert err.value.retryable is True


async def test_engine_crash_is_a_500_and_the_service_keeps_serving(bank: dict[str, ContextSegment]) -> None:
    class Flaky(FakeCSM):
        def generate(self, text: str, speaker: int, context: list[ContextSegment]) -> np.ndarray:
            if text.startswith("Crash"):
                raise RuntimeError("CUDA out of memory")
            return super().generate(text, speaker, context)

    async with serve(create_app(Flaky(), bank)) as url:
        client = CSMClientTTS(url)
        with pytest.raises(TTSError, match="out of memory") as err:
            [c async for c in client.synthesize("Crash now.")]
        assert err.value.retryable is True
        assert [c async for c in client.synthesize("Fine now.")]


async def test_service_rejects_bad_requests(bank: dict[str, ContextSegment]) -> None:
    import httpx

    async with serve(create_app(FakeCSM(), bank)) as url, httpx.AsyncClient() as http:
        assert (await http.post(f"{url}/synthesize", content=b"nope")).status_code == 400
        assert (await http.post(f"{url}/synthesize", json={"text": ""})).status_code == 400
        assert (await http.post(f"{url}/synthesize", json={"text": "hi", "speaker": -1})).status_code == 400
        assert (await http.post(f"{url}/synthesize", json={"text": "x" * 5000})).status_code in (400, 413)


async def test_one_pooled_connection_and_one_retry_before_any_audio(bank: dict[str, ContextSegment]) -> None:
    """Sentences reuse one kept-alive connection; a request that fails retryably is tried once more (it played
    nothing), a second failure goes to the router, and a request the service refuses is not retried."""
    from aiohttp import web

    class FailsOnce(FakeCSM):
        def generate(self, text: str, speaker: int, context: list[ContextSegment]) -> np.ndarray:
            if text.startswith("Once") and not any(c[0] == text for c in self.calls):
                self.calls.append((text, speaker, context))
                raise RuntimeError("a transient CUDA error")
            return super().generate(text, speaker, context)

    engine = FailsOnce()
    app = create_app(engine, bank)
    peers: list[object] = []

    @web.middleware
    async def note_peer(request: web.Request, handler):  # type: ignore[no-untyped-def]
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername")[1])
        return await handler(request)

    app.middlewares.append(note_peer)
    async with serve(app) as url:
        client = CSMClientTTS(url)
        for text in ("One.", "Two.", "Three."):
            assert [c async for c in client.synthesize(text)]
        assert len(set(peers)) == 1 and client.pool.made == 1  # keep-alive: one connection for three sentences
        assert [c async for c in client.synthesize("Once more, please.")]
        assert client.requests == 5  # 3, then 1 failed + 1 retried
        assert client.with_reference(b"RIFF", "hi").pool is client.pool  # a persona's view shares the pool
        with pytest.raises(TTSError, match="HTTP 400"):
            [c async for c in client.synthesize("Hello.", emotion="ecstatic")]
        assert client.requests == 6  # refused, not retried
