"""Expression lab commands: ``bench-prosody`` (the prosody DSP's real-time factor on every profile),
``build-references`` (the emotion reference bank) and ``emotion-axis`` (the anger-minus-neutral prosodic axis)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from attune.commands.flags import renamed
from attune.config import Config
from attune.core.audio import FRAME_S
from attune.core.stats import percentile

BENCH_TEXT = ("The weather was lovely today, and we walked along the river for an hour. "
              "Then we went home, made some tea, and talked until it was dark.")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-prosody", help="real-time factor of the prosody DSP on every profile")
    p.add_argument("--repeats", type=int, default=5, help="runs per profile (the median is reported)")
    p.add_argument("--sample-rate", type=int, default=0, help="resample the test speech to this rate first")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tts", default=None, help="TTS provider of the test speech (default: expression.tts)")
    p.set_defaults(handler=cmd_bench)
    p = sub.add_parser("build-references", help="render the emotion reference bank (WAVs + manifest.json)")
    renamed(p, "--output", "--out", default=None, help="folder (default: expression.references_dir)")
    p.add_argument("--tts", default=None, help="TTS provider: piper | espeak (default: expression.tts)")
    p.set_defaults(handler=cmd_build_references)
    p = sub.add_parser("emotion-axis", help="measure the anger-minus-neutral prosodic axis of an EmoDB folder")
    p.add_argument("--data", required=True, help="EmoDB-layout folder of WAVs")
    renamed(p, "--output", "--out", required=True, help="JSON file to write")
    p.add_argument("--verify", action="store_true",
                   help="then steer the folder's neutral clips -1/0/+1 and print the arousal the analyzer reads")
    p.set_defaults(handler=cmd_emotion_axis)


def cmd_bench(args: argparse.Namespace, config: Config) -> int:
    from attune.agent.prosody_dsp import ProsodyApplicator, apply_to_audio
    from attune.agent.speech_source import render_speech
    from attune.core.audio import check_sample_rate, resample
    from attune.core.emotion import EmotionCategory
    from attune.core.prosody import PROFILES

    speech = render_speech(BENCH_TEXT, config=config, provider=args.tts)
    audio, rate = speech.audio, speech.sample_rate
    if args.sample_rate:
        audio, rate = resample(audio, rate, check_sample_rate(args.sample_rate)), args.sample_rate
    seconds = len(audio) / rate
    rows = {}
    for emotion, params in PROFILES.items():
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            apply_to_audio(audio, rate, params)
            times.append(time.perf_counter() - t0)
        rows[emotion.value] = float(np.median(times)) / seconds
    # Streaming: 20 ms pushes, the way a TTS stream arrives.
    app, hop = ProsodyApplicator(rate, PROFILES[EmotionCategory.EXCITED]), int(rate * FRAME_S)
    t0 = time.perf_counter()
    for i in range(0, len(audio), hop):
        app.push(audio[i:i + hop])
    app.flush()
    stream_rtf = (time.perf_counter() - t0) / seconds
    rtfs = np.array(list(rows.values()))
    summary = {"tts": speech.provider, "audio_s": round(seconds, 2), "sample_rate": rate,
               "rtf_p50": round(percentile(rtfs, 50), 4),
               "rtf_p95": round(percentile(rtfs, 95), 4), "rtf_max": round(float(rtfs.max()), 4),
               "rtf_max_emotion": max(rows, key=lambda k: rows[k]),
               "stream_20ms_rtf_excited": round(stream_rtf, 4)}
    if args.json:
        print(json.dumps({"summary": summary, "per_emotion": {k: round(v, 4) for k, v in rows.items()}}, indent=2))
    else:
        for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
            print(f"{k:14s} RTF {v:.4f}")
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def cmd_build_references(args: argparse.Namespace, config: Config) -> int:
    from attune.agent.references import build_bank
    from attune.agent.speech_source import speech_router

    out = args.output or str(config.references_dir())
    manifest = build_bank(out, speech_router(config, args.tts))
    for entry in manifest["references"]:  # type: ignore[attr-defined]
        print(f"{entry['file']:24s} {entry['duration_s']:5.2f} s  {entry['sha256'][:12]}  {entry['transcript']}")
    print(f"wrote {out}/manifest.json (tts: {manifest['tts']})")
    return 0


def cmd_emotion_axis(args: argparse.Namespace, config: Config) -> int:
    from attune.agent.steering import compute_axis, measure_steering, save_axis

    axis, per_speaker = compute_axis(args.data)
    save_axis(axis, per_speaker, args.output, source=f"EmoDB-layout folder {Path(args.data).name}")
    print(json.dumps(axis.to_dict()))
    print(f"wrote {args.output} from {len(per_speaker)} speakers")
    if args.verify:
        m = measure_steering(args.data, axis)
        print(f"arousal over {m['clips']:.0f} neutral clips: {m['arousal_0']:.3f} as is, {m['arousal_plus1']:.3f} "
              f"at +1, {m['arousal_minus1']:.3f} at -1; +1 raises it on {m['raised_by_plus1']:.0%} of clips, "
              f"-1 lowers it on {m['lowered_by_minus1']:.0%}")
    return 0
