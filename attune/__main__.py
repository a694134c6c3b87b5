"""``python -m attune``: the ``attune`` command (``attune.commands.cli``)."""

from __future__ import annotations

import sys

from attune.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
