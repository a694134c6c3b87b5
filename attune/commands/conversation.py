"""Conversation subcommands: ``file`` (a recording as a conversation) and ``mic`` (live, or a demo where no
microphone opens)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from attune.config import Config
from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE, load_wav, prepare, write_wav
from attune.core.errors import BackendUnavailable
from attune.core.events import SessionEvent
from attune.core.paths import writable_folder, writable_output
from attune.core.process_memory import release_free_memory


def add_commands(sub: Any) -> None:
    p = sub.add_parser("file", help="talk to the agent with a recording; writes its reply audio")
    p.add_argument("--input", required=True, help="WAV (any rate); several utterances = several turns")
    p.add_argument("--output", required=True, help="WAV of the reply audio, on the input's timeline")
    p.add_argument("--fast", action="store_true", help="stream faster than real time (latencies meaningless)")
    p.add_argument("--quiet", action="store_true", help="print only the per-turn summary")
    p.set_defaults(handler=cmd_file)
    p = sub.add_parser("mic", help="a live conversation through the microphone and speaker (echo-cancelled)")
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    p.add_argument("--input-device", default=None,
                   help="microphone: index or part of its name (default: local_audio.input_device)")
    p.add_argument("--output-device", default=None,
                   help="speaker: index or part of its name (default: local_audio.output_device)")
    p.add_argument("--echo", choices=("webrtc", "off"), default=None,
                   help="echo cancellation (default: local_audio.echo_cancellation; off = headphones)")
    p.add_argument("--demo", action="store_true",
                   help="where no microphone can be opened, hold a demo conversation from synthesised speech")
    p.add_argument("--demo-out", default="out", help="folder for the demo's input and reply WAVs")
    p.set_defaults(handler=cmd_mic)


def _printer(quiet: bool) -> Any:
    def show(event: SessionEvent) -> None:
        if quiet:
            return
        d = event.data
        if event.type == ev.SPEECH_STARTED:
            print(f"[{d['audio_start_ms'] / 1000:7.2f}s] (user speaking)")
        elif event.type == ev.TRANSCRIPT:
            print(f"  you: {d['transcript']}")
        elif event.type == ev.EMOTION_TURN:
            print(f"  emotion: {d['context'] or 'unknown'}")
        elif event.type == ev.RESPONSE_CREATED:
            print(f"  strategy: {d.get('strategy')} -> expressing {d.get('expressed_emotion')}")
        elif event.type == ev.TRANSCRIPT_DELTA:
            print(f"  agent: {d['delta']}")
        elif event.type == ev.RESPONSE_CANCELLED:
            print("  (interrupted)")
        elif event.type == ev.ERROR:
            print(f"  error [{d['code']}]: {d['message']}")
        sys.stdout.flush()
    return show


def _summary(trace: dict[str, Any]) -> str:
    lat = trace.get("latency_ms", {})
    stages = ", ".join(f"{k} {v:.0f}" for k, v in lat.items() if v is not None)
    return (f"turn {trace['turn']}: \"{trace.get('transcript', '')}\" | user {trace.get('user_emotion')} -> "
            f"{trace.get('strategy')} -> {trace.get('expressed_emotion')} | reply \"{trace.get('reply_text', '')}\" "
            f"| {trace.get('status')} | voice-to-voice {trace.get('voice_to_voice_ms')} ms | ms after speech end: "
            f"{stages}")


def load_16k(path: str | Path) -> Any:
    samples, rate = load_wav(path)
    mono, _ = prepare(samples, rate, SAMPLE_RATE)
    return mono


async def _file(args: argparse.Namespace, config: Config) -> int:
    from attune.pipeline.session import Session
    from attune.pipeline.stack import build_backends, warm_up
    from attune.transports.file import stream_file

    output = writable_output(args.output)  # before any work: a bad path is one line now, not a lost run later
    samples = load_16k(args.input)
    backends = build_backends(config)
    await warm_up(backends, config)
    release_free_memory()  # the warm-up's freed buffers, before the conversation
    async with Session(config, backends) as session:
        run = await stream_file(session, samples, speed=0.0 if args.fast else 1.0, on_event=_printer(args.quiet))
    write_wav(output, run.output, run.output_rate)
    print(f"\n{len(session.turns)} turn(s); reply audio written to {args.output}")
    for trace in session.turns:
        print(_summary(trace.to_dict()))
        print(json.dumps(trace.to_dict(), default=str))
    return 0


def cmd_file(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_file(args, config))


async def _mic(args: argparse.Namespace, config: Config) -> int:
    from attune.pipeline.session import Session
    from attune.pipeline.stack import build_backends, warm_up
    from attune.transports.microphone import check_devices, open_local_audio, resolve_device, run_microphone

    la = config.local_audio
    dev_in = la.input_device if args.input_device is None else args.input_device
    dev_out = la.output_device if args.output_device is None else args.output_device
    try:  # fail before loading models when there is no PortAudio or no device
        check_devices(resolve_device(dev_in, "input"), resolve_device(dev_out, "output"))
    except BackendUnavailable as exc:
        if not args.demo:
            raise
        out_dir = writable_folder(args.demo_out)
        print(f"no live audio here ({exc}); holding a demo conversation instead.\n")
        return await _demo(config, out_dir)
    audio = open_local_audio(config, input_device=dev_in, output_device=dev_out, echo=args.echo)
    backends = build_backends(config)
    await warm_up(backends, config)
    hint = "use headphones: echo cancellation is off" if audio.canceller.name == "off" else (
        f"echo cancellation: {audio.canceller.name}, loudspeakers are fine")
    print(f"listening; speak (Ctrl+C to stop); {hint}.")
    async with Session(config, backends) as session:
        with audio:
            await run_microphone(session, audio, on_event=_printer(False))
    return 0


def list_audio_devices() -> int:
    """Print PortAudio's devices (``<`` default input, ``>`` default output)."""
    from attune.transports.microphone import list_devices

    devices = list_devices()
    for d in devices:
        print(d.describe())
    if not devices:
        print("no audio devices")
    return 0


# Two turns a person might say, each spoken with the prosody of how they feel, so the demo exercises the
# emotion detector, the strategy and the expressive reply end to end.
DEMO_TURNS = (
    ("I lost my grandmother last week and I just can't stop crying.", "sad"),
    ("The delivery is late again and nobody answers the phone!", "angry"),
)


def demo_utterances(config: Config, router: Any = None) -> list[Any]:
    """The demo's user side: each of DEMO_TURNS spoken by the embedded TTS, as 16 kHz mono. ``router``: speak
    through voices already loaded (default: a router of its own, released on return). Blocking."""
    from attune.agent.speech_source import render_speech
    from attune.core.prosody import profile_for

    out = []
    for text, emotion in DEMO_TURNS:
        speech = render_speech(text, profile_for(emotion), config=config, router=router, level_dbfs=-22.0)
        out.append(prepare(speech.audio, speech.sample_rate, SAMPLE_RATE)[0])
    return out


def _write_demo(out_dir: Path, user: Any, reply: Any, reply_rate: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_wav(out_dir / "demo_input.wav", user, SAMPLE_RATE)
    write_wav(out_dir / "demo_reply.wav", reply, reply_rate)


async def _demo(config: Config, out_dir: Path) -> int:
    """Speak each demo utterance into one session, waiting for the agent's reply before the next, as a person
    would; write what the user said and what the agent answered on one timeline."""
    import numpy as np

    from attune.pipeline.session import Session
    from attune.pipeline.stack import build_backends, warm_up
    from attune.transports.file import stream_file

    # The user's side first, through its own router, which is gone (and its memory handed back) before the
    # session's engines load: rendering on top of the loaded stack would add its buffers to the peak.
    utterances = await asyncio.to_thread(demo_utterances, config)
    release_free_memory()
    backends = build_backends(config)
    await warm_up(backends, config)
    release_free_memory()
    user = np.zeros(0, np.float32)
    reply = np.zeros(0, np.float32)
    rate = config.pipeline.output_sample_rate
    async with Session(config, backends) as session:
        for speech in utterances:
            user = np.concatenate([user, np.zeros(int(session.now * SAMPLE_RATE) - len(user), np.float32), speech])
            run = await stream_file(session, speech, speed=1.0, on_event=_printer(False))
            start = int(round(run.origin_s * rate))
            reply = np.pad(reply, (0, max(0, start + len(run.output) - len(reply))))
            reply[start:start + len(run.output)] += run.output
    await asyncio.to_thread(_write_demo, out_dir, user, reply, rate)
    print(f"\n{len(session.turns)} turn(s); the user's side is in {out_dir / 'demo_input.wav'}, "
          f"the agent's replies in {out_dir / 'demo_reply.wav'}")
    for trace in session.turns:
        print(_summary(trace.to_dict()))
    return 0 if session.turns else 1


def cmd_mic(args: argparse.Namespace, config: Config) -> int:
    if args.list_devices:
        return list_audio_devices()
    return asyncio.run(_mic(args, config))
