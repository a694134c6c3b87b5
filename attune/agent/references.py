"""The emotion reference bank and its controller: one short 24 kHz WAV per reference emotion plus a manifest.

Voice-cloning engines (CSM) condition on a reference clip; the controller picks, for any of the 26 expressed
emotions, the nearest of the eight references (the original CSM deployment's set) and the pitch/rate/energy
scales to apply on top. ``build_bank`` renders the bank through the TTS router (Piper by default) and the
prosody DSP; ``ReferenceBank`` loads clips once, checks their SHA-256 and falls back to neutral when one is
missing or corrupt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attune.core.audio import load_wav, resample, write_wav
from attune.core.emotion import CATEGORY_VAD, EmotionCategory
from attune.core.errors import AttuneError, ReferenceBankError
from attune.core.prosody import ProsodyParameters, profile_for

if TYPE_CHECKING:
    from attune.backends.tts.router import VoiceModelRouter

log = logging.getLogger(__name__)

REFERENCE_RATE = 24000  # Hz, CSM's (Mimi's) sample rate
MANIFEST = "manifest.json"
TARGET_RMS_DBFS = -20.0
E = EmotionCategory


@dataclass(frozen=True)
class ReferenceSpec:
    """One reference emotion: the category it stands for, how strongly it is rendered, what it says, and the
    controller's pitch/rate/energy scales (multipliers of the engine's own)."""

    name: str
    anchor: EmotionCategory
    intensity: float
    transcript: str
    pitch_scale: float
    rate_scale: float
    energy_scale: float

    @property
    def prosody(self) -> ProsodyParameters:
        return profile_for(self.anchor, self.intensity)


# The original deployment's eight references; calm_supportive's scales (0.93 / 0.93 / 0.86) are its own, the
# others follow the same profiles' directions.
REFERENCES: dict[str, ReferenceSpec] = {s.name: s for s in (
    ReferenceSpec("calm_supportive", E.CALM, 1.0, "It's alright. Take a slow breath, I'm right here with you.",
                  0.93, 0.93, 0.86),
    ReferenceSpec("empathetic_sad", E.SAD, 0.7, "I'm so sorry. That sounds really hard, and it makes sense "
                  "that you feel this way.", 0.90, 0.88, 0.80),
    ReferenceSpec("joyful_excited", E.EXCITED, 1.0, "Oh, that's wonderful news! I'm so happy for you!",
                  1.12, 1.10, 1.15),
    ReferenceSpec("playful", E.PLAYFUL, 1.0, "Well, well, look who's in a good mood today!", 1.08, 1.05, 1.05),
    ReferenceSpec("confident", E.CONFIDENT, 1.0, "You can do this. Here is exactly what we'll do next.",
                  0.98, 0.98, 1.10),
    ReferenceSpec("concerned_anxious", E.ANXIOUS, 0.7, "Are you okay? I'm a little worried about you.",
                  1.06, 1.05, 0.95),
    ReferenceSpec("angry_firm", E.ANGRY, 0.8, "No. That is not acceptable, and it has to stop now.",
                  1.03, 1.05, 1.20),
    ReferenceSpec("neutral", E.NEUTRAL, 1.0, "Here is the information you asked for.", 1.0, 1.0, 1.0),
)}
NEUTRAL = "neutral"


@dataclass(frozen=True)
class ReferenceChoice:
    """The controller's answer for one expressed emotion: which reference, and the scales at this intensity."""

    emotion: EmotionCategory
    reference: str
    pitch_scale: float
    rate_scale: float
    energy_scale: float

    def to_dict(self) -> dict[str, object]:
        return {"emotion": self.emotion.value, "reference": self.reference, "pitch_scale": round(self.pitch_scale, 3),
                "rate_scale": round(self.rate_scale, 3), "energy_scale": round(self.energy_scale, 3)}


def _vad_distance(a: EmotionCategory, b: EmotionCategory) -> float:
    (v1, a1, d1), (v2, a2, d2) = CATEGORY_VAD[a], CATEGORY_VAD[b]
    return math.sqrt(((v1 - v2) / 2) ** 2 + (a1 - a2) ** 2 + 0.7 * (d1 - d2) ** 2)


def choose_reference(emotion: EmotionCategory | str, intensity: float = 1.0) -> ReferenceChoice:
    """The nearest reference (valence-arousal-dominance distance to its anchor) and its scales, moved toward 1
    as ``intensity`` (0..1) falls. Raises ValueError for an unknown emotion."""
    try:
        cat = EmotionCategory(str(emotion).lower())
    except ValueError:
        raise ValueError(f"unknown emotion {emotion!r}") from None
    spec = min(REFERENCES.values(), key=lambda s: _vad_distance(cat, s.anchor))
    k = min(max(float(intensity), 0.0), 1.0) if math.isfinite(float(intensity)) else 0.0
    return ReferenceChoice(cat, spec.name, 1 + k * (spec.pitch_scale - 1), 1 + k * (spec.rate_scale - 1),
                           1 + k * (spec.energy_scale - 1))


@dataclass(frozen=True)
class Reference:
    name: str
    audio: np.ndarray
    sample_rate: int
    transcript: str
    sha256: str


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ReferenceBank:
    """The references in ``directory`` (read through its manifest). Each clip is read and checked once, then
    served from memory. ``get`` raises ReferenceBankError; ``for_emotion`` falls back to neutral."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, Reference] = {}
        self._manifest: dict[str, dict[str, object]] | None = None

    def manifest(self) -> dict[str, dict[str, object]]:
        if self._manifest is None:
            path = self.directory / MANIFEST
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._manifest = {str(e["emotion"]): dict(e) for e in data["references"]}
            except FileNotFoundError:
                raise ReferenceBankError(f"reference manifest not found: {path}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise ReferenceBankError(f"reference manifest {path} is malformed: {exc}") from exc
        return self._manifest

    def get(self, name: str) -> Reference:
        """The reference clip ``name``; loaded and SHA-256-checked on first use, cached after."""
        if name in self._cache:
            return self._cache[name]
        entry = self.manifest().get(name)
        if entry is None:
            raise ReferenceBankError(f"no reference {name!r} in {self.directory / MANIFEST}")
        path = self.directory / str(entry["file"])
        if not path.is_file():
            raise ReferenceBankError(f"reference {name!r}: file missing: {path}")
        digest = sha256_of(path)
        if digest != entry.get("sha256"):
            raise ReferenceBankError(f"reference {name!r}: {path} fails its SHA-256 check (corrupt or edited)")
        try:
            audio, rate = load_wav(path)
        except AttuneError as exc:
            raise ReferenceBankError(f"reference {name!r}: {exc}") from exc
        ref = Reference(name, audio, rate, str(entry.get("transcript", "")), digest)
        self._cache[name] = ref
        return ref

    def for_emotion(self, emotion: EmotionCategory | str, intensity: float = 1.0
                    ) -> tuple[ReferenceChoice, Reference]:
        """The controller's choice for ``emotion`` and its clip; a missing or corrupt clip falls back to neutral
        (logged). Raises ReferenceBankError only when neutral is unusable too."""
        choice = choose_reference(emotion, intensity)
        try:
            return choice, self.get(choice.reference)
        except ReferenceBankError as exc:
            if choice.reference == NEUTRAL:
                raise
            log.warning("%s; falling back to the neutral reference", exc)
            fallback = ReferenceChoice(choice.emotion, NEUTRAL, 1.0, 1.0, 1.0)
            return fallback, self.get(NEUTRAL)


def render_reference(spec: ReferenceSpec, router: VoiceModelRouter) -> tuple[np.ndarray, str]:
    """One reference clip at 24 kHz and the provider that spoke it: the transcript rendered through ``router``
    with the spec's prosody (the engine's native dimensions there, the rest by the DSP) at -20 dBFS RMS plus
    the profile's volume."""
    from attune.agent.speech_source import render_speech

    speech = render_speech(spec.transcript, spec.prosody, router=router, level_dbfs=TARGET_RMS_DBFS)
    return resample(speech.audio, speech.sample_rate, REFERENCE_RATE), speech.provider


def build_bank(directory: str | Path, router: VoiceModelRouter) -> dict[str, object]:
    """Render every reference through ``router`` into ``directory`` and write its manifest; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    entries, spoke = [], set()
    for spec in REFERENCES.values():
        audio, provider = render_reference(spec, router)
        spoke.add(provider)
        path = out / f"{spec.name}.wav"
        write_wav(path, audio, REFERENCE_RATE)
        (out / f"{spec.name}.txt").write_text(spec.transcript + "\n", encoding="utf-8")
        entries.append({
            "emotion": spec.name, "file": path.name, "transcript": spec.transcript, "sample_rate": REFERENCE_RATE,
            "duration_s": round(len(audio) / REFERENCE_RATE, 3), "sha256": sha256_of(path), "tts": provider,
            "anchor": spec.anchor.value, "intensity": spec.intensity, "prosody": spec.prosody.to_dict(),
            "pitch_scale": spec.pitch_scale, "rate_scale": spec.rate_scale, "energy_scale": spec.energy_scale,
        })
    manifest: dict[str, object] = {
        "tts": ",".join(sorted(spoke)), "prosody": "engine-native dimensions (attune.backends.tts.prosody_map), "
        "the rest by attune.agent.prosody_dsp.apply_to_audio", "sample_rate": REFERENCE_RATE,
        "references": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
