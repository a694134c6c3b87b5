"""The OpenAPI 3.1 description of the persona API (``GET /v1/openapi.json``), written by hand beside the routes
of ``persona_api.py``; tests check that every route is in it and every documented status is one the API gives."""

from __future__ import annotations

from typing import Any

from attune.agent.persona_model import (
    ID_PATTERN,
    MAX_GREETING_CHARS,
    PITCH_RANGE,
    SPEED_RANGE,
    STRATEGIES,
    tts_providers,
    tts_tiers,
)
from attune.core.prosody import PROFILES

SAMPLE_RULES = ["duration", "sample_rate", "bit_depth", "channels", "clipping", "snr", "speech", "format"]


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _schemas() -> dict[str, Any]:
    providers = list(tts_providers())
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "field", "message"], "properties": {
                "code": {"type": "string", "examples": ["invalid", "not_found", "exists", "rejected"]},
                "field": {"type": ["string", "null"], "description": "the dotted field or the sample rule"},
                "message": {"type": "string"}}}}},
        "Sample": {"type": "object", "readOnly": True,
                   "required": ["sha256", "duration_s", "sample_rate", "channels", "bits", "snr_db"],
                   "properties": {"sha256": {"type": "string"}, "duration_s": {"type": "number"},
                                  "sample_rate": {"type": "integer"}, "channels": {"type": "integer"},
                                  "bits": {"type": "integer"}, "snr_db": {"type": "number"}}},
        "Voice": {"type": "object", "additionalProperties": False, "properties": {
            "provider": {"type": "string", "enum": ["", *providers], "default": "piper",
                         "description": "\"\" = the quality tier's chain"},
            "fallback": {"type": "array", "items": {"type": "string", "enum": providers}, "default": ["espeak"]},
            "model": {"type": "string", "default": "",
                      "description": "a Piper .onnx (its .json beside it), relative to the data dir's voices/ or "
                                     "absolute; \"\" = the embedded voice"},
            "sample": {"oneOf": [{"$ref": "#/components/schemas/Sample"}, {"type": "null"}], "readOnly": True},
            "language": {"type": "string", "default": "en-us"},
            "speed": {"type": "number", "minimum": SPEED_RANGE[0], "maximum": SPEED_RANGE[1], "default": 1.0},
            "pitch": {"type": "number", "minimum": PITCH_RANGE[0], "maximum": PITCH_RANGE[1], "default": 0.0,
                      "description": "semitones, on top of each reply's emotion prosody"},
            "quality": {"type": "string", "enum": list(tts_tiers()), "default": "high"},
            "advanced": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean"]},
                         "description": "provider settings, kept as given"}}},
        "Persona": {"type": "object", "required": ["id"], "additionalProperties": False, "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN.pattern},
            "name": {"type": "string", "maxLength": 80}, "description": {"type": "string", "maxLength": 200},
            "traits": {"type": "string", "maxLength": 2000, "description": "the system prompt's head"},
            "strategy": {"type": "string", "enum": list(STRATEGIES), "default": "complement"},
            "voice": {"$ref": "#/components/schemas/Voice"},
            "greeting": {"type": "string", "maxLength": MAX_GREETING_CHARS, "default": "",
                         "description": "one line spoken first by a kiosk running as this persona and prewarmed "
                                        "in its voice at start-up; \"\" = none"},
            "created_at": {"type": "string", "format": "date-time", "readOnly": True},
            "updated_at": {"type": "string", "format": "date-time", "readOnly": True}}},
        "VoiceUpload": {"type": "object", "required": ["persona", "sample", "notes"], "properties": {
            "persona": {"$ref": "#/components/schemas/Persona"}, "sample": {"$ref": "#/components/schemas/Sample"},
            "notes": {"type": "array", "items": {"type": "string"}}}},
        "Preview": {"type": "object", "additionalProperties": False, "properties": {
            "text": {"type": "string", "maxLength": 200},
            "emotion": {"type": "string", "enum": sorted(c.value for c in PROFILES), "default": "neutral"}}},
    }


def openapi_document() -> dict[str, Any]:
    pid = [{"name": "pid", "in": "path", "required": True, "schema": {"type": "string"}}]
    persona_body = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Persona"}}}}
    bad = _error("invalid (field named), malformed_json")
    big = _error("body over 64 KiB")
    not_json = _error("unsupported_media_type: a JSON body needs Content-Type: application/json")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Attune persona API", "version": "1.0.0",
                 "description": "Personas (name, traits, strategy, voice) and their voice samples. Bearer token "
                                "(or ?token=) when the server has tokens."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/personas": {
                "get": {"summary": "every persona, sorted by id", "responses": {
                    "200": {"description": "the list", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"personas": {"type": "array", "items": {
                            "$ref": "#/components/schemas/Persona"}}}}}}},
                    "401": _error("missing or invalid token")}},
                "post": {"summary": "create a persona", "requestBody": persona_body, "responses": {
                    "201": _json("Persona", "created"), "400": bad, "401": _error("unauthorized"),
                    "409": _error("exists: the id is taken"), "413": big, "415": not_json}}},
            "/v1/personas/{pid}": {
                "parameters": pid,
                "get": {"summary": "one persona", "responses": {"200": _json("Persona", "the persona"),
                                                                "401": _error("unauthorized"),
                                                                "404": _error("not_found")}},
                "put": {"summary": "replace a persona (the body's id, if given, must be the path's)",
                        "requestBody": persona_body, "responses": {
                            "200": _json("Persona", "replaced"), "400": bad, "401": _error("unauthorized"),
                            "404": _error("not_found"), "413": big, "415": not_json}},
                "delete": {"summary": "delete a persona", "responses": {
                    "204": {"description": "deleted"}, "401": _error("unauthorized"), "404": _error("not_found"),
                    "409": _error("last_persona: the only persona left")}}},
            "/v1/personas/{pid}/voice": {
                "parameters": pid,
                "post": {"summary": "upload a voice sample (WAV or FLAC, 6-30 s, 22,050-96,000 Hz, >= 16-bit, mono or "
                                    "down-mixed stereo, no clipping, speech-to-noise and speech checked)",
                         "requestBody": {"required": True, "content": {
                             "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                             "audio/x-wav": {"schema": {"type": "string", "format": "binary"}},
                             "audio/flac": {"schema": {"type": "string", "format": "binary"}},
                             "multipart/form-data": {"schema": {"type": "object", "properties": {
                                 "file": {"type": "string", "format": "binary"}}}}}},
                         "responses": {
                             "200": _json("VoiceUpload", "accepted and attached"),
                             "400": _error("rejected: field is the rule broken, one of " + ", ".join(SAMPLE_RULES)),
                             "401": _error("unauthorized"), "404": _error("not_found"),
                             "413": _error("over personas.max_sample_bytes"),
                             "415": _error("not_audio: the content is not WAV or FLAC")}},
                "delete": {"summary": "detach the sample", "responses": {
                    "200": _json("Persona", "the persona without a sample"), "401": _error("unauthorized"),
                    "404": _error("not_found")}}},
            "/v1/personas/{pid}/preview": {
                "parameters": pid,
                "post": {"summary": "speak a line in the persona's voice with an emotion's prosody",
                         "requestBody": {"content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/Preview"}}}},
                         "responses": {
                             "200": {"description": "16-bit mono WAV at the session's output rate",
                                     "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
                             "400": _error("invalid: unknown emotion, text too long"),
                             "401": _error("unauthorized"), "404": _error("not_found"), "413": big,
                             "415": not_json, "503": _error("tts_failed: no provider of the voice could speak")}}},
            "/v1/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                "401": _error("unauthorized")}}},
        },
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
