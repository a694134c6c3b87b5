"""The end-of-turn policy on people's speech: waits after the end of speech (p50/p95) and cut-offs, per set and
per RAVDESS emotion, for the configured policy and the one before issue 23 (smart-turn's doubt alone held a
finished sentence for the longest silence), and the configured one with the free wait (``pipeline.pacing``) a
slow and a fast machine's measured LLM speed give it.

Hearing (Silero VAD, smart-turn, Whisper at every pause) is slow and is saved to a JSON file; ``--load`` replays
the saved pauses with the policies in milliseconds (see ``attune_lab/endpoint_replay.py``).

Usage:
  .venv/bin/python scripts/endpoint-lab.py --save out/pauses.json [--ravdess DIR] [--librivox DIR]
      [--pause-set DIR] [--every N]
  .venv/bin/python scripts/endpoint-lab.py --load out/pauses.json [--json]
The pause set is made by ``scripts/make-pause-utterances.py DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from attune.config import load_config
from attune.core.audio import prepare, read_audio_file
from attune.core.machine import LLMSpeed
from attune.pipeline.endpoint import EndOfTurnPolicy, EndpointSettings
from attune.pipeline.pacing import TAIL_TOKENS, first_clause_eta_ms, first_clause_min_words, paced_endpoint
from attune.pipeline.settings import SessionSettings
from attune_lab.endpoint_replay import Recording, hear_pauses, ravdess_group, replay, report, summarise

RAVDESS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ravdess-dev"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
# Start-up LLM speeds (1.5B): generated tokens/s and the first token after an 11-token tail on a cached prefix.
# Fast: the developers' AVX-512/VNNI machine (bench-llm 19.9 tok/s, 246 ms); slow: the issue's AVX2-only 2-core
# EPYC (10.6 tok/s; its first token scaled from the developers' by the 968/504 ms the issue measured alone).
SPEEDS = {"slow machine": LLMSpeed(10.6, 472.0), "fast machine": LLMSpeed(19.9, 246.0)}


def recordings(args: argparse.Namespace) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if args.ravdess and Path(args.ravdess).is_dir():
        files = sorted(Path(args.ravdess).glob("*.wav"))[:: args.every]
        out += [(f, g) for f in files if (g := ravdess_group(f.name)) is not None]
    if args.librivox and Path(args.librivox).is_dir():
        out += [(f, "librivox") for f in sorted(Path(args.librivox).glob("*.wav"))]
    if args.pause_set and Path(args.pause_set).is_dir():
        for f in sorted(Path(args.pause_set).glob("*.wav")):
            out.append((f, "pause/paused" if f.name.startswith("p") else "pause/plain"))
    return out


def hear(args: argparse.Namespace) -> list[Recording]:
    from attune.backends.asr.asr_factory import create_asr
    from attune.backends.turn.smart_turn import SmartTurn
    from attune.pipeline.turn import create_vad

    config = load_config()
    settings = SessionSettings.from_config(config)
    asr, model, vad = create_asr(config), SmartTurn(), create_vad(config)
    todo = recordings(args)
    heard = []
    t0 = time.perf_counter()
    for i, (path, group) in enumerate(todo, 1):
        samples, rate = read_audio_file(path)
        x = prepare(samples, rate)[0]
        heard.append(hear_pauses(x, path.name, group, vad=vad, asr=asr, model=model, settings=settings.turn))
        if i % 25 == 0 or i == len(todo):
            print(f"  heard {i}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return heard


class FirstSoundReady(EndOfTurnPolicy):
    """The configured policy asked as the session asks it once the reply's first sound is queued."""

    def required_silence_ms(self, probability: float | None, words: str | None, *, sounded: bool = True) -> int:
        return super().required_silence_ms(probability, words, sounded=True)


def policies(settings: SessionSettings) -> dict[str, tuple[EndOfTurnPolicy, float | None]]:
    """The policy before issue 23 (finished words with P < 0.5 waited the longest silence), the one before its
    free wait (``likely_ms`` 700, no free wait: main at 62afafe), the configured one with the speed unknown, and
    with each of ``SPEEDS``; then the default with first sounds on (``eot_sounded_ms``) on each machine, where a
    commit in a pause the person goes on from before the reply's words could be heard is counted as resumed (the
    sound stops, one turn, one reply), not as a cut-off. Each with the silence before the reply's words could be
    heard (None: not counted)."""
    endpoint = settings.endpoint or EndpointSettings()
    out: dict[str, tuple[EndOfTurnPolicy, float | None]] = {
        "before (issue 23)": (EndOfTurnPolicy(replace(endpoint, worded_ms=endpoint.unfinished_ms, likely_ms=700)),
                              None),
        "main (62afafe)": (EndOfTurnPolicy(replace(endpoint, likely_ms=700)), None),
        "now, speed unknown": (EndOfTurnPolicy(endpoint), None),
        # every commit in a pause counted as a cut-off (what the policy alone does, whatever plays)
        "now, first sound ready (eot_sounded_ms), any commit in a pause": (FirstSoundReady(endpoint), None)}
    speculate = settings.turn.speculate_silence_ms
    for name, speed in SPEEDS.items():
        words = first_clause_min_words(speed, settings.reply.first_clause_min_words)
        paced = paced_endpoint(endpoint, speed, speculate_ms=speculate, clause_words=words,
                               note_first=settings.voice_note_first, acknowledgements=False)
        assert paced is not None
        out[f"now, {name} ({speed.tokens_per_s} tok/s)"] = (EndOfTurnPolicy(paced), None)
    for name, speed in SPEEDS.items():
        words = first_clause_min_words(speed, settings.reply.first_clause_min_words)
        eta = first_clause_eta_ms(speed, tail_tokens=TAIL_TOKENS[settings.voice_note_first], clause_words=words)
        assert eta is not None
        # the estimate leaves out the final ASR pass (~250-450 ms measured), so it counts more cut-offs, not fewer
        out[f"now, first sound ready, {name}: words after {speculate + eta:.0f} ms"] = (
            FirstSoundReady(endpoint), speculate + eta)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--save", help="hear the recordings and save their pauses here")
    parser.add_argument("--load", help="replay pauses saved by --save")
    parser.add_argument("--ravdess", default=str(RAVDESS))
    parser.add_argument("--librivox", default=str(LIBRIVOX))
    parser.add_argument("--pause-set", default="", help="a directory made by scripts/make-pause-utterances.py")
    parser.add_argument("--every", type=int, default=1, help="take every Nth RAVDESS file")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    args = parser.parse_args()
    if bool(args.save) == bool(args.load):
        parser.error("give exactly one of --save and --load")
    if args.save:
        heard = hear(args)
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps([r.to_json() for r in heard], indent=0))
    else:
        heard = [Recording.from_json(d) for d in json.loads(Path(args.load).read_text())]
    settings = SessionSettings.from_config(load_config())
    endpoint = settings.endpoint or EndpointSettings()
    speculate, longest = settings.turn.speculate_silence_ms, endpoint.unfinished_ms
    results = {}
    for label, (policy, words_after) in policies(settings).items():
        outcomes = [replay(r, policy, speculate_ms=speculate, longest_ms=longest, words_after_ms=words_after,
                           preroll_ms=settings.turn.preroll_ms) for r in heard]
        if args.json:
            results[label] = [s.__dict__ for s in summarise(outcomes, longest)]
        else:
            print(f"== {label}: {policy.s}")
            print("\n".join(report(outcomes, longest)))
            for o in outcomes:
                if o.cut_off:
                    r = next(r for r in heard if r.name == o.name)
                    p = r.pauses[o.pause]
                    print(f"  cut off: {o.name} at {p.end_s:.2f} s after {p.words!r} (P {p.probability:.2f}, "
                          f"gap {p.gap_ms:.0f} ms)")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
