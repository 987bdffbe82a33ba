"""Owner-only files and folders: the server's state (job database, tokens, uploads, outputs) is
created 0700/0600 whatever the process's umask, so other accounts on the machine read none of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["private_dir", "private_file", "restrict"]


def private_dir(path: Path) -> Path:
    """`path` and every missing parent created 0700 (folders that exist are left as they are)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: theirs to set
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> BinaryIO:
    """`path` opened for writing (created or truncated), 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def restrict(path: Path) -> None:
    """Make an existing file this server created 0600 (one a library wrote, e.g. SQLite's)."""
    if path.exists():
        os.chmod(path, 0o600)
