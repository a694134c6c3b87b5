"""``transcribe FILE [--json]``: a recording through the configured ASR."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from attune.commands.flags import input_file, input_of, renamed
from attune.config import Config
from attune.core.errors import AudioInputError

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
_WORD_MAP = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def add_commands(sub: Any) -> None:
    p = sub.add_parser("transcribe", help="transcribe a recording with the configured ASR")
    input_file(p, "audio file (WAV, FLAC, OGG; any rate)")
    renamed(p, "--asr-model", "--model", choices=("tiny.en", "base"), default=None,
            help="Whisper model: tiny.en | base (default: asr.model)")
    p.add_argument("--json", action="store_true", help="one JSON object; its 'text' key holds the transcript")
    p.set_defaults(handler=cmd_transcribe)


def cmd_transcribe(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.asr.asr_factory import create_asr
    from attune.core.audio import load_wav
    from attune.core.frames import AudioChunk

    path = input_of(args)
    if path is None:
        raise AudioInputError("transcribe needs --input FILE")
    samples, rate = load_wav(path)
    asr = create_asr(config, **({"model": args.asr_model} if args.asr_model else {}))
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

