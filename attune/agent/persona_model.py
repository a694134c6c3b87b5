"""The persona API's data model: ``PersonaRecord`` (who the agent is: name, traits, default strategy) and its
``VoiceConfig`` (TTS chain, Piper voice file, reference ``Sample``, speed, pitch, tier, provider settings), with
the validation of a JSON body. Pure: no storage, no I/O except ``VoiceConfig.identity`` stating the voice file.

Every invalid body is a ``PersonaError`` with code ``invalid`` and ``field`` naming the first bad field (dotted,
``voice.speed``); unknown fields are invalid too. ``sample``, ``created_at`` and ``updated_at`` are read-only:
a body may carry them back (a page sends what it got) and they are ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from attune.agent.persona import DEFAULT_PERSONA, Persona
from attune.core import catalog
from attune.core.errors import PersonaError

# Use ``fullmatch``: ``$`` also matches before a trailing newline, so ``match`` would accept "default\n". The
# patterns keep their anchors for the OpenAPI document (JSON Schema's ECMA-262 ``$`` has no such exception).
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")
STRATEGIES = ("match", "complement", "amplify", "neutral")
MAX_NAME_CHARS = 80
MAX_DESCRIPTION_CHARS = 200
MAX_GREETING_CHARS = 200
MAX_TRAITS_CHARS = 2000
MAX_FALLBACK = 8
MAX_ADVANCED_KEYS = 32
MAX_ADVANCED_TEXT = 200
SPEED_RANGE = (0.5, 2.0)  # multiplier of the speaking rate
PITCH_RANGE = (-12.0, 12.0)  # semitones
READ_ONLY = ("created_at", "updated_at")


def tts_providers() -> tuple[str, ...]:
    return tuple(catalog.names("tts"))


def tts_tiers() -> tuple[str, ...]:
    return tuple(catalog.tts_tiers())


@dataclass(frozen=True)
class Sample:
    """A validated voice sample stored as ``samples/<sha256>.wav`` under the data directory."""

    sha256: str
    duration_s: float
    sample_rate: int
    channels: int
    bits: int
    snr_db: float

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "duration_s": round(self.duration_s, 3), "sample_rate": self.sample_rate,
                "channels": self.channels, "bits": self.bits, "snr_db": round(self.snr_db, 1)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Sample:
        return cls(str(obj["sha256"]), float(obj["duration_s"]), int(obj["sample_rate"]), int(obj["channels"]),
                   int(obj["bits"]), float(obj["snr_db"]))


@dataclass(frozen=True)
class VoiceConfig:
    provider: str = "piper"  # "" = the quality tier's chain
    fallback: tuple[str, ...] = ("espeak",)
    model: str = ""  # a user-supplied Piper .onnx (its .json beside it); "" = the embedded voice
    sample: Sample | None = None
    language: str = "en-us"
    speed: float = 1.0
    pitch: float = 0.0
    quality: str = "high"
    advanced: dict[str, Any] = field(default_factory=dict)

    def chain(self) -> tuple[str, ...]:
        """The providers to try in order; empty = the router's chain for ``quality``."""
        if not self.provider:
            return ()
        return (self.provider, *(f for f in self.fallback if f != self.provider))

    def model_path(self, voices_dir: Path | None) -> Path | None:
        """The Piper voice file, absolute (relative values are under ``voices_dir``); None for the embedded one."""
        if not self.model:
            return None
        p = Path(self.model).expanduser()
        return p if p.is_absolute() or voices_dir is None else voices_dir / p

    def identity(self, voices_dir: Path | None = None) -> str:
        """A string that changes whenever anything that changes the sound changes: the chain, the voice file (its
        path, size and modification time), speed, pitch, the reference sample's hash, language, tier and the
        provider settings. A speech cache keys on it (``voice``)."""
        path = self.model_path(voices_dir)
        model = "embedded"
        if path is not None:
            try:
                st = path.stat()
                model = f"{path}@{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                model = f"{path}@missing"
        parts = [",".join(self.chain()) or f"tier:{self.quality}", model, f"speed={self.speed:g}",
                 f"pitch={self.pitch:g}", f"sample={self.sample.sha256 if self.sample else '-'}",
                 f"lang={self.language}", f"quality={self.quality}",
                 json.dumps(self.advanced, sort_keys=True, separators=(",", ":"))]
        return "|".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "fallback": list(self.fallback), "model": self.model,
                "sample": self.sample.to_json() if self.sample else None, "language": self.language,
                "speed": self.speed, "pitch": self.pitch, "quality": self.quality, "advanced": dict(self.advanced)}


@dataclass(frozen=True)
class PersonaRecord:
    id: str
    name: str = ""
    description: str = ""
    traits: str = ""  # the system prompt's head; "" = the built-in persona text
    strategy: str = "complement"
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    greeting: str = ""  # spoken first by a kiosk running as this persona, prewarmed in its voice; "" = none
    created_at: str = ""
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "traits": self.traits,
                "strategy": self.strategy, "voice": self.voice.to_json(), "greeting": self.greeting,
                "created_at": self.created_at,
                "updated_at": self.updated_at}

    def persona(self, base: Persona | None = None) -> Persona:
        """The prompt's ``Persona``: this record's name and traits, the base's worked examples."""
        base = base or Persona()
        return replace(base, name=self.name or self.id, description=self.traits.strip() or DEFAULT_PERSONA)

    def with_sample(self, sample: Sample | None) -> PersonaRecord:
        return replace(self, voice=replace(self.voice, sample=sample))


def _bad(path: str, message: str) -> PersonaError:
    return PersonaError(f"{path}: {message}", "invalid", path)


def _text(obj: dict[str, Any], key: str, path: str, default: str, limit: int, *, one_line: bool = False) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise _bad(path, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise _bad(path, f"at most {limit} characters, got {len(value)}")
    if one_line and ("\n" in value or "\r" in value):
        raise _bad(path, "must be one line")
    return value


def _number(obj: dict[str, Any], key: str, path: str, default: float, lo: float, hi: float) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(path, f"must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise _bad(path, f"must be in {lo:g}..{hi:g}, got {value!r}")
    return float(value)


def _known(obj: dict[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _bad(prefix + unknown[0], f"unknown field (known: {', '.join(sorted(allowed))})")


def _advanced(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("voice.advanced", "must be an object")
    if len(value) > MAX_ADVANCED_KEYS:
        raise _bad("voice.advanced", f"at most {MAX_ADVANCED_KEYS} settings")
    for key, v in value.items():
        where = f"voice.advanced.{key}"
        if not isinstance(key, str) or not key or len(key) > 64:
            raise _bad("voice.advanced", "keys must be non-empty strings of at most 64 characters")
        ok = isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and math.isfinite(v))
        if not ok:
            raise _bad(where, f"must be a number, string or boolean, got {type(v).__name__}")
        if isinstance(v, str) and len(v) > MAX_ADVANCED_TEXT:
            raise _bad(where, f"at most {MAX_ADVANCED_TEXT} characters")
    return dict(value)


def parse_voice(obj: Any) -> VoiceConfig:
    if not isinstance(obj, dict):
        raise _bad("voice", "must be an object")
    _known(obj, {"provider", "fallback", "model", "sample", "language", "speed", "pitch", "quality", "advanced"},
           "voice.")
    providers = tts_providers()
    provider = obj.get("provider", "piper")
    if provider != "" and provider not in providers:
        raise _bad("voice.provider", f"must be one of {', '.join(providers)} (or \"\" for the tier's chain), "
                                     f"got {provider!r}")
    fallback = obj.get("fallback", ["espeak"])
    if not isinstance(fallback, list) or len(fallback) > MAX_FALLBACK:
        raise _bad("voice.fallback", f"must be a list of at most {MAX_FALLBACK} provider names")
    for i, name in enumerate(fallback):
        if name not in providers:
            raise _bad(f"voice.fallback.{i}", f"must be one of {', '.join(providers)}, got {name!r}")
    if len(set(fallback)) != len(fallback):
        raise _bad("voice.fallback", "names a provider twice")
    model = _text(obj, "model", "voice.model", "", 500, one_line=True).strip()
    if model and not model.endswith(".onnx"):
        raise _bad("voice.model", f"must name a Piper .onnx voice file, got {model!r}")
    if ".." in Path(model).parts:
        raise _bad("voice.model", "must not climb out of the voices folder ('..')")
    language = _text(obj, "language", "voice.language", "en-us", 24).strip().lower()
    if not LANGUAGE_PATTERN.fullmatch(language):
        raise _bad("voice.language", f"must be a language tag like en-us, got {language!r}")
    tiers = tts_tiers()
    quality = obj.get("quality", "high")
    if quality not in tiers:
        raise _bad("voice.quality", f"must be one of {', '.join(tiers)}, got {quality!r}")
    return VoiceConfig(provider=provider, fallback=tuple(fallback), model=model, language=language,
                       speed=_number(obj, "speed", "voice.speed", 1.0, *SPEED_RANGE),
                       pitch=_number(obj, "pitch", "voice.pitch", 0.0, *PITCH_RANGE), quality=quality,
                       advanced=_advanced(obj.get("advanced", {})))


def parse_persona(obj: Any, *, path_id: str | None = None) -> PersonaRecord:
    """A ``PersonaRecord`` from a JSON body (``sample`` and the timestamps are left empty: the store keeps them).
    ``path_id``: the id in the URL of a PUT; the body's id, if given, must equal it. Raises ``PersonaError``."""
    if not isinstance(obj, dict):
        raise _bad("body", "must be a JSON object (a Persona)")
    _known(obj, {"id", "name", "description", "traits", "strategy", "voice", "greeting", *READ_ONLY}, "")
    pid = obj.get("id", path_id)
    if pid is None:
        raise _bad("id", "is required")
    if not isinstance(pid, str) or not ID_PATTERN.fullmatch(pid):
        raise _bad("id", f"must match {ID_PATTERN.pattern}, got {pid!r}")
    if path_id is not None and pid != path_id:
        raise _bad("id", f"the body's id {pid!r} differs from the path's {path_id!r}")
    name = _text(obj, "name", "name", "", MAX_NAME_CHARS, one_line=True).strip()
    strategy = obj.get("strategy", "complement")
    if strategy not in STRATEGIES:
        raise _bad("strategy", f"must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return PersonaRecord(
        id=pid, name=name or pid,
        description=_text(obj, "description", "description", "", MAX_DESCRIPTION_CHARS, one_line=True).strip(),
        traits=_text(obj, "traits", "traits", "", MAX_TRAITS_CHARS), strategy=strategy,
        voice=parse_voice(obj.get("voice", {})),
        greeting=_text(obj, "greeting", "greeting", "", MAX_GREETING_CHARS, one_line=True).strip())


def record_from_json(obj: dict[str, Any]) -> PersonaRecord:
    """A stored record back (the store's own JSON: validated as a body, then its sample and timestamps)."""
    body = {k: v for k, v in obj.items() if k not in READ_ONLY}
    voice = dict(body.get("voice") or {})
    sample = voice.pop("sample", None)
    record = parse_persona({**body, "voice": voice})
    return replace(record.with_sample(Sample.from_json(sample) if sample else None),
                   created_at=str(obj.get("created_at", "")), updated_at=str(obj.get("updated_at", "")))
