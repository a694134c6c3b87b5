"""The persona HTTP API over a real uvicorn server with the fake engines: the contract of docs/PROTOCOL.md (CRUD,
every error code, tokens, body caps enforced while reading, uploads raw and multipart, preview), the OpenAPI
document against the routes, and ``session.update`` with ``persona_id``."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from attune.core.audio import load_wav_bytes, wav_bytes
from tests.fakes import ToneTTS
from tests.ws_util import FakeStack, Log, collect, connect, running_server, talk, wait_for

LAYER = "fakes"

CLINIC = {"id": "clinic", "name": "Ada", "description": "Waiting-room kiosk", "traits": "You are Ada, calm.",
          "strategy": "match", "voice": {"provider": "piper", "fallback": ["espeak"], "pitch": 2.0, "speed": 0.9,
                                         "advanced": {"alpha": 0.3, "diffusion_steps": 5, "style": "warm"}}}


@pytest.fixture
async def api() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async with running_server() as srv, httpx.AsyncClient(base_url=srv.http, timeout=30) as client:
        yield srv, client


def _err(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "field", "message"}, body
    assert "\n" not in body["error"]["message"]
    return dict(body["error"])


def _speechlike(seconds: float = 8.0, rate: int = 24000) -> np.ndarray:
    """Voiced bursts (a 150 Hz buzz with harmonics, syllable-long) between quiet pauses: passes every rule but
    the VAD's, which a buzz does not fool."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12))
    gate = (np.sin(2 * np.pi * 1.5 * t) > 0).astype(np.float64)
    noise = np.random.default_rng(0).normal(0, 0.001, len(t))
    return (0.25 * buzz / np.abs(buzz).max() * gate + noise).astype(np.float32)


async def test_crud_roundtrip_and_seeded_default(api: Any) -> None:
    _, c = api
    listed = (await c.get("/v1/personas")).json()["personas"]
    assert [p["id"] for p in listed] == ["default"] and listed[0]["name"] == "Attune"
    created = await c.post("/v1/personas", json=CLINIC)
    assert created.status_code == 201
    body = created.json()
    assert body["voice"]["advanced"] == CLINIC["voice"]["advanced"] and body["voice"]["sample"] is None
    assert body["created_at"].endswith("Z") and body["created_at"] == body["updated_at"]
    assert (await c.get("/v1/personas/clinic")).json() == body
    assert [p["id"] for p in (await c.get("/v1/personas")).json()["personas"]] == ["clinic", "default"]
    replaced = await c.put("/v1/personas/clinic", json={**CLINIC, "name": "Ada B", "created_at": "ignored"})
    assert replaced.status_code == 200
    assert replaced.json()["name"] == "Ada B" and replaced.json()["created_at"] == body["created_at"]
    assert (await c.delete("/v1/personas/clinic")).status_code == 204
    assert _err(await c.get("/v1/personas/clinic"))["code"] == "not_found"


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "no id"}, "id"),
    ({"id": "Bad Id"}, "id"),
    ({"id": "x", "colour": "red"}, "colour"),
    ({"id": "x", "strategy": "sulk"}, "strategy"),
    ({"id": "x", "traits": "t" * 2001}, "traits"),
    ({"id": "x", "voice": {"speed": 3}}, "voice.speed"),
    ({"id": "x", "voice": {"pitch": "high"}}, "voice.pitch"),
    ({"id": "x", "voice": {"provider": "sam"}}, "voice.provider"),
    ({"id": "x", "voice": {"fallback": ["espeak", "nope"]}}, "voice.fallback.1"),
    ({"id": "x", "voice": {"quality": "ultra"}}, "voice.quality"),
    ({"id": "x", "voice": {"advanced": {"alpha": [1]}}}, "voice.advanced.alpha"),
    ({"id": "x", "voice": {"model": "voices/x.onnx"}}, "voice.model"),
    ({"id": "x", "voice": {"model": "../../etc/x.onnx"}}, "voice.model"),
    ({"id": "x", "voice": {"tempo": 1}}, "voice.tempo"),
    ([1, 2], "body"),
])
async def test_invalid_bodies_name_the_field(api: Any, body: Any, field: str) -> None:
    _, c = api
    resp = await c.post("/v1/personas", json=body)
    assert resp.status_code == 400
    err = _err(resp)
    assert (err["code"], err["field"]) == ("invalid", field)


async def test_conflicts_malformed_and_oversized(api: Any) -> None:
    _, c = api
    assert (await c.post("/v1/personas", json=CLINIC)).status_code == 201
    dup = await c.post("/v1/personas", json=CLINIC)
    assert dup.status_code == 409 and _err(dup)["code"] == "exists"
    bad = await c.post("/v1/personas", content=b'{"id": "x",', headers={"content-type": "application/json"})
    assert bad.status_code == 400 and _err(bad)["code"] == "malformed_json"
    big = await c.post("/v1/personas", json={"id": "x", "traits": "a" * 70000})
    assert big.status_code == 413 and _err(big)["code"] == "too_large"
    other = await c.put("/v1/personas/clinic", json={**CLINIC, "id": "other"})
    assert other.status_code == 400 and _err(other)["field"] == "id"
    assert (await c.put("/v1/personas/ghost", json={"name": "x"})).status_code == 404
    assert (await c.delete("/v1/personas/ghost")).status_code == 404
    assert (await c.delete("/v1/personas/default")).status_code == 204  # another exists
    last = await c.delete("/v1/personas/clinic")
    assert last.status_code == 409 and _err(last)["code"] == "last_persona"
    assert [p["id"] for p in (await c.get("/v1/personas")).json()["personas"]] == ["clinic"]


async def test_a_body_without_length_is_cut_off_at_the_cap(api: Any) -> None:
    """A chunked body (no Content-Length) is refused once it passes 64 KiB: over HTTP, and the reader stops
    pulling chunks there (an 80 MB body is not read to its end)."""
    from starlette.requests import Request

    from attune.transports.persona_api import MAX_JSON_BYTES, TooLarge, read_capped

    _, c = api

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 8192

    resp = await c.post("/v1/personas", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and _err(resp)["code"] == "too_large"
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 8192, "more_body": pulled < 10_000}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)
    with pytest.raises(TooLarge):
        await read_capped(request, MAX_JSON_BYTES)
    assert pulled == MAX_JSON_BYTES // 8192 + 1
    declared = Request({"type": "http", "method": "POST", "path": "/",
                        "headers": [(b"content-length", b"99999999")]}, receive)
    with pytest.raises(TooLarge):
        await read_capped(declared, MAX_JSON_BYTES)
    assert pulled == MAX_JSON_BYTES // 8192 + 1  # refused on the header alone


async def test_tokens_guard_every_route() -> None:
    async with running_server(tokens=("s3cret",)) as srv, httpx.AsyncClient(base_url=srv.http) as c:
        for method, path in (("GET", "/v1/personas"), ("GET", "/v1/openapi.json"), ("POST", "/v1/personas"),
                             ("DELETE", "/v1/personas/default"), ("POST", "/v1/personas/default/voice")):
            resp = await c.request(method, path)
            assert resp.status_code == 401 and _err(resp)["code"] == "unauthorized"
        assert (await c.get("/v1/personas", headers={"authorization": "Bearer s3cret"})).status_code == 200
        assert (await c.get("/v1/personas?token=s3cret")).status_code == 200
        assert (await c.get("/v1/personas", headers={"authorization": "Bearer wrong"})).status_code == 401


async def test_openapi_describes_every_route(api: Any) -> None:
    srv, c = api
    doc = (await c.get("/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    http = [r for r in srv.attune.app.routes if r.path.startswith("/v1/") and getattr(r, "methods", None)]
    routes = {r.path for r in http}  # HTTP routes: /v1/realtime is a WebSocket (docs/PROTOCOL.md), not OpenAPI's
    assert routes == set(doc["paths"])
    for route in http:
        if route.path.startswith("/v1/"):
            assert {m.lower() for m in route.methods} - {"head"} <= set(doc["paths"][route.path])
    from attune.agent.persona_model import PersonaRecord

    assert set(doc["components"]["schemas"]["Persona"]["properties"]) == set(PersonaRecord("x").to_json())
    assert set(CLINIC) | {"greeting", "created_at", "updated_at"} == set(PersonaRecord("x").to_json())


async def test_upload_raw_multipart_rejections_and_detach(api: Any) -> None:
    _, c = api
    await c.post("/v1/personas", json=CLINIC)
    await c.post("/v1/personas", json={**CLINIC, "id": "twin"})
    stereo = np.stack([_speechlike(), _speechlike()], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, 24000, format="WAV", subtype="PCM_16")
    # A buzz is not speech: the VAD's rule, named.
    resp = await c.post("/v1/personas/clinic/voice", content=buf.getvalue(), headers={"content-type": "audio/wav"})
    assert resp.status_code == 400
    err = _err(resp)
    assert (err["code"], err["field"]) == ("rejected", "speech") and "%" in err["message"]
    short = wav_bytes(_speechlike(3.0), 24000)
    resp = await c.post("/v1/personas/clinic/voice", content=short, headers={"content-type": "audio/wav"})
    assert _err(resp)["field"] == "duration" and "3.00 s" in _err(resp)["message"]
    resp = await c.post("/v1/personas/clinic/voice", content=b"GIF89a" + bytes(5000),
                        headers={"content-type": "audio/wav"})
    assert resp.status_code == 415 and _err(resp)["code"] == "not_audio"
    resp = await c.post("/v1/personas/ghost/voice", content=short, headers={"content-type": "audio/wav"})
    assert resp.status_code == 404
    resp = await c.post("/v1/personas/clinic/voice", files={"other": ("a.wav", short, "audio/wav")})
    assert resp.status_code == 400 and _err(resp)["field"] == "file"
    resp = await c.post("/v1/personas/clinic/voice", files={"file": ("a.wav", short, "audio/wav")})
    assert _err(resp)["field"] == "duration"  # the multipart file part is what was judged


async def test_upload_over_the_size_cap_is_413() -> None:
    async with running_server(pipeline={}, server={}) as srv, httpx.AsyncClient(base_url=srv.http) as c:
        cap = srv.attune.personas.config.personas.max_sample_bytes
        resp = await c.post("/v1/personas/default/voice", content=b"RIFF" + bytes(cap + 10),
                            headers={"content-type": "audio/wav"})
        assert resp.status_code == 413 and _err(resp)["code"] == "too_large"


async def test_preview_speaks_with_the_emotion_and_rejects_unknown_ones(api: Any) -> None:
    srv, c = api
    await c.post("/v1/personas", json={**CLINIC, "voice": {"provider": "", "pitch": 0.0}})
    resp = await c.post("/v1/personas/clinic/preview", json={"text": "Hello there friend.", "emotion": "happy"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
    samples, rate = load_wav_bytes(resp.content)
    assert rate == srv.attune.engines.config.pipeline.output_sample_rate and len(samples) > rate // 2
    assert sf.info(io.BytesIO(resp.content)).subtype == "PCM_16"
    bad = await c.post("/v1/personas/clinic/preview", json={"emotion": "smug"})
    assert bad.status_code == 400 and _err(bad)["field"] == "emotion"
    long = await c.post("/v1/personas/clinic/preview", json={"text": "a" * 201})
    assert _err(long)["field"] == "text"
    assert (await c.post("/v1/personas/ghost/preview", json={})).status_code == 404


async def test_session_update_persona_id_switches_traits_strategy_and_voice() -> None:
    """An unknown id is an error naming persona_id and changes nothing; a known one sets the prompt's persona,
    the strategy and the TTS chain for the next reply, and describe() says which; ``null`` puts the configured
    agent back."""
    from attune.backends.tts.router import VoiceModelRouter

    piper, espeak = ToneTTS(), ToneTTS()
    piper.name, espeak.name = "piper", "espeak"
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, sample_rate=16000)
    async with running_server(FakeStack(tts=router)) as srv, httpx.AsyncClient(base_url=srv.http) as c:
        await c.post("/v1/personas", json={**CLINIC, "voice": {"provider": "espeak", "fallback": ["piper"]}})
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            created = await wait_for(log, "session.created")
            assert created["session"]["persona_id"] is None
            await ws.send(json.dumps({"type": "session.update", "session": {"persona_id": "ghost",
                                                                             "strategy": "amplify"}}))
            err = (await wait_for(log, "error"))["error"]
            assert "persona_id" in err["message"] and err["code"] == "invalid_session_update"
            session = next(iter(srv.attune.connections.values())).session
            assert session.settings.strategy != "amplify"
            await ws.send(json.dumps({"type": "session.update", "session": {"persona_id": "clinic"}}))
            updated = (await wait_for(log, "session.updated"))["session"]
            assert updated["persona_id"] == "clinic" and updated["strategy"] == "match"
            assert updated["persona"] == "You are Ada, calm."
            assert session.settings.persona.name == "Ada"
            await talk(ws, log)
            assert espeak.texts and not piper.texts
            before = len(log.of("session.updated"))
            await ws.send(json.dumps({"type": "session.update", "session": {"persona_id": None}}))
            await wait_for(log, "session.updated", count=before + 1)
            back = log.of("session.updated")[-1]["session"]
            assert back["persona_id"] is None and back["strategy"] == created["session"]["strategy"]
            assert back["persona"] == created["session"]["persona"]
            said = len(espeak.texts)
            await talk(ws, log)
            assert piper.texts and len(espeak.texts) == said
            await ws.close()
            await reader


async def test_sessions_start_as_personas_default_id(tmp_path: Any) -> None:
    """With ``personas.default_id`` a new session starts as that persona (session.created says so, its voice
    speaks); ``null`` returns it to the configured agent; once the persona is deleted, new sessions are the
    configured agent. An unknown id is a ConfigError naming the key when the server is made."""
    from attune.agent.persona_model import parse_persona
    from attune.agent.persona_store import PersonaStore, seed_record
    from attune.backends.tts.router import VoiceModelRouter
    from attune.config import load_config
    from attune.core.errors import ConfigError

    config = load_config(environ={})
    store = PersonaStore(tmp_path, seed_record(config))
    store.create(parse_persona({**CLINIC, "voice": {"provider": "espeak", "fallback": ["piper"]}}))
    piper, espeak = ToneTTS(), ToneTTS()
    piper.name, espeak.name = "piper", "espeak"
    router = VoiceModelRouter({"piper": piper, "espeak": espeak}, sample_rate=16000)
    async with running_server(FakeStack(tts=router), data_dir=str(tmp_path),
                              personas={"default_id": "clinic"}) as srv, httpx.AsyncClient(base_url=srv.http) as c:
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            created = (await wait_for(log, "session.created"))["session"]
            assert created["persona_id"] == "clinic" and created["strategy"] == "match"
            assert created["persona"] == "You are Ada, calm."
            await talk(ws, log)
            assert espeak.texts and not piper.texts
            await ws.send(json.dumps({"type": "session.update", "session": {"persona_id": None}}))
            back = (await wait_for(log, "session.updated"))["session"]
            assert back["persona_id"] is None and back["strategy"] == config.expression.strategy
            await ws.close()
            await reader
        assert (await c.delete("/v1/personas/clinic")).status_code == 204
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            assert (await wait_for(log, "session.created"))["session"]["persona_id"] is None
            await ws.close()
            await reader
    with pytest.raises(ConfigError, match=r"personas\.default_id.*'clinic'"):
        async with running_server(data_dir=str(tmp_path), personas={"default_id": "clinic"}):
            pass


async def test_a_broken_user_voice_is_an_error_not_a_crash() -> None:
    """A persona whose Piper file exists but cannot load: session.update names persona_id and changes nothing;
    the preview answers 503 tts_failed; the server goes on."""
    async with running_server() as srv, httpx.AsyncClient(base_url=srv.http) as c:
        voices = srv.attune.personas.store.voices_dir
        (voices / "bad.onnx").write_bytes(b"not a model" * 100)
        (voices / "bad.onnx.json").write_text("{}")
        resp = await c.post("/v1/personas", json={"id": "bad", "voice": {"model": "bad.onnx"}})
        assert resp.status_code == 201
        preview = await c.post("/v1/personas/bad/preview", json={})
        assert preview.status_code == 503 and _err(preview)["code"] == "tts_failed"
        async with connect(srv.url) as ws:
            log = Log()
            reader = asyncio.create_task(collect(ws, log))
            await wait_for(log, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {"persona_id": "bad"}}))
            err = (await wait_for(log, "error"))["error"]
            assert "persona_id" in err["message"] and "bad.onnx" in err["message"]
            await ws.send(json.dumps({"type": "ping"}))
            await wait_for(log, "pong")
            assert not log.of("session.updated")
            await ws.close()
            await reader
        assert (await c.get("/v1/personas/bad")).status_code == 200


async def test_persona_greetings_and_acknowledgements_are_prewarmed_in_each_voice(tmp_path: Any) -> None:
    """At start-up every stored persona's greeting and the acknowledgements are rendered in that persona's voice;
    a second start (a new process: a new cache over the same directory, a new TTS) renders none of them."""
    from attune.agent.persona_model import parse_persona
    from attune.agent.persona_store import PersonaStore
    from attune.agent.persona_voice import VoiceRegistry
    from attune.agent.prosody_dsp import ProsodyApplicator
    from attune.backends.tts.cache import SpeechCache, SpeechStore
    from attune.backends.tts.router import VoiceModelRouter
    from attune.config import load_config
    from attune.core.emotion import EmotionCategory
    from attune.pipeline.phrases import Phrase, PhraseVoice
    from attune.transports.persona_api import PersonaService

    config = load_config(environ={})
    store = PersonaStore(tmp_path / "personas")  # no seed: just the two below
    store.create(parse_persona({**CLINIC, "greeting": "Hello, I am Ada."}))
    store.create(parse_persona({"id": "buddy", "greeting": "Hey there!", "voice": {"pitch": 3.0}}))
    from attune.pipeline.phrases import stock_phrases

    acks = len(stock_phrases(config))  # in each voice: the acknowledgements (and the first sounds, when on)

    def start() -> tuple[ToneTTS, PhraseVoice, PersonaService]:
        tone = ToneTTS()
        tone.name = "piper"
        router = VoiceModelRouter({"piper": tone}, sample_rate=16000)
        cache = SpeechCache(store=SpeechStore(tmp_path / "speech", max_bytes=10**8))
        phrases = PhraseVoice(router, ProsodyApplicator, config.pipeline.output_sample_rate, cache)
        return tone, phrases, PersonaService(store, router, config, VoiceRegistry())

    tone, phrases, service = start()
    first = await service.prewarm(phrases)
    assert (first.rendered, first.ready, first.failed) == (2 + 2 * acks, 0, 0)
    assert "Hello, I am Ada." in tone.texts and "Hey there!" in tone.texts
    greeting = Phrase.of("Hello, I am Ada.", EmotionCategory.NEUTRAL)
    ada = phrases.speaking_with(service.voice_sync(store.get("clinic")))
    assert ada.cached(greeting.text, greeting.emotion, greeting.prosody) is not None
    assert phrases.cached(greeting.text, greeting.emotion, greeting.prosody) is None  # not in the shared voice
    await phrases.drain()

    tone, phrases, service = start()
    second = await service.prewarm(phrases)
    assert (second.rendered, second.ready, second.failed) == (0, 2 + 2 * acks, 0) and tone.texts == []
    only = await service.prewarm(phrases, only=("buddy",))
    assert only.ready == 1 + acks
