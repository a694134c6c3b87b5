"""Reply-quality subcommand: ``eval-replies [--model NAME] [--json]`` runs the fixed scenarios of
``attune_lab.reply_eval`` through the configured prompt and the embedded LLM and scores every reply."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from attune.commands.flags import renamed
from attune.config import Config


def add_commands(sub: Any) -> None:
    p = sub.add_parser("eval-replies", help="score the agent's replies on fixed emotional scenarios")
    renamed(p, "--llm-model", "--model", default=None, help="qwen2.5-1.5b | qwen2.5-0.5b (default: llm.model)")
    p.add_argument("--strategy", default=None, help="response strategy (default: config)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: config; the backend's seed is fixed, so runs repeat)")
    p.add_argument("--seed", type=int, default=None,
                   help="the LLM's sampling seed (default: llm.seed): another seed is another sample of each reply")
    p.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    p.add_argument("--acknowledgements", choices=("on", "off", "both"), default=None,
                   help="score what a person hears: the first sound a slow machine plays, then the reply "
                        "(default: agent.acknowledgements); both: the same replies scored off, then on")
    p.add_argument("--json", action="store_true", help="one JSON object: summary and per-scenario results")
    p.set_defaults(handler=cmd_eval_replies)


def cmd_eval_replies(args: argparse.Namespace, config: Config) -> int:
    from attune.agent.brain import PromptBuilder
    from attune.agent.persona import Persona
    from attune.agent.strategy import check_strategy
    from attune.backends.llm.llm_factory import create_llm
    from attune.core.errors import ConfigError
    from attune_lab.reply_eval import SCENARIOS, score, summarize, write_replies

    strategy = check_strategy(args.strategy or config.expression.strategy)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - {s.name for s in SCENARIOS})
    if unknown:
        raise ConfigError(f"unknown scenario(s) {unknown} (known: {', '.join(s.name for s in SCENARIOS)})")
    scenarios = tuple(s for s in SCENARIOS if not names or s.name in names)
    model = args.llm_model or config.llm.model
    llm = create_llm(config, **({"model": args.llm_model} if args.llm_model else {}),
                     **({"seed": args.seed} if args.seed is not None else {}))
    builder = PromptBuilder(Persona(config.agent.name, config.agent.persona or Persona().description),
                            reply_tag=config.agent.reply_tag, note_first=config.agent.voice_note_first)
    temperature = config.llm.temperature if args.temperature is None else args.temperature
    modes = ([False, True] if args.acknowledgements == "both" else
             [config.agent.acknowledgements if args.acknowledgements is None else args.acknowledgements == "on"])
    written = asyncio.run(write_replies(llm, builder, strategy=strategy, max_tokens=config.llm.max_tokens,
                                        temperature=temperature, scenarios=scenarios))
    results = []
    for acks in modes:
        reports = score(written, builder, acknowledgements=acks)
        summary = {"model": model, "strategy": strategy, "temperature": temperature,
                   "acknowledgements": acks, **summarize(reports)}
        results.append({"summary": summary, "scenarios": [r.to_dict() for r in reports]})
        if not args.json:
            _print(reports, summary)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"runs": results}))
    return 0


def _print(reports: list[Any], summary: dict[str, Any]) -> None:
    for r in reports:
        print(f"== {r.scenario.name}: {r.scenario.text}")
        print(f"   {r.context} -> reply {r.expressed}")
        if r.first_sound:
            print(f"   first sound: {r.first_sound!r}")
        print(f"   reply: {r.reply!r}")
        marks = "  ".join(f"{c.name}={'ok' if c.passed else 'FAIL'}" for c in r.checks if c.applicable)
        print(f"   {marks}  ({r.passed}/{r.applicable}, {r.elapsed_ms:.0f} ms)")
        for c in r.checks:
            if c.applicable and not c.passed:
                print(f"     {c.name}: {c.detail}")
    print(f"model {summary['model']}, strategy {summary['strategy']}, temperature {summary['temperature']}, "
          f"acknowledgements {summary['acknowledgements']}: "
          f"checks {summary['checks_passed']}/"
          f"{summary['checks_total']} ({summary['score']:.0%}): the reply's {summary['reply_checks_passed']}/"
          f"{summary['reply_checks_total']}, the first sound's {summary['sound_checks_passed']}/"
          f"{summary['sound_checks_total']} ({summary['first_sounds']} sounds), "
          f"clean replies {summary['clean_replies']}/"
          f"{summary['replies']}, mean reply {summary['mean_reply_ms']} ms, "
          f"mean prompt {summary['mean_prompt_tokens']} tokens")
    print("per check: " + ", ".join(f"{k} {v}" for k, v in summary["per_check"].items()))
