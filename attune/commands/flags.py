"""One flag vocabulary for every subcommand: ``--input``/``--output`` for what is read and written, ``--asr-model``
and ``--llm-model`` for which model, ``--config`` after the command as well as before it. An old spelling (``--out``,
``--model``, a positional FILE) still works for one release and says, on stderr, which flag replaces it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class Renamed(argparse.Action):
    """Store the value like ``store``; when given under an old name, print one deprecation line first."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, old: Sequence[str] = (), **kw: Any) -> None:
        self.old = tuple(old)
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string in self.old:
            deprecated(option_string, self.option_strings[0])
        setattr(namespace, self.dest, values)


def deprecated(old: str, new: str) -> None:
    print(f"note: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def renamed(p: argparse.ArgumentParser, new: str, *old: str, **kw: Any) -> None:
    """``new`` with ``old`` spellings that still work (each with a deprecation line)."""
    kw.setdefault("dest", new.lstrip("-").replace("-", "_"))
    p.add_argument(new, *old, action=Renamed, old=old, **kw)


def input_file(p: argparse.ArgumentParser, help: str) -> None:
    """``--input FILE``; a positional FILE (the old spelling) still works, with a deprecation line."""
    p.add_argument("--input", default=None, help=help)
    p.add_argument("file", nargs="?", default=None, help=argparse.SUPPRESS)


def input_of(args: argparse.Namespace, parser_hint: str = "--input FILE") -> str | None:
    """The input file from ``--input`` or the deprecated positional FILE."""
    if args.file:
        if args.input:
            raise SystemExit(f"error: give the file once, as {parser_hint}")
        deprecated("a positional FILE", parser_hint)
        return str(args.file)
    return str(args.input) if args.input else None


def add_config(p: argparse.ArgumentParser) -> None:
    """``--config`` after the subcommand too (``attune analyze --config my.yaml ...``); before it works as ever."""
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help="config file; relative paths in it are taken from its folder")
