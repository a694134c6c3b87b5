"""The ``bench-echo`` subcommand: what the echo canceller does on a simulated loudspeaker path. The agent speaks
(Piper, the embedded voice) into a reverberant room; a person (LibriVox clips with known words) talks over it.
Prints the echo return loss enhancement, whether Silero VAD still hears speech in the echo, and how well Whisper
understands the person through the canceller compared with the raw microphone and the clean recording."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from attune.config import Config
from attune.core.audio import SAMPLE_RATE, load_wav, prepare
from attune.core.errors import AudioInputError

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
AGENT_LINES = ("I'm sorry to hear that, it sounds like a really hard week for you.",
               "Take a slow breath with me, and tell me what happened when you got home.",
               "We can go through it together, one small step at a time, whenever you are ready.")
USER_AT_S = 3.0  # the person starts talking 3 s into the agent's speech (ERLE is measured before that)
CUT_AFTER_S = 0.5  # barge-in: the agent falls silent this long after the person starts (barge_in_min_ms + VAD)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-echo", help="echo cancellation on a simulated loudspeaker path: ERLE, VAD, ASR")
    p.add_argument("--data", default=str(LIBRIVOX), help="folder of LibriVox clips with a transcription file")
    p.add_argument("--room", choices=("pyroomacoustics", "synthetic"), default="pyroomacoustics",
                   help="the simulated room: image sources (pyroomacoustics) or an exponential-noise response")
    p.add_argument("--rt60", type=float, default=0.4, help="reverberation time of the room, s")
    p.add_argument("--gain", type=float, default=1.0, help="echo level relative to the played signal (1 = as loud)")
    p.add_argument("--delay-ms", type=float, default=30.0, help="speaker-to-microphone delay, ms")
    p.add_argument("--no-asr", action="store_true", help="skip the Whisper check of the person's words")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_echo)


def agent_voice(config: Config) -> np.ndarray:
    """``AGENT_LINES`` in the embedded voice (calm prosody), 16 kHz, a quarter second apart."""
    from attune.agent.speech_source import render_speech, speech_router
    from attune.core.prosody import profile_for

    router = speech_router(config, None)
    parts: list[np.ndarray] = []
    for line in AGENT_LINES:
        speech = render_speech(line, profile_for("calm"), router=router, level_dbfs=-24.0)
        parts += [prepare(speech.audio, speech.sample_rate, SAMPLE_RATE)[0], np.zeros(SAMPLE_RATE // 4, np.float32)]
    return np.concatenate(parts)


def _looped(voice: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    return np.tile(voice, -(-n // len(voice)))[:n]


def _voiced_fraction(samples: np.ndarray) -> float:
    """Share of 32 ms chunks Silero VAD calls speech (threshold 0.5)."""
    from attune.backends.vad import VAD_CHUNK, SileroVAD

    vad = SileroVAD()
    chunks = [samples[i:i + VAD_CHUNK] for i in range(0, len(samples) - VAD_CHUNK + 1, VAD_CHUNK)]
    return float(np.mean([vad.probability(c) >= 0.5 for c in chunks])) if chunks else 0.0


def _wer(asr: Any, samples: np.ndarray, words: str) -> float:
    from attune.core.frames import AudioChunk
    from attune_lab.bench_engines import normalize_words, word_errors

    text = asr.transcribe(AudioChunk(samples.astype(np.float32), SAMPLE_RATE)).text
    reference = normalize_words(words)
    return word_errors(reference, normalize_words(text)) / max(1, len(reference))


def bench(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    from attune.transports.echo import PassThrough, create_echo_canceller
    from attune_lab.bench_engines import librivox_pairs
    from attune_lab.echo_path import EchoPath, measure, room_rir, speech_similarity, synthetic_rir

    pairs = librivox_pairs(Path(args.data))
    if not pairs:
        raise AudioInputError(f"no LibriVox clips with a transcription in {args.data} "
                              "(apt-get install pocketsphinx-testdata)")
    rir, made_by = room_rir(args.rt60) if args.room == "pyroomacoustics" else (synthetic_rir(args.rt60), "synthetic")
    asr = None
    if not args.no_asr:
        from attune.backends.asr.asr_factory import create_asr

        asr = create_asr(config)
    voice = agent_voice(config)
    rows = []
    for path, words in pairs:
        user = prepare(*load_wav(path), SAMPLE_RATE)[0]
        far = _looped(voice, USER_AT_S + len(user) / SAMPLE_RATE + 0.5)  # the agent talks all through
        echo = EchoPath(rir, delay_s=args.delay_ms / 1000.0, gain=args.gain).run(far)
        aec = measure(create_echo_canceller("webrtc"), far, echo, user, USER_AT_S)
        raw = measure(PassThrough(), far, echo, user, USER_AT_S)
        at = int(USER_AT_S * SAMPLE_RATE)
        span = slice(at, at + len(user))
        row: dict[str, Any] = {
            "clip": path.name, "erle_db": aec.erle_db, "erle_first_s_db": aec.erle_first_s_db,
            "cpu_ms_p50": aec.cpu_ms_p50, "cpu_ms_p95": aec.cpu_ms_p95,
            "echo_voiced_raw": round(_voiced_fraction(raw.output[SAMPLE_RATE:at]), 3),
            "echo_voiced_aec": round(_voiced_fraction(aec.output[SAMPLE_RATE:at]), 3),
            "user_voiced_clean": round(_voiced_fraction(user), 3),
            "user_voiced_aec": round(_voiced_fraction(aec.output[span]), 3),
            "user_similarity_raw": round(speech_similarity(raw.output[span], user)[0], 3),
            "user_similarity_aec": round(speech_similarity(aec.output[span], user)[0], 3)}
        if asr is not None:
            row.update(wer_clean=round(_wer(asr, user, words), 3), wer_raw=round(_wer(asr, raw.output[span], words), 3),
                       wer_aec=round(_wer(asr, aec.output[span], words), 3))
            cut = far.copy()  # the barge-in case: the agent stops CUT_AFTER_S after the person starts
            cut[at + int(CUT_AFTER_S * SAMPLE_RATE):] = 0.0
            cut_echo = EchoPath(rir, delay_s=args.delay_ms / 1000.0, gain=args.gain).run(cut)
            cut_aec = measure(create_echo_canceller("webrtc"), cut, cut_echo, user, USER_AT_S)
            cut_raw = measure(PassThrough(), cut, cut_echo, user, USER_AT_S)
            row.update(wer_barge_in_raw=round(_wer(asr, cut_raw.output[span], words), 3),
                       wer_barge_in_aec=round(_wer(asr, cut_aec.output[span], words), 3))
        rows.append(row)
        if not args.json:
            print(json.dumps(row))
    keys = [k for k in rows[0] if k != "clip"]
    return {"room": made_by, "rt60_s": args.rt60, "gain": args.gain, "delay_ms": args.delay_ms,
            "clips": len(rows), "mean": {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys},
            "per_clip": rows}


def cmd_bench_echo(args: argparse.Namespace, config: Config) -> int:
    result = bench(config, args)
    if args.json:
        print(json.dumps(result))
        return 0
    m = result["mean"]
    print(f"\n{result['clips']} clips, room {result['room']} (RT60 {result['rt60_s']} s), echo gain {result['gain']}, "
          f"delay {result['delay_ms']} ms; means:")
    print(f"  ERLE {m['erle_db']} dB (first second {m['erle_first_s_db']} dB); canceller CPU per 20 ms frame "
          f"p50 {m['cpu_ms_p50']} ms, p95 {m['cpu_ms_p95']} ms")
    print(f"  Silero VAD hears speech in the echo alone: raw {m['echo_voiced_raw']:.1%} of chunks, "
          f"after the canceller {m['echo_voiced_aec']:.1%}")
    print(f"  Silero VAD hears the person talking over the agent in {m['user_voiced_aec']:.1%} of chunks after the "
          f"canceller ({m['user_voiced_clean']:.1%} of the clean clip's)")
    print(f"  the person's speech (similarity to the clean clip): raw {m['user_similarity_raw']}, "
          f"after the canceller {m['user_similarity_aec']}")
    if "wer_aec" in m:
        print(f"  Whisper WER on the person's words: clean {m['wer_clean']:.1%}; with the agent talking all through: "
              f"raw microphone {m['wer_raw']:.1%}, after the canceller {m['wer_aec']:.1%}; with the agent cut "
              f"{CUT_AFTER_S} s in (barge-in): raw {m['wer_barge_in_raw']:.1%}, after the canceller "
              f"{m['wer_barge_in_aec']:.1%}")
    return 0
