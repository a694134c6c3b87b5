"""Output paths checked before the work that fills them: a command that writes a file finds out at start-up, in
one line, that the file cannot be written, not after the whole conversation has run."""

from __future__ import annotations

import os
from pathlib import Path

from attune.core.errors import OutputPathError


def writable_output(path: str | Path) -> Path:
    """``path`` as a Path when a file can be written there (created or replaced); else OutputPathError.

    Refused: a path that is a directory, a parent folder that does not exist or is not a folder, a folder or
    existing file without write permission. Nothing is created."""
    p = Path(path)
    if str(path) == "" or p.is_dir():
        raise OutputPathError(f"output {str(path) or '(empty)'} is a directory, not a file: name a file in it")
    parent = p.parent
    if not parent.exists():
        raise OutputPathError(f"cannot write {p}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {p}: {parent} is not a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"cannot write {p}: the file is not writable")
    if not p.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {p}: no permission to create files in {parent}")
    return p


def writable_folder(path: str | Path) -> Path:
    """``path`` as a Path when it is (or can be created as) a folder to write files into; else OutputPathError.

    Nothing is created; the nearest existing ancestor must be a writable folder."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise OutputPathError(f"cannot write into {p}: it is a file, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputPathError(f"cannot write into {p}: no permission")
        return p
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot create the folder {p}: {ancestor} is not a writable folder")
    return p
