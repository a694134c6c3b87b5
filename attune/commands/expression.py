"""``speak``: a sentence spoken with an emotion's prosody into a WAV file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from attune.commands.flags import renamed
from attune.config import Config
from attune.core.errors import AttuneError

BENCH_TEXT = ("The weather was lovely today, and we walked along the river for an hour. "
              "Then we went home, made some tea, and talked until it was dark.")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("speak", help="speak a sentence with an emotion's prosody into a WAV file")
    p.add_argument("--text", required=True, help="the sentence to speak (normalised as a reply's would be)")
    p.add_argument("--emotion", default="neutral", help="one of the 26 categories, e.g. calm, sad, excited")
    p.add_argument("--intensity", type=unit_interval, default=1.0, help="0..1, scales the profile toward neutral")
    renamed(p, "--output", "--out", required=True, help="WAV file to write")
    p.add_argument("--tts", default=None, help="TTS provider: piper | espeak | csm (default: expression.tts)")
    p.set_defaults(handler=cmd_speak)


def unit_interval(text: str) -> float:
    """argparse type of a value in 0..1 (NaN and infinities refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also False for NaN
        raise argparse.ArgumentTypeError(f"must be in 0..1, got {text}")
    return value


def cmd_speak(args: argparse.Namespace, config: Config) -> int:
    from attune.agent import speech_source
    from attune.core.audio import write_wav
    from attune.core.paths import writable_output
    from attune.core.prosody import profile_for

    out = writable_output(args.output)  # before synthesis: a bad path is one line, not a traceback at the end
    try:
        params = profile_for(args.emotion, args.intensity)
    except ValueError as exc:
        raise AttuneError(str(exc)) from None
    router = speech_source.speech_router(config, args.tts, fallback=True)
    speech = speech_source.render_speech(args.text, params, router=router, apply_dsp=config.expression.apply_prosody)
    write_wav(out, speech.audio, speech.sample_rate)
    native = ", ".join(speech.native) or "none"
    print(f"wrote {out}: {len(speech.audio) / speech.sample_rate:.2f} s at {speech.sample_rate} Hz, "
          f"{args.emotion} {params.to_dict()} (tts {speech.provider}; native: {native}; the rest by the DSP)")
    for name, why in router.unavailable.items():
        print(f"warning: TTS provider {name} is unavailable, spoke with {speech.provider}: {why}", file=sys.stderr)
    if speech.text != args.text:
        print(f"spoken as: {speech.text}")
    return 0

