"""``analyze``: the emotion in a recording (or in a sentence espeak-ng speaks, with ``--demo``)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from attune.commands.flags import input_file, input_of
from attune.config import Config
from attune.core import catalog
from attune.core.errors import AttuneError, AudioInputError

log = logging.getLogger("attune.commands.analyze")
DEMO_TEXT = "I have been waiting here for two hours and nobody has told me anything!"


def add_commands(sub: Any) -> None:
    p = sub.add_parser("analyze", help="the emotion in a recording (or --demo: a synthesised sentence)")
    input_file(p, "audio file (WAV, FLAC, OGG; any rate)")
    p.add_argument("--json", action="store_true", help="print one JSON object (EmotionResult.to_dict())")
    p.add_argument("--demo", action="store_true", help="synthesise a sentence with espeak-ng and analyse it")
    p.add_argument("--backend", default=None, choices=catalog.names("emotion"),
                   help="emotion backend (default: emotion.backend)")
    p.set_defaults(handler=cmd_analyze)


def _backend(args: argparse.Namespace, config: Config) -> Any:
    from attune.backends.emotion.emotion_factory import create_emotion_backend

    return create_emotion_backend(config, args.backend)


def cmd_analyze(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.emotion.detector import VoiceEmotionDetector

    detector = VoiceEmotionDetector(config.emotion, _backend(args, config))
    if args.demo:
        result = _analyze_demo(detector)
    elif path := input_of(args):
        result = detector.analyze(path)
    else:
        raise AudioInputError("analyze needs --input FILE (or --demo)")
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    d, m = result.dimensions, result.markers
    print(result.to_context_string())
    print(f"backend {result.backend}, confidence {result.confidence:.2f}, {result.duration_s:.2f} s of audio")
    print(f"valence {d.valence:+.2f}  arousal {d.arousal:.2f}  dominance {d.dominance:.2f}  ({d.quadrant.value})")
    print("top 3: " + ", ".join(f"{p.emotion.value} {p.confidence:.2f} ({p.intensity.value})"
                                for p in result.predictions))
    print(f"pitch {m.pitch_mean_hz:.0f} Hz (sd {m.pitch_std_hz:.0f}), rate {m.speech_rate_sps:.1f} syll/s "
          f"({m.speech_rate_category}), pauses {m.pause_ratio:.0%}, hesitations {m.hesitation_count}, "
          f"tremor {m.voice_tremor:.2f}, breathiness {m.breathiness:.2f}, level {m.level_dbfs:.1f} dBFS")
    q = result.quality
    print(f"audio: {q.rms_dbfs:.1f} dBFS rms, peak {q.peak_dbfs:.1f} dBFS"
          + (f", issues: {', '.join(q.issues)}" if q.issues else ""))
    return 0


def _analyze_demo(detector: Any) -> Any:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("espeak-ng is not installed (scripts/setup.sh installs it with apt); analysing a synthetic "
              "voice-like signal instead", file=sys.stderr)
        t = np.arange(3 * 16000) / 16000.0
        env = np.sin(np.pi * 4.0 * t) ** 2
        voice = sum(np.sin(2 * np.pi * 180.0 * k * t) / k for k in range(1, 6))
        return detector.analyze((0.3 * env * voice).astype(np.float32), 16000)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "demo.wav"
        try:
            subprocess.run([espeak, "-v", "en-us", "-s", "190", "-p", "70", "-w", str(wav), DEMO_TEXT],
                           check=True, capture_output=True, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            raise AttuneError(f"espeak-ng failed to synthesise the demo sentence: {exc}") from exc
        print(f'demo: espeak-ng says "{DEMO_TEXT}"', file=sys.stderr)
        return detector.analyze(wav)

