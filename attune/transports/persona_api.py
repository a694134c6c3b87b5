"""The persona HTTP API on the server's port (docs/PROTOCOL.md, "Persona API"): CRUD of personas under
``/v1/personas``, voice-sample upload and removal, a "try this voice" preview, and ``/v1/openapi.json``.

Protected by the server's tokens like ``/metrics`` (401). Bodies are read with their cap enforced while reading
(a declared ``Content-Length`` over the cap is refused before any byte is read; a body that grows past it is cut
off there), 413 either way. Every error is ``{"error": {"code", "field", "message"}}``. The store and the audio
work block, so they run in worker threads. ``PersonaService`` is what sessions use: a persona id -> its record
and its ``PersonaVoice`` over the shared TTS.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from attune.agent.persona_model import PersonaRecord, parse_persona
from attune.agent.persona_store import PersonaStore
from attune.agent.persona_voice import PersonaVoice, VoiceRegistry
from attune.agent.prosody_dsp import ProsodyApplicator
from attune.agent.voice_sample import SampleRules, validate_sample
from attune.backends.tts.router import speech_of
from attune.config import Config
from attune.core.audio import resample, wav_bytes
from attune.core.errors import BackendError, PersonaError
from attune.core.prosody import PROFILES, profile_for
from attune.pipeline.phrases import PrewarmReport, prewarm, stock_phrases
from attune.pipeline.session_backends import ChosenPersona
from attune.transports.persona_openapi import openapi_document

log = logging.getLogger(__name__)
MAX_JSON_BYTES = 64 * 1024
MULTIPART_ALLOWANCE = 64 * 1024  # headers and boundaries around an uploaded file
MAX_PREVIEW_CHARS = 200
EMOTIONS = tuple(sorted(c.value for c in PROFILES))
STATUS = {"invalid": 400, "malformed_json": 400, "rejected": 400, "unauthorized": 401, "not_found": 404,
          "exists": 409, "last_persona": 409, "too_large": 413, "not_audio": 415, "tts_failed": 503}


class TooLarge(Exception):
    pass


def error_response(code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "field": field, "message": message}},
                        status_code=STATUS.get(code, 400))


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes; raises ``TooLarge`` as soon as it is known to be more."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {int(declared)} bytes; at most {limit} accepted")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise TooLarge(f"the body is over {limit} bytes")
    return bytes(buf)


def multipart_file(content_type: str, body: bytes) -> bytes:
    """The part named ``file`` of a multipart/form-data body; ``invalid`` (field ``file``) when there is none."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                              + body)
    if msg.is_multipart():
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    return payload
    raise PersonaError("a multipart upload needs a part named 'file'", "invalid", "file")


@dataclass
class PersonaService:
    """Personas for sessions and the API: the store, the loaded-voice registry and the shared TTS."""

    store: PersonaStore
    tts: Any
    config: Config
    registry: VoiceRegistry

    def voice_sync(self, record: PersonaRecord) -> PersonaVoice:
        return PersonaVoice.build(self.tts, record, registry=self.registry, voices_dir=self.store.voices_dir,
                                  samples_dir=self.store.samples_dir)

    async def resolve(self, pid: str) -> ChosenPersona:
        """The record and its voice; raises ``PersonaError`` (not_found) or ``BackendError`` (a voice that
        cannot be loaded)."""
        def work() -> ChosenPersona:
            record = self.store.get(pid)
            return ChosenPersona(record, self.voice_sync(record))
        return await asyncio.to_thread(work)

    async def for_new_session(self) -> ChosenPersona | None:
        """The persona a new session starts with: ``personas.default_id`` as stored now (edits apply to
        the next session), None for "" or when that persona has gone since start-up (deleted through the API, or
        its voice no longer loads): the session is then the configured agent, with a warning in the log."""
        pid = self.config.personas.default_id
        if not pid:
            return None
        try:
            return await self.resolve(pid)
        except (PersonaError, BackendError) as exc:
            log.warning("personas.default_id %r cannot be used (%s); this session is the configured agent", pid, exc)
            return None

    async def prewarm(self, phrases: Any, only: tuple[str, ...] | None = None) -> PrewarmReport:
        """Each stored persona's greeting and the acknowledgements (``speech_cache``) made ready in the speech
        cache in that persona's voice (``phrases.speaking_with``), so a later start finds them all on disk.
        ``only``: these ids alone. A persona whose voice cannot be loaded is skipped with a warning (counted as
        failed). Nothing without a speech cache (``phrases`` None) or with ``speech_cache.prewarm`` off."""
        total = PrewarmReport()
        if phrases is None or not self.config.speech_cache.prewarm:
            return total
        records = await asyncio.to_thread(self.store.list)
        for record in records:
            if only is not None and record.id not in only:
                continue
            try:
                voice = await asyncio.to_thread(self.voice_sync, record)
            except BackendError as exc:
                log.warning("persona %r: its voice cannot be loaded, nothing prewarmed (%s)", record.id, exc)
                total.failed += 1
                continue
            report = await prewarm(phrases.speaking_with(voice), stock_phrases(self.config, (record.greeting,)))
            total.ready, total.rendered = total.ready + report.ready, total.rendered + report.rendered
            total.failed += report.failed
        log.info("persona phrases: %d from the cache, %d rendered, %d failed", total.ready, total.rendered,
                 total.failed)
        return total

    def check_model(self, record: PersonaRecord) -> None:
        path = record.voice.model_path(self.store.voices_dir)
        if path is None:
            return
        if not path.is_file():
            raise PersonaError(f"voice.model: no Piper voice at {path}", "invalid", "voice.model")
        if not path.with_name(path.name + ".json").is_file():
            raise PersonaError(f"voice.model: the voice's config {path.name}.json is not beside it", "invalid",
                               "voice.model")


class PersonaAPI:
    """The routes; ``authorized(request)`` is the server's token check."""

    def __init__(self, service: PersonaService, authorized: Callable[[Request], bool]) -> None:
        self.service = service
        self.store = service.store
        self.authorized = authorized
        p = service.config.personas
        self.rules = SampleRules(min_snr_db=p.min_snr_db, min_speech_fraction=p.min_speech_fraction)
        self.max_sample_bytes = p.max_sample_bytes

    def routes(self) -> list[Route]:
        return [
            Route("/v1/openapi.json", self._guard(self.openapi), methods=["GET"]),
            Route("/v1/personas", self._guard(self.list_or_create), methods=["GET", "POST"]),
            Route("/v1/personas/{pid}", self._guard(self.one), methods=["GET", "PUT", "DELETE"]),
            Route("/v1/personas/{pid}/voice", self._guard(self.voice), methods=["POST", "DELETE"]),
            Route("/v1/personas/{pid}/preview", self._guard(self.preview), methods=["POST"]),
        ]

    def _guard(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not self.authorized(request):
                return error_response("unauthorized", "missing or invalid token")
            try:
                response: Response = await handler(request)
                return response
            except PersonaError as exc:
                return error_response(exc.code, str(exc), exc.field)
            except TooLarge as exc:
                return error_response("too_large", str(exc))
        return endpoint

    async def _json(self, request: Request) -> Any:
        body = await read_capped(request, MAX_JSON_BYTES)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise PersonaError(f"the body is not valid JSON: {exc}", "malformed_json") from None

    # ---- handlers ----
    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def list_or_create(self, request: Request) -> Response:
        if request.method == "GET":
            records = await asyncio.to_thread(self.store.list)
            return JSONResponse({"personas": [r.to_json() for r in records]})
        record = parse_persona(await self._json(request))
        self.service.check_model(record)
        created = await asyncio.to_thread(self.store.create, record)
        return JSONResponse(created.to_json(), status_code=201)

    async def one(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        if request.method == "GET":
            return JSONResponse((await asyncio.to_thread(self.store.get, pid)).to_json())
        if request.method == "DELETE":
            await asyncio.to_thread(self.store.delete, pid)
            return Response(status_code=204)
        body = await self._json(request)
        await asyncio.to_thread(self.store.get, pid)  # 404 before 400: the path names no persona
        record = parse_persona(body, path_id=pid)
        self.service.check_model(record)
        return JSONResponse((await asyncio.to_thread(self.store.replace, record)).to_json())

    async def voice(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        if request.method == "DELETE":
            return JSONResponse((await asyncio.to_thread(self.store.detach_sample, pid)).to_json())
        await asyncio.to_thread(self.store.get, pid)
        content_type = request.headers.get("content-type", "")
        multipart = content_type.lower().startswith("multipart/form-data")
        body = await read_capped(request, self.max_sample_bytes + (MULTIPART_ALLOWANCE if multipart else 0))
        data = multipart_file(content_type, body) if multipart else body
        if len(data) > self.max_sample_bytes:
            raise TooLarge(f"the file is {len(data)} bytes; at most {self.max_sample_bytes} accepted")
        accepted = await asyncio.to_thread(validate_sample, data, self.rules)
        record = await asyncio.to_thread(self.store.attach_sample, pid, accepted.sample, accepted.wav)
        return JSONResponse({"persona": record.to_json(), "sample": accepted.sample.to_json(),
                             "notes": accepted.notes})

    async def preview(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        body = await self._json(request)
        record = await asyncio.to_thread(self.store.get, pid)
        text, emotion = preview_request(body, record)
        try:
            voice = await asyncio.to_thread(self.service.voice_sync, record)
            audio = await self._speak(voice, text, emotion)
        except BackendError as exc:
            return error_response("tts_failed", f"the voice could not speak: {exc}", "voice")
        return Response(audio, media_type="audio/wav")

    async def _speak(self, voice: PersonaVoice, text: str, emotion: str) -> bytes:
        prosody = profile_for(emotion)
        out_rate = self.service.config.pipeline.output_sample_rate
        pieces = []
        dsp: ProsodyApplicator | None = None
        async for speech in speech_of(voice, text, prosody):
            if dsp is None and self.service.config.expression.apply_prosody:
                dsp = ProsodyApplicator(voice.sample_rate, speech.remaining(prosody))
            pieces.append(speech.chunk.samples)
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

        def finish() -> bytes:
            shaped = dsp.shape(samples) if dsp is not None and len(samples) else samples
            return wav_bytes(resample(shaped, voice.sample_rate, out_rate), out_rate)
        return await asyncio.to_thread(finish)


def preview_request(body: Any, record: PersonaRecord) -> tuple[str, str]:
    """(text, emotion) of a preview body; raises ``PersonaError`` naming the bad field."""
    if not isinstance(body, dict):
        raise PersonaError("body: must be a JSON object", "invalid", "body")
    unknown = sorted(set(body) - {"text", "emotion"})
    if unknown:
        raise PersonaError(f"{unknown[0]}: unknown field (known: emotion, text)", "invalid", unknown[0])
    text = body.get("text") or f"Hello, I'm {record.name or record.id}. This is how I sound."
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PREVIEW_CHARS:
        raise PersonaError(f"text: must be text of at most {MAX_PREVIEW_CHARS} characters", "invalid", "text")
    emotion = body.get("emotion", "neutral")
    if emotion not in EMOTIONS:
        raise PersonaError(f"emotion: must be one of {', '.join(EMOTIONS)}, got {emotion!r}", "invalid",
                           "emotion")
    return text.strip(), str(emotion)
