"""Where log records go: the console stays readable, the full log goes to a file or to ``--log-level``.

A conversation command (``mic``, ``file``) prints the conversation itself on stdout; log records would interleave
with it (faster-whisper alone logs every partial pass), so there only warnings reach the terminal and everything at
``logging.level`` goes to a log file. Other commands keep Attune's own records on stderr at ``logging.level`` and
libraries' at WARNING. An explicit ``--log-level`` sends every record at that level to stderr, as asked.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OWN_LOGGERS = "attune"  # records from attune.* (and run_agent) count as Attune's own


def default_log_file() -> Path:
    """``$XDG_STATE_HOME/attune/attune.log`` (``~/.local/state/attune/attune.log``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "attune" / "attune.log"


class _OwnOrWarning(logging.Filter):
    """Attune's records at the handler's level, everyone else's from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGERS or record.name.startswith(OWN_LOGGERS + ".") or record.name == "__main__"
        return own or record.levelno >= logging.WARNING


def setup_logging(level: str, *, explicit: bool, conversation: bool, log_file: str | Path | None = None) -> Path | None:
    """Configure the root logger; returns the log file in use (conversation commands) or None.

    ``level``: ``--log-level`` or ``logging.level``; ``explicit``: it came from ``--log-level``. A log file that
    cannot be opened leaves the records on stderr at WARNING and says so once."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h in _OURS]:  # ours from an earlier call only
        root.removeHandler(old)
        _OURS.discard(old)
        old.close()
    root.setLevel(level.upper())
    console = _handler(logging.StreamHandler(sys.stderr))
    root.addHandler(console)
    if explicit:
        return None
    if not conversation:
        console.addFilter(_OwnOrWarning())
        return None
    console.setLevel(logging.WARNING)
    path = Path(log_file) if log_file else default_log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _handler(logging.FileHandler(path, encoding="utf-8"))
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write the log file %s (%s); warnings only", path, exc)
        return None
    root.addHandler(handler)
    return path


_OURS: set[logging.Handler] = set()  # the handlers setup_logging added (a second call replaces them, no others)


def _handler(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter(FORMAT))
    _OURS.add(handler)
    return handler
