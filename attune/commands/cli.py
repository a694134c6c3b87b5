"""Attune's command line, the ``attune`` console script: one subcommand per job (``attune --help`` lists them);
``run_agent.py`` in a checkout and ``python -m attune`` are the same program.

Each group of subcommands lives in a module of ``attune.commands`` (``COMMAND_MODULES``) or of the lab,
``attune_lab`` (``LAB_MODULES``); a module's
``add_commands(subparsers)`` declares its subcommands and binds each to a handler ``(args, config) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from attune import __version__
from attune.commands.flags import add_config
from attune.config import load_config
from attune.core.errors import AttuneError, ConfigError
from attune.core.logs import setup_logging
from attune.core.process_memory import tune_allocator

COMMAND_MODULES = (  # the runtime's commands
    "attune.commands.conversation",
    "attune.commands.serve",
    "attune.commands.run_kiosk",
    "attune.commands.analyze",
    "attune.commands.engines",
    "attune.commands.expression",
    "attune.commands.setup",
)
LAB_MODULES = (  # the lab's (attune_lab): present in a checkout, skipped where the lab is not installed
    "attune_lab.bench_latency",
    "attune_lab.emotion_commands",
    "attune_lab.bench_engines",
    "attune_lab.bench_expression",
    "attune_lab.eval_replies",
    "attune_lab.bench_load",
    "attune_lab.bench_echo",
    "attune_lab.bench_soak",
    "attune_lab.bench_cache",
)


def build_parser(prog: str = "attune") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Attune: an emotion-aware voice agent, offline.")
    parser.add_argument("--version", action="version", version=f"attune {__version__}")
    parser.set_defaults(conversation=False)  # mic and file set it: the console is theirs
    parser.add_argument("--config", default=None,
                        help="config file; relative paths in it are taken from its folder (default: $ATTUNE_CONFIG, "
                             "the checkout's config.yaml, else $XDG_CONFIG_HOME/attune/config.yaml)")
    parser.add_argument("--log-level", default=None, type=str.lower, choices=("debug", "info", "warning", "error"),
                        help="debug | info | warning | error: every log record at this level to stderr (default: "
                             "logging.level; mic and file keep the terminal for the conversation and log to a file)")
    parser.add_argument("--log-file", default=None,
                        help="mic and file: where their log goes (default: $XDG_STATE_HOME/attune/attune.log)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    for name in LAB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in ("attune_lab", name):
                raise
            continue
        module.add_commands(sub)
    for command in sub.choices.values():  # --config after the command as well as before it
        add_config(command)
    return parser


def main(argv: list[str] | None = None, prog: str = "attune") -> int:
    tune_allocator()  # before any model loads: large freed buffers go back to the system (core/process_memory.py)
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.logging.level, explicit=args.log_level is not None,
                  conversation=args.conversation, log_file=args.log_file)
    try:
        return int(args.handler(args, config))
    except AttuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
