#!/usr/bin/env python3
"""``run_agent.py``: the ``attune`` command in a checkout (``attune.commands.cli``), kept as an alias."""

from __future__ import annotations

import sys

from attune.commands.cli import COMMAND_MODULES, LAB_MODULES, build_parser, main

__all__ = ["COMMAND_MODULES", "LAB_MODULES", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main(prog="run_agent.py"))
