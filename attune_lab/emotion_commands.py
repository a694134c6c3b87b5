"""Emotion lab commands: ``eval-emotion`` (held-out figures, cold and warm, clean and degraded), ``train-emotion``
(the shipped prosodic model or Whisper head), ``degrade-emotion`` (the robustness sets) and ``bench-emotion`` (CPU
per streaming hop)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from attune.backends.emotion.whisper_encoder import POOLINGS
from attune.backends.emotion.whisper_head import DEFAULT_POOLING, ENCODERS
from attune.commands.flags import renamed
from attune.config import REPO_ROOT, Config
from attune.core import catalog
from attune.core.errors import AudioInputError
from attune.core.stats import percentile

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "emodb-dev"


def add_commands(sub: Any) -> None:
    p = sub.add_parser("eval-emotion", help="held-out emotion figures on EmoDB / RAVDESS folders (cold and warm)")
    p.add_argument("--data", required=True, action="append",
                   help="folder of EmoDB (SSTTTEV.wav) or RAVDESS (MM-VV-EE-II-SS-RR-AA.wav) files; repeat for both")
    p.add_argument("--backend", default=None, choices=catalog.names("emotion"),
                   help="emotion backend (default: emotion.backend)")
    p.add_argument("--mode", choices=("cold", "warm", "both"), default="both",
                   help="cold: a fresh detector per utterance; warm: one per speaker, adapting (default: both)")
    p.add_argument("--encoder", choices=ENCODERS, default=None,
                   help="Whisper encoder of the whisper/hybrid heads (default: emotion.encoder; tiny.en_l2: "
                        "tiny.en's second block)")
    p.add_argument("--cpu-files", type=int, default=20, help="files timed for CPU per turn (0: skip)")
    _degraded_options(p, "learned backends: also read every degraded copy under DIR/<condition>/ "
                         "(degrade-emotion writes them)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_eval)
    p = sub.add_parser("train-emotion", help="retrain a shipped emotion model (prosodic or Whisper head)")
    p.add_argument("--data", required=True, action="append", help="EmoDB or RAVDESS folder; repeat for both")
    p.add_argument("--backend", choices=("prosodic", "whisper"), default="prosodic",
                   help="prosodic: prosodic_model.json; whisper: whisper_head_<encoder>.npz")
    p.add_argument("--encoder", choices=ENCODERS, default="tiny.en", help="with --backend whisper")
    p.add_argument("--pooling", choices=POOLINGS, default=DEFAULT_POOLING,
                   help="with --backend whisper: over all encoder rows, the voiced ones, or the voiced ones clear "
                        "of the noise floor (talker*)")
    renamed(p, "--output", "--out", default=None, help="model file (default: the shipped one)")
    p.add_argument("--l2", type=float, default=None, help="L2 penalty of the logistic regression")
    _degraded_options(p, "the folder of degraded copies that --augment reads")
    p.set_defaults(handler=cmd_train)
    p = sub.add_parser("degrade-emotion", help="degraded copies of EmoDB / RAVDESS folders: phone, room, babble")
    p.add_argument("--data", required=True, action="append", help="EmoDB or RAVDESS folder; repeat for both")
    p.add_argument("--out", required=True, help="folder for the copies: one subfolder per condition")
    p.add_argument("--condition", action="append", default=None,
                   help="phone | room | babble20 | babble10 (the test sets) | babblemix | babblemix2 (SNR drawn "
                        "from 5-20 dB, for training); repeat (default: all)")
    p.set_defaults(handler=cmd_degrade)
    p = sub.add_parser("bench-emotion", help="CPU ms per 500 ms streaming hop over a minute of speech")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of audio to stream")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="EmoDB folder (synthetic speech if absent)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench)




def _degraded_options(p: Any, help_dir: str) -> None:
    p.add_argument("--degraded", default=None, metavar="DIR", help=help_dir)
    p.add_argument("--augment", action="append", default=[], metavar="CONDITION",
                   help="train with the training speakers' copies under DIR/CONDITION too; repeat")


def cmd_degrade(args: argparse.Namespace, config: Config) -> int:
    from attune_lab.emotion.dataset import list_utterances
    from attune_lab.emotion.degrade import CONDITIONS, write_degraded

    utterances = list_utterances(args.data)
    conditions = tuple(args.condition or CONDITIONS)
    started = time.perf_counter()
    folders = write_degraded(utterances, Path(args.out), conditions)
    for cond, folder in folders.items():
        print(f"{cond}: {len(utterances)} files in {folder}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


def _degraded_conditions(args: argparse.Namespace) -> list[str]:
    """The conditions under ``--degraded`` (none without it); AudioInputError, before any work, when the folder
    or an ``--augment`` condition is missing."""
    from attune_lab.emotion.degrade import CONDITIONS

    if args.augment and not args.degraded:
        raise AudioInputError("--augment needs --degraded DIR (the folder degrade-emotion wrote)")
    if not args.degraded:
        return []
    root = Path(args.degraded)
    present = [c for c in CONDITIONS if (root / c).is_dir()]
    unknown = [c for c in args.augment if c not in present]
    if unknown or not present:
        raise AudioInputError(f"no degraded copies {unknown[0] if unknown else ''} in {root} (found: "
                              f"{', '.join(present) or 'none'}); write them with `run_agent.py degrade-emotion`")
    return present


def _condition_sets(args: argparse.Namespace, conditions: list[str], sets: dict[str, Any], models_dir: Path
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]]]:
    """({condition: {kind: set}}, {kind: [augment sets]}) of ``conditions`` under ``--degraded``."""
    from attune_lab.emotion.robustness import condition_set

    root = Path(args.degraded or ".")
    tests = {c: {k: condition_set(data, root, c, k, models_dir) for k, data in sets.items()} for c in conditions}
    return tests, {k: [tests[c][k] for c in args.augment] for k in sets}


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    from dataclasses import replace

    from attune.backends.emotion.emotion_factory import build_emotion_backend
    from attune_lab.emotion import benchmark as bm
    from attune_lab.emotion.dataset import list_utterances

    started = time.perf_counter()
    name = args.backend or config.emotion.backend
    emo = replace(config.emotion, encoder=args.encoder or config.emotion.encoder)
    cfg = replace(config, emotion=emo)
    utterances = list_utterances(args.data)
    conditions = _degraded_conditions(args)
    if conditions and name not in bm.LEARNED:
        raise AudioInputError("--degraded reads the learned backends' features (prosodic, whisper, hybrid)")
    modes = ("cold", "warm") if args.mode == "both" else (args.mode,)
    out: dict[str, Any] = {"backend": name, "encoder": emo.encoder if name in ("whisper", "hybrid") else None,
                           "files": len(utterances), "speakers": len({u.speaker for u in utterances})}
    if name in bm.LEARNED:
        sets = bm.feature_sets(name, utterances, emo.encoder, config.models_dir())
        out["protocol"] = "retrained without the test speakers (leave-one-speaker-out; cross-corpus)"
        tests, augment = _condition_sets(args, conditions, sets, config.models_dir())
        if tests:
            from attune_lab.emotion.robustness import evaluate_conditions

            out["protocol"] += f"; degraded copies from {args.degraded}, trained with {args.augment or 'clean only'}"
            out["modes"] = {m: {("loso" if c == "clean" else f"loso:{c}"): f for c, f in figs.items()}
                            for m, figs in evaluate_conditions(name, sets, tests, augment, emo.encoder, modes,
                                                               emo.hybrid_neural_weight).items()}
        else:
            out["modes"] = bm.evaluate_learned(name, sets, emo.encoder, modes, emo.hybrid_neural_weight)
    else:
        out["protocol"] = "the backend as shipped, through analyze()"
        out["modes"] = bm.evaluate_shipped(lambda: build_emotion_backend(name, cfg), utterances, modes)
    if args.cpu_files > 0:
        out["cpu_per_turn"] = bm.cpu_per_turn(build_emotion_backend(name, cfg), utterances, args.cpu_files)
    out["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(out, default=float))
    else:
        print(_eval_text(out))
    return 0


def _eval_text(out: dict[str, Any]) -> str:
    from attune_lab.emotion.measures import format_report, summary_line

    enc = f" ({out['encoder']} encoder)" if out["encoder"] else ""
    lines = [f"backend {out['backend']}{enc}: {out['files']} files, {out['speakers']} speakers; {out['protocol']}"]
    for mode, protocols in out["modes"].items():
        for proto, figs in protocols.items():
            if "n_files" in figs:  # one score dict (cross-corpus)
                lines.append(f"[{mode}] {proto}: {summary_line(figs)}  (n={figs['n_files']})")
                continue
            for part, m in figs.items():
                lines.append(f"[{mode}] {proto} {part}: {summary_line(m)}  (n={m['n_files']})")
    for mode, protocols in out["modes"].items():
        first = next(iter(protocols.values()))
        lines += ["", f"[{mode}] {next(iter(protocols))} all speakers, in detail:", format_report(first["all"])]
    cpu = out.get("cpu_per_turn")
    if cpu:
        text = f"CPU per turn (end of turn, {int(cpu['n'])} files): whole p50 {cpu['whole_p50_ms']:.1f} ms, " \
               f"p95 {cpu['whole_p95_ms']:.1f} ms"
        if "encoder_reused_p50_ms" in cpu:
            text += (f"; reusing the ASR's encoder pass p50 {cpu['encoder_reused_p50_ms']:.1f} ms, "
                     f"p95 {cpu['encoder_reused_p95_ms']:.1f} ms")
        lines += ["", text + " (target <= 30 ms)"]
    lines.append(f"({out['seconds']} s)")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from attune.backends.emotion.model import MODEL_PATH, PROSODIC
    from attune.backends.emotion.whisper_head import feature_kind, head_path
    from attune_lab.emotion import evaluation as ev
    from attune_lab.emotion.dataset import list_utterances

    utterances = list_utterances(args.data)
    _degraded_conditions(args)
    kind = PROSODIC if args.backend == "prosodic" else feature_kind(args.encoder, args.pooling)
    data = ev.features_for(utterances, kind, config.models_dir())
    names = sorted({Path(d).name for d in args.data})
    _, augment = _condition_sets(args, list(args.augment), {kind: data}, config.models_dir())
    info: dict[str, object] = {"data": names, **({"augment": list(args.augment)} if args.augment else {})}
    model, figures = ev.train_shipped(data, kind, args.l2, info=info, augment=augment.get(kind, ()),
                                      progress=lambda msg: print(msg, file=sys.stderr))
    if kind != PROSODIC:
        model = _with_human_detector(model, data, args.encoder, args.pooling, config)
    out = Path(args.output) if args.output else (MODEL_PATH if kind == PROSODIC else head_path(args.encoder))
    model.save(out)
    print(f"trained {kind} on {len(data.utterances)} files of {len(set(data.speakers))} speakers -> {out}")
    for mode in ("cold", "warm"):
        print(f"leave-one-speaker-out, {mode}: " + ", ".join(
            f"{k} {figures[f'loso_{mode}_{k}']:.3f}" for k in ("uar", "group5_uar", "valence_uar", "arousal_uar",
                                                               "class4_uar", "sad_recall", "ece")))
    print(f"calibration temperature: {model.temperature_known:.2f} (known speaker), "
          f"{model.temperature_stranger:.2f} (stranger); out-of-distribution scale {model.ood_scale:.2f}")
    if "human_detector" in model.info:
        print(f"human-voice detector: {model.info['human_detector']}")
    return 0


def _with_human_detector(model: Any, data: Any, encoder: str, pooling: str, config: Config) -> Any:
    """The head with its human-voice detector: espeak-ng voices vs the corpora's people, checked on held-out
    speakers (how many real people it would wrongly flag) and on Piper (an engine it never saw)."""
    from dataclasses import replace

    from attune.backends.emotion.model import fit_human_detector
    from attune.backends.emotion.whisper_encoder import pool
    from attune.backends.emotion.whisper_head import make_encoder
    from attune_lab.synthetic_voices import SENTENCES, espeak_clips, piper_clips

    enc = make_encoder(config.models_dir(), encoder)
    print("rendering espeak-ng and Piper voices for the human-voice detector", file=sys.stderr)

    def pooled(clips: list[np.ndarray]) -> np.ndarray:
        return np.stack([pool(enc.states(x), pooling, x) for x in clips]) if clips else np.zeros((0, model.dim))

    def flagged(m: Any, rows: np.ndarray) -> float | None:
        if not len(rows):
            return None
        return round(float(np.mean([m.human_probability((x - m.prior_mean) / m.prior_std) < 0.5 for x in rows])), 4)

    espeak = pooled(espeak_clips())
    piper_train, piper_test = pooled(piper_clips(SENTENCES[::2])), pooled(piper_clips(SENTENCES[1::2]))
    people = []
    for s in np.unique(data.speakers):
        test = data.speakers == s
        w, b = fit_human_detector(model, data.features[~test], np.vstack([espeak, piper_train]))
        people.append(flagged(replace(model, human_weights=w, human_bias=b), data.features[test]) or 0.0)
    w, b = fit_human_detector(model, data.features, espeak)
    unseen_engine = flagged(replace(model, human_weights=w, human_bias=b), np.vstack([piper_train, piper_test]))
    w, b = fit_human_detector(model, data.features, np.vstack([espeak, piper_train]))
    model = replace(model, human_weights=w, human_bias=b)
    check = {"espeak_clips": len(espeak), "piper_train_clips": len(piper_train),
             "heldout_people_flagged": round(float(np.mean(people)), 4),
             "piper_heldout_sentences_flagged": flagged(model, piper_test),
             "piper_unseen_engine_flagged": unseen_engine}
    return replace(model, info={**model.info, "human_detector": check})


def _bench_audio(data: str, seconds: float) -> tuple[np.ndarray, str]:
    from attune.core.audio import SAMPLE_RATE, load_wav, resample
    from attune_lab.emotion.dataset import list_utterances

    need = int(seconds * SAMPLE_RATE)
    try:
        files = [u.path for u in list_utterances([data])]
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
