"""Emotion subcommands: ``analyze``, ``eval-emotion``, ``train-emotion`` and ``bench-emotion``."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from attune.config import REPO_ROOT, Config
from attune.core import catalog
from attune.core.errors import AttuneError, AudioInputError
from attune.core.stats import percentile

log = logging.getLogger("attune.commands.emotion")
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "emodb-dev"
DEMO_TEXT = "I have been waiting here for two hours and nobody has told me anything!"


def add_commands(sub: Any) -> None:
    p = sub.add_parser("analyze", help="the emotion in a recording (or --demo: a synthesised sentence)")
    p.add_argument("file", nargs="?", help="audio file (WAV, FLAC, OGG)")
    p.add_argument("--json", action="store_true", help="print one JSON object (EmotionResult.to_dict())")
    p.add_argument("--demo", action="store_true", help="synthesise a sentence with espeak-ng and analyse it")
    p.add_argument("--backend", default=None, choices=catalog.names("emotion"),
                   help="emotion backend (default: emotion.backend)")
    p.set_defaults(handler=cmd_analyze)

    p = sub.add_parser("eval-emotion", help="UAR, per-class recall and arousal UAR on an EmoDB-style folder")
    p.add_argument("--data", required=True, help="folder of SSTTTEV.wav files")
    p.add_argument("--backend", default=None, choices=catalog.names("emotion"),
                   help="emotion backend (default: emotion.backend)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--cv", action="store_true", help="leave-one-speaker-out: retrain without each test speaker")
    p.add_argument("--no-speaker-norm", action="store_true",
                   help="with --cv: normalise test speakers by the training population only (no speaker stats)")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("train-emotion", help="retrain the prosodic model on an EmoDB-style folder")
    p.add_argument("--data", required=True, help="folder of SSTTTEV.wav files")
    p.add_argument("--out", default=None, help="model file (default: the shipped prosodic_model.json)")
    p.add_argument("--l2", type=float, default=0.003, help="L2 penalty of the logistic regression")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("bench-emotion", help="CPU ms per 500 ms streaming hop over a minute of speech")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of audio to stream")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="EmoDB folder (synthetic speech if absent)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench)


def _backend(args: argparse.Namespace, config: Config) -> Any:
    from attune.backends.emotion.registry import create_emotion_backend

    return create_emotion_backend(config, args.backend)


def cmd_analyze(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.emotion.detector import VoiceEmotionDetector

    detector = VoiceEmotionDetector(config.emotion, _backend(args, config))
    if args.demo:
        result = _analyze_demo(detector)
    elif args.file:
        result = detector.analyze(args.file)
    else:
        raise AudioInputError("analyze needs a FILE (or --demo)")
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


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.emotion import evaluation as ev
    from attune.backends.emotion.prosodic import ProsodicBackend

    started = time.perf_counter()
    backend = _backend(args, config)
    if args.cv:
        metrics = ev.cross_validate(ev.load_corpus(args.data), speaker_norm=not args.no_speaker_norm)
    elif isinstance(backend, ProsodicBackend) and backend.model is not None:
        metrics = ev.evaluate_model(backend.model, ev.load_corpus(args.data))
        metrics["protocol"] = "shipped model (trained on the dev speakers: optimistic; use --cv for unseen)"
    else:
        metrics = ev.evaluate_backend(backend.analyze, ev.corpus_files(args.data))
        metrics["protocol"] = "backend.analyze per file"
    metrics["backend"] = backend.name
    metrics["normalisation"] = ("population prior only" if args.cv and args.no_speaker_norm
                                else "per speaker (ids from file names, no labels)")
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"backend {backend.name}; {metrics['protocol']}; normalisation: {metrics['normalisation']}")
        print(ev.format_report(metrics))
    return 0


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.emotion import evaluation as ev
    from attune.backends.emotion.model import MODEL_PATH

    corpus = ev.load_corpus(args.data)
    model, cv = ev.train_calibrated(corpus, l2=args.l2, info={"data": Path(args.data).name})
    out = Path(args.out) if args.out else MODEL_PATH
    model.save(out)
    print(f"trained on {len(corpus.labels)} files of {len(set(corpus.speakers))} speakers -> {out}")
    print(f"leave-one-speaker-out: UAR {cv['uar']:.3f}, arousal UAR {cv['arousal_uar']:.3f}")
    print(f"calibration temperature: {model.temperature_known:.2f} (known speaker), "
          f"{model.temperature_stranger:.2f} (stranger)")
    return 0


def _bench_audio(data: str, seconds: float) -> tuple[np.ndarray, str]:
    from attune.backends.emotion.evaluation import corpus_files
    from attune.core.audio import SAMPLE_RATE, load_wav, resample

    need = int(seconds * SAMPLE_RATE)
    try:
        files = corpus_files(data)
    except AudioInputError:
        files = []
    if files:
        parts, total = [], 0
        for f in files:
            audio, rate = load_wav(f)
            parts.append(resample(audio, rate, SAMPLE_RATE))
            total += len(parts[-1])
            if total >= need:
                break
        audio = np.concatenate(parts)
        while len(audio) < need:
            audio = np.concatenate([audio, audio])
        return audio[:need], f"{len(parts)} EmoDB files"
    t = np.arange(need) / SAMPLE_RATE
    f0 = 180.0 + 30.0 * np.sin(2 * np.pi * 0.3 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SAMPLE_RATE) / k for k in range(1, 6))
    return (0.3 * np.sin(np.pi * 4.0 * t) ** 2 * voice).astype(np.float32), "synthetic speech"


def cmd_bench(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.emotion.detector import VoiceEmotionDetector

    audio, source = _bench_audio(args.data, args.seconds)
    detector = VoiceEmotionDetector(config.emotion)
    hop = detector.hop
    detector.analyze_streaming(audio[: detector.window])  # warm-up: imports, FFT plans, the first window
    detector.reset_stream()
    cpu_ms = []
    n_results = 0
    for start in range(0, len(audio) - hop + 1, hop):
        t0 = time.process_time()
        n_results += len(detector.analyze_streaming(audio[start:start + hop]))
        cpu_ms.append((time.process_time() - t0) * 1000.0)
    arr = np.array(cpu_ms)
    figures = {"source": source, "seconds": round(len(audio) / 16000.0, 1), "hops": len(arr), "results": n_results,
               "hop_ms": round(1000.0 * hop / 16000.0), "cpu_ms_median": round(percentile(arr, 50), 3),
               "cpu_ms_p95": round(percentile(arr, 95), 3), "cpu_ms_max": round(float(arr.max()), 3)}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"streamed {figures['seconds']} s of {source}: {figures['hops']} hops of {figures['hop_ms']} ms, "
              f"{n_results} results")
        print(f"CPU per hop: median {figures['cpu_ms_median']} ms, p95 {figures['cpu_ms_p95']} ms, "
              f"max {figures['cpu_ms_max']} ms (target: median <= 2 ms)")
    return 0
