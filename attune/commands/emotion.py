"""Emotion subcommands: ``analyze FILE`` and ``eval-emotion --data DIR``."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    p = sub.add_parser("analyze", help="the emotion in a recording")
    p.add_argument("file", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_pending)


def _pending(args: argparse.Namespace, config: Any) -> int:
    raise SystemExit("not built yet")
