"""The CSM speech service, run on a GPU host where Sesame's CSM code and weights are installed.

    python -m attune.backends.tts.csm_service --port 8001 --device cuda --references references/

``POST /synthesize`` ``{"text", "speaker", "reference_emotion"}`` -> 24 kHz WAV; the reference bank entry for
``reference_emotion`` (``references/manifest.json``) is handed to CSM as a context segment, so the reply takes
that emotion's delivery. ``GET /health`` -> status, model_loaded, device, sample_rate,
emotion_references_available. The engine is injected (``CSMEngine``): tests use a fake, a GPU host the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from attune.config import Config
from attune.core.audio import load_wav, load_wav_bytes, resample, wav_bytes
from attune.core.errors import AudioInputError, BackendUnavailable

log = logging.getLogger(__name__)
MAX_TEXT_CHARS = 600  # one sentence or two per request
MAX_AUDIO_MS = 20000  # the longest audio generated for one request
MAX_BODY_BYTES = 8 * 1024 * 1024  # a request carrying a persona's voice sample (30 s at 48 kHz PCM16, base64)


@dataclass(frozen=True)
class ContextSegment:
    """A prior utterance CSM conditions on: who said it, what was said, and its audio at the engine's rate."""

    speaker: int
    text: str
    audio: np.ndarray = field(repr=False)


class CSMEngine(Protocol):
    sample_rate: int
    device: str

    def generate(self, text: str, speaker: int, context: list[ContextSegment]) -> np.ndarray:
        """Mono float32 speech at ``sample_rate``. Blocking (GPU)."""
        ...


def load_reference_bank(folder: Path, sample_rate: int) -> dict[str, ContextSegment]:
    """Emotion -> context segment from ``folder/manifest.json``; an absent or broken bank gives an empty one.

    Accepted manifests: ``{"references": [{"emotion", "file", "text"}, ...]}``, a bare list of those, or
    ``{"<emotion>": {"file", "text"}, ...}`` (``path``/``wav`` and ``transcript`` are accepted as aliases).
    """
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        log.warning("no usable reference bank at %s: %s", manifest, exc)
        return {}
    entries: list[Any]
    if isinstance(data, dict) and isinstance(data.get("references"), list):
        entries = data["references"]
    elif isinstance(data, list):
        entries = data
    elif isinstance(data, dict):
        entries = [{"emotion": k, **v} for k, v in data.items() if isinstance(v, dict)]
    else:
        entries = []
    bank = {}
    for e in entries:
        if not isinstance(e, dict):
            continue
        emotion = e.get("emotion")
        wav = e.get("file") or e.get("path") or e.get("wav")
        if not emotion or not wav:
            continue
        try:
            audio, rate = load_wav(folder / str(wav))
        except AudioInputError as exc:
            log.warning("reference %s skipped: %s", emotion, exc)
            continue
        text = str(e.get("text") or e.get("transcript") or "")
        bank[str(emotion)] = ContextSegment(int(e.get("speaker", 0)), text, resample(audio, rate, sample_rate))
    return bank


def _reference_segment(obj: Any, speaker: int, sample_rate: int) -> ContextSegment | None:
    """A persona's voice sample from a request (``{"audio_wav_base64", "text"}``) as a context segment."""
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("audio_wav_base64"), str):
        raise ValueError("must be an object with audio_wav_base64")
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    audio, rate = load_wav_bytes(base64.b64decode(obj["audio_wav_base64"], validate=True))
    return ContextSegment(speaker, text, resample(audio, rate, sample_rate))


def create_app(engine: CSMEngine | None, references: dict[str, ContextSegment]) -> Any:
    """The aiohttp application; ``engine`` None answers 503 (model not loaded) to synthesis requests."""
    from aiohttp import web

    lock = asyncio.Lock()  # one generation at a time on the GPU

    async def health(_: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok" if engine is not None else "loading",
            "model_loaded": engine is not None,
            "device": engine.device if engine is not None else "none",
            "sample_rate": engine.sample_rate if engine is not None else 24000,
            "emotion_references_available": sorted(references),
        })

    async def synthesize(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
            return web.json_response({"error": f"text must be 1..{MAX_TEXT_CHARS} characters"}, status=400)
        speaker = body.get("speaker", 0)
        if not isinstance(speaker, int) or isinstance(speaker, bool) or speaker < 0:
            return web.json_response({"error": "speaker must be a non-negative integer"}, status=400)
        emotion = body.get("reference_emotion")
        if emotion is not None and emotion not in references:
            return web.json_response({"error": f"unknown reference_emotion {emotion!r}",
                                      "available": sorted(references)}, status=400)
        if engine is None:
            return web.json_response({"error": "model not loaded"}, status=503)
        context = [references[emotion]] if emotion is not None else []
        try:
            voice = _reference_segment(body.get("reference"), speaker, engine.sample_rate)
        except (ValueError, AudioInputError) as exc:
            return web.json_response({"error": f"reference: {exc}"}, status=400)
        if voice is not None:
            context.insert(0, voice)
        async with lock:
            try:
                audio = await asyncio.to_thread(engine.generate, text.strip(), speaker, context)
            except Exception as exc:  # the engine is third-party code; report, keep serving
                log.exception("CSM generation failed")
                return web.json_response({"error": f"generation failed: {exc}"}, status=500)
        return web.Response(body=wav_bytes(np.asarray(audio, dtype=np.float32), engine.sample_rate),
                            content_type="audio/wav")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/health", health)
    app.router.add_post("/synthesize", synthesize)
    return app


class SesameCSMEngine:
    """The real engine: Sesame's ``generator.load_csm_1b`` (the CSM repository on PYTHONPATH, weights local)."""

    def __init__(self, device: str = "cuda") -> None:
        try:
            import torch
            from generator import Segment, load_csm_1b
        except ImportError as exc:
            raise BackendUnavailable(f"CSM code is not importable here: {exc}",
                                     install_hint="git clone the CSM repository on the GPU host and put it on "
                                                  "PYTHONPATH; pip install -r its requirements.txt") from exc
        self._torch: Any = torch
        self._segment: Any = Segment
        self._gen: Any = load_csm_1b(device=device)
        self.sample_rate = int(self._gen.sample_rate)
        self.device = device

    def generate(self, text: str, speaker: int, context: list[ContextSegment]) -> np.ndarray:
        segs = [self._segment(speaker=c.speaker, text=c.text, audio=self._torch.from_numpy(c.audio)) for c in context]
        audio = self._gen.generate(text=text, speaker=speaker, context=segs, max_audio_length_ms=MAX_AUDIO_MS)
        return np.asarray(audio.detach().cpu().numpy(), dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m attune.backends.tts.csm_service")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--references", default=str(Config().references_dir()),
                        help="folder with manifest.json and WAVs (default: the bank shipped with Attune)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    engine = SesameCSMEngine(args.device)
    bank = load_reference_bank(Path(args.references), engine.sample_rate)
    log.info("CSM on %s, %d emotion references", args.device, len(bank))
    web.run_app(create_app(engine, bank), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
