"""``transcribe FILE [--json]``: a recording through the configured ASR."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from attune.config import Config

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
_WORD_MAP = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def add_commands(sub: Any) -> None:
    p = sub.add_parser("transcribe", help="transcribe a recording with the configured ASR")
    p.add_argument("file")
    p.add_argument("--model", choices=("tiny.en", "base"), default=None)
    p.add_argument("--json", action="store_true", help="one JSON object; its 'text' key holds the transcript")
    p.set_defaults(handler=cmd_transcribe)


def cmd_transcribe(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.asr.asr_factory import create_asr
    from attune.core.audio import load_wav
    from attune.core.frames import AudioChunk

    samples, rate = load_wav(args.file)
    asr = create_asr(config, **({"model": args.model} if args.model else {}))
    t0 = time.perf_counter()
    result = asr.transcribe(AudioChunk(samples, rate))
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"text": result.text, "segments": [s.__dict__ for s in result.segments],
                          "no_speech_prob": result.no_speech_prob, "duration_s": round(result.duration_s, 3),
                          "language": result.language, "backend": asr.name,
                          "rtf": round(elapsed / max(result.duration_s, 1e-6), 4)}))
    else:
        print(result.text)
    return 0

