"""``bench-latency``: voice-to-voice latency of the embedded stack over a folder of WAVs, one session per file,
with the first model-written word, the prompt tail and the stage medians beside it."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from attune.backends.base import Completion, LLMBackend
from attune.commands.conversation import load_16k
from attune.config import Config
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import AudioInputError, LLMError
from attune.core.trace import MARKS
from attune_lab.latency import percentile, speech_end_s, voice_to_voice


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench-latency", help="voice-to-voice latency of the full stack over a folder of WAVs")
    p.add_argument("--data", required=True, help="folder of WAV files, one utterance each")
    p.add_argument("--limit", type=int, default=0, help="use only the first N files (0 = all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--temperature", type=float, default=None,
                   help="the LLM's sampling temperature (default: config); 0 for clean A/Bs")
    p.set_defaults(handler=cmd_bench_latency)


PREMATURE_MARGIN_S = 0.25  # a turn committed this much before the speech's real end cut the person off


def file_figures(samples: Any, run: Any, traces: list[dict[str, Any]]) -> dict[str, Any]:
    """One bench file's figures from its audio, its reply audio and its turns' traces (``TurnTrace.to_dict()``):
    voice-to-voice (the audio definition), the first model-written word heard (an acknowledgement excluded), the tail
    tokens evaluated after the turn, the input lag, and whether a turn was committed before the speech ended."""
    end = speech_end_s(samples, SAMPLE_RATE)
    true_end = end if end is not None else 0.0
    # The first sound heard after the person finished: a first sound played in a pause they then went on from (a
    # commit resumed as one turn) came before the end and is not what they waited for.
    measured = voice_to_voice(samples, SAMPLE_RATE, run.output, run.output_rate, after_s=true_end)
    premature = any(t.get("speech_end_s", true_end) < true_end - PREMATURE_MARGIN_S for t in traces)
    trace = traces[-1] if traces else {}
    model_at = trace.get("first_model_audio_stream_s")
    first_model = round((model_at - true_end) * 1000.0, 1) if isinstance(model_at, (int, float)) and end is not None \
        else None
    if first_model is None and measured and not trace.get("acknowledgement"):
        first_model = round(measured[2], 1)  # nothing cached played first: the first word heard is the model's
    prompt, reused = trace.get("llm_prompt_tokens"), trace.get("llm_reused_tokens")
    lag = run.input_lag_s or [0.0]
    return {"voice_to_voice_ms": round(measured[2], 1) if measured else None,
            "first_model_word_ms": first_model,
            "tail_tokens": prompt - reused if isinstance(prompt, int) and isinstance(reused, int) else None,
            "input_lag_p95_ms": round(1000.0 * percentile(lag, 95), 1),
            "input_lag_max_ms": round(1000.0 * max(lag), 1),
            "premature_cutoff": premature, "speech_end_s": true_end}


async def _bench(args: argparse.Namespace, config: Config, files: list[Path]) -> dict[str, Any]:
    from attune.pipeline.session import Session
    from attune.pipeline.stack import build_backends, for_session, warm_up
    from attune.transports.file import stream_file

    backends = build_backends(config)
    warm = await warm_up(backends, config)
    per_file: list[dict[str, Any]] = []
    for path in files:
        samples = load_16k(path)
        async with Session(config, for_session(config, backends)) as session:
            run = await stream_file(session, samples, speed=1.0, tail_max_s=20.0)
        traces = [t.to_dict() for t in session.turns]
        trace = traces[-1] if traces else {}
        alone = await asyncio.to_thread(_first_token_alone, backends.llm, session.last_completion)
        per_file.append({"file": path.name, **file_figures(samples, run, traces),
                         "llm_ttft_ms": trace.get("llm_ttft_ms"), "llm_ttft_alone_ms": alone,
                         "stages_ms": trace.get("latency_ms", {}), "transcript": trace.get("transcript"),
                         "acknowledgement": trace.get("acknowledgement"), "reply": trace.get("reply_text"),
                         "turns": len(traces), "early_note": trace.get("llm_early_note"),
                         "resumed": trace.get("resumed") is True})
        if not args.json:
            f = per_file[-1]
            print(f"{path.name}: {f['voice_to_voice_ms']} ms, model word {f['first_model_word_ms']} ms, tail "
                  f"{f['tail_tokens']} tok, LLM first token {f['llm_ttft_ms']} ms ({f['llm_ttft_alone_ms']} alone), "
                  f"lag max {f['input_lag_max_ms']} ms"
                  f"{', CUT OFF' if f['premature_cutoff'] else ''}  {f['stages_ms']}")
    return _bench_summary(per_file, warm)


@runtime_checkable
class Replaying(Protocol):
    """An engine that declares ``capabilities.replay`` (llama-cpp): a prompt's tail timed again in isolation."""

    def first_token_alone(self, prompt: Sequence[int], cached: int) -> float: ...


def _first_token_alone(llm: LLMBackend, completion: Completion | None) -> float | None:
    """The last reply's tail evaluated again with the session closed (nothing else running), in ms: against the
    trace's ``llm_ttft_ms`` (the same work inside the session) it shows what the other engines cost the LLM.
    None where the engine cannot replay (not llama-cpp) or the reply made no call."""
    if not (llm.capabilities.replay and isinstance(llm, Replaying)) or completion is None or not completion.prompt:
        return None
    try:
        return round(1000.0 * llm.first_token_alone(completion.prompt, completion.reused_tokens), 1)
    except LLMError:
        return None


def _bench_summary(per_file: list[dict[str, Any]], warm: dict[str, float]) -> dict[str, Any]:
    from attune.core.machine import cpu_info
    from attune_lab.engine_isa import emulates_avx2, engine_isa

    cpu, isa = cpu_info(), engine_isa()

    def stat(key: str) -> dict[str, float | None]:
        values = [f[key] for f in per_file if isinstance(f.get(key), (int, float))]
        return {"p50": round(percentile(values, 50), 1) if values else None,
                "p95": round(percentile(values, 95), 1) if values else None}

    values = [f["voice_to_voice_ms"] for f in per_file if f["voice_to_voice_ms"] is not None]
    stages = {m: round(percentile([f["stages_ms"][m] for f in per_file if f["stages_ms"].get(m) is not None], 50), 1)
              for m in MARKS[1:]}
    return {"n": len(values), "files": len(per_file), "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1), "max_ms": round(max(values), 1) if values else None,
            "first_model_word_ms": stat("first_model_word_ms"), "tail_tokens": stat("tail_tokens"),
            "input_lag_max_ms": stat("input_lag_max_ms"), "llm_ttft_ms": stat("llm_ttft_ms"),
            "llm_ttft_alone_ms": stat("llm_ttft_alone_ms"),
            "premature_cutoffs": sum(1 for f in per_file if f["premature_cutoff"]),
            "early_notes": sum(1 for f in per_file if f.get("early_note")),
            # committed in a pause, then the person's voice went on: the first sound stopped, one turn, one reply
            "resumed_commits": sum(1 for f in per_file if f.get("resumed")),
            "stage_p50_ms": stages,
            "warm_up_s": {k: round(v, 2) for k, v in warm.items() if k not in _SPEED_KEYS},
            "machine": {**cpu.to_dict(), "short": cpu.short(), "engines": isa,
                        "emulates_avx2": emulates_avx2(isa, cpu.avx512)},
            "llm_speed": {k.removeprefix("llm_"): round(warm[k], 1) if k in warm else None for k in _SPEED_KEYS},
            "per_file": per_file}


_SPEED_KEYS = ("llm_tokens_per_s", "llm_first_token_ms")  # warm_up's measured LLM speed, beside its timings


def cmd_bench_latency(args: argparse.Namespace, config: Config) -> int:
    folder = Path(args.data)
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        raise AudioInputError(f"no WAV files in {folder}")
    if args.temperature is not None:
        from dataclasses import replace

        config = replace(config, llm=replace(config.llm, temperature=args.temperature))
    result = asyncio.run(_bench(args, config, files[: args.limit] if args.limit else files))
    result["temperature"] = config.llm.temperature
    if args.json:
        print(json.dumps(result))
    else:
        m, speed = result["machine"], result["llm_speed"]
        emulated = " (LLM and ASR held to AVX2: an AVX2-only machine, emulated)" if m["emulates_avx2"] else ""
        print(f"machine: {m['short']}{emulated}; LLM {config.llm.model} {speed.get('tokens_per_s')} tok/s, first token "
              f"{speed.get('first_token_ms')} ms (measured at start-up); temperature {config.llm.temperature}")
        print(f"voice-to-voice over {result['n']} of {result['files']} files: p50 {result['p50_ms']} ms, "
              f"p95 {result['p95_ms']} ms, max {result['max_ms']} ms")
        for key in ("first_model_word_ms", "tail_tokens", "input_lag_max_ms", "llm_ttft_ms", "llm_ttft_alone_ms"):
            print(f"{key}: p50 {result[key]['p50']}, p95 {result[key]['p95']}")
        print(f"premature cut-offs: {result['premature_cutoffs']} of {result['files']} files; commits in a pause "
              f"resumed as one turn: {result['resumed_commits']}")
        print(f"voice note prefilled and kept: {result['early_notes']} of {result['files']} files")
        print("stage medians (ms after the end of speech): "
              + ", ".join(f"{k} {v}" for k, v in result["stage_p50_ms"].items()))
    return 0 if result["n"] else 1
